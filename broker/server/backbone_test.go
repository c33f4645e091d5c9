package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
)

// countingBackbone records the calls the server makes on a real Memory
// backbone, and how many of its requests are in flight (now and at the peak).
type countingBackbone struct {
	*backbone.Memory
	mu    sync.Mutex
	calls []string

	inFlight, peak int
}

func (c *countingBackbone) Request(ctx context.Context, node string, data []byte) ([]byte, error) {
	c.mu.Lock()
	c.inFlight++
	c.peak = max(c.peak, c.inFlight)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()
	return c.Memory.Request(ctx, node, data)
}

// requests returns the requests in flight and the peak.
func (c *countingBackbone) requests() (inFlight, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight, c.peak
}

func (c *countingBackbone) record(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s)
}

func (c *countingBackbone) Subscribe(p string) error {
	c.record("sub " + p)
	return c.Memory.Subscribe(p)
}

func (c *countingBackbone) Unsubscribe(p string) error {
	c.record("unsub " + p)
	return c.Memory.Unsubscribe(p)
}

func (c *countingBackbone) Publish(ch string, data []byte, id string) error {
	c.record("pub " + ch)
	return c.Memory.Publish(ch, data, id)
}

func (c *countingBackbone) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func newMemoryNode(t *testing.T, hub *backbone.MemoryHub, id string) *countingBackbone {
	t.Helper()
	m, err := backbone.NewMemory(backbone.MemoryConfig{Hub: hub, NodeID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &countingBackbone{Memory: m}
}

// memoryNodes starts a server for each name, each on its own Memory node of
// hub, configured as cfg says (with its own Backbone).
func memoryNodes(t *testing.T, hub *backbone.MemoryHub, cfg Config, names ...string) []*testServer {
	t.Helper()
	out := make([]*testServer, len(names))
	for i, name := range names {
		c := cfg
		c.Backbone = newMemoryNode(t, hub, name)
		out[i] = newTestServer(t, c)
	}
	return out
}

func TestBackboneFanout(t *testing.T) {
	hub := backbone.NewMemoryHub()
	bbA, bbB := newMemoryNode(t, hub, "node-a"), newMemoryNode(t, hub, "node-b")
	a := newTestServer(t, Config{Backbone: bbA, Timeout: 300 * time.Millisecond})
	b := newTestServer(t, Config{Backbone: bbB, Timeout: 300 * time.Millisecond})
	if a.NodeID() != "node-a" || OwnerOf(a.connected(t)) != "node-a" {
		t.Fatal("server does not take its node ID from the backbone")
	}
	s1, s2 := b.connected(t), b.connected(t)
	b.subscribe(t, s1, "/chat/*")
	b.subscribe(t, s2, "/chat/*", "/chat/**")
	pub := a.connected(t)
	ch1, ch2 := b.connectAsync(s1), b.connectAsync(s2)
	b.waitHeld(t, s1)
	b.waitHeld(t, s2)
	a.publish(t, pub, "/chat/room", `"over the backbone"`)
	for _, ch := range []<-chan result{ch1, ch2} {
		ev := events(recv(t, ch))
		if len(ev) != 1 || ev[0]["data"] != "over the backbone" {
			t.Fatalf("remote delivery %v", ev)
		}
	}
	a.publish(t, pub, "/service/private", `1`)
	// Unsubscribing both sessions releases the pattern once.
	b.Session(s1).Disconnect()
	b.Session(s2).Disconnect()
	want := []string{"sub /chat/*", "sub /chat/**", "unsub /chat/*", "unsub /chat/**"}
	got := bbB.snapshot()
	if len(got) != len(want) {
		t.Fatalf("node-b backbone calls %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] && !(i >= 2 && (got[i] == want[5-i])) {
			t.Fatalf("node-b backbone calls %v, want %v", got, want)
		}
	}
	for _, c := range bbA.snapshot() {
		if c == "pub /service/private" {
			t.Fatal("a /service/ message went to the backbone")
		}
	}
	if calls := bbA.snapshot(); len(calls) != 1 || calls[0] != "pub /chat/room" {
		t.Fatalf("node-a backbone calls %v", calls)
	}
}
