package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/client"
)

const testDeadline = 20 * time.Second

var transports = []string{bayeux.TransportWebSocket, bayeux.TransportLongPolling}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// stateLog records state changes so tests can wait on them.
type stateLog struct {
	mu     sync.Mutex
	events []stateEvent
	signal chan struct{}
}

type stateEvent struct {
	s   client.State
	err error
}

func newStateLog() *stateLog { return &stateLog{signal: make(chan struct{}, 1)} }

func (l *stateLog) record(s client.State, err error) {
	l.mu.Lock()
	l.events = append(l.events, stateEvent{s, err})
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// waitFor waits until an event after index from satisfies ok, returning the
// index after it.
func (l *stateLog) waitFor(t testing.TB, ctx context.Context, from int, what string, ok func(stateEvent) bool) int {
	t.Helper()
	for {
		l.mu.Lock()
		for i := from; i < len(l.events); i++ {
			if ok(l.events[i]) {
				l.mu.Unlock()
				return i + 1
			}
		}
		n := len(l.events)
		l.mu.Unlock()
		from = n
		select {
		case <-l.signal:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; states so far: %v", what, ctx.Err(), l.snapshot())
		}
	}
}

func (l *stateLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, fmt.Sprintf("%v(%v)", e.s, e.err))
	}
	return out
}

func newTestClient(t testing.TB, url, transport string, mutate ...func(*client.Config)) (*client.Client, *stateLog) {
	t.Helper()
	log := newStateLog()
	cfg := client.Config{
		URL:         url,
		Transports:  []string{transport},
		OnState:     log.record,
		BackoffBase: 50 * time.Millisecond,
		BackoffMax:  500 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := client.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Handshake(ctxT(t)); err != nil {
		t.Fatalf("handshake with %s over %s: %v", url, transport, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		c.Disconnect(ctx)
	})
	if got := c.Transport(); got != transport {
		t.Fatalf("negotiated transport %q, want %q", got, transport)
	}
	return c, log
}

// inbox collects messages for one subscription handle.
type inbox struct {
	name string
	ch   chan *client.Message
}

func newInbox(name string) *inbox { return &inbox{name: name, ch: make(chan *client.Message, 1024)} }

func (b *inbox) handler(m *client.Message) { b.ch <- m }

// next returns the next message, failing the test at the deadline.
func (b *inbox) next(t testing.TB, ctx context.Context) *client.Message {
	t.Helper()
	select {
	case m := <-b.ch:
		return m
	case <-ctx.Done():
		t.Fatalf("%s: no message: %v", b.name, ctx.Err())
		return nil
	}
}

// empty asserts nothing is buffered right now.
func (b *inbox) empty(t testing.TB) {
	t.Helper()
	select {
	case m := <-b.ch:
		t.Fatalf("%s: unexpected message on %s: %s", b.name, m.Channel, m.Data)
	default:
	}
}

type payload struct {
	N int `json:"n"`
}

func decodeN(t testing.TB, m *client.Message) int {
	t.Helper()
	var p payload
	if err := json.Unmarshal(m.Data, &p); err != nil {
		t.Fatalf("bad data %s on %s: %v", m.Data, m.Channel, err)
	}
	return p.N
}

// runPeerSuite runs the behaviour every conforming server must support.
func runPeerSuite(t *testing.T, url string) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Run("DeliverOncePerHandle", func(t *testing.T) { testDeliverOncePerHandle(t, url, tr) })
			t.Run("PublishRefused", func(t *testing.T) { testPublishRefused(t, url, tr) })
			t.Run("Unsubscribe", func(t *testing.T) { testUnsubscribe(t, url, tr) })
			t.Run("SubscribeChan", func(t *testing.T) { testSubscribeChan(t, url, tr) })
		})
	}
}

func testDeliverOncePerHandle(t *testing.T, url, tr string) {
	ctx := ctxT(t)
	sub, _ := newTestClient(t, url, tr)
	pub, _ := newTestClient(t, url, tr)

	exact, exact2, star, deep := newInbox("/chat/room"), newInbox("/chat/room#2"), newInbox("/chat/*"), newInbox("/chat/**")
	for _, s := range []struct {
		ch string
		b  *inbox
	}{{"/chat/room", exact}, {"/chat/room", exact2}, {"/chat/*", star}, {"/chat/**", deep}} {
		if _, err := sub.Subscribe(ctx, s.ch, s.b.handler); err != nil {
			t.Fatalf("subscribe %s: %v", s.ch, err)
		}
	}
	const n = 20
	for i := range n {
		if err := pub.Publish(ctx, "/chat/room", payload{i}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	// A message on another channel is the end marker: it reaches /chat/*
	// and /chat/** but not the exact handles.
	if err := pub.Publish(ctx, "/chat/other", payload{-1}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "/chat/room/deep", payload{-2}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*inbox{exact, exact2, star, deep} {
		for i := range n {
			m := b.next(t, ctx)
			if m.Channel != "/chat/room" || decodeN(t, m) != i {
				t.Fatalf("%s: message %d is %s %s, want /chat/room n=%d", b.name, i, m.Channel, m.Data, i)
			}
		}
	}
	for _, b := range []*inbox{star, deep} {
		if m := b.next(t, ctx); m.Channel != "/chat/other" {
			t.Fatalf("%s: got %s %s, want the /chat/other marker", b.name, m.Channel, m.Data)
		}
	}
	if m := deep.next(t, ctx); m.Channel != "/chat/room/deep" {
		t.Fatalf("/chat/**: got %s, want /chat/room/deep", m.Channel)
	}
	// Deliveries to one client are serial and in order, so by now every
	// duplicate would have been seen.
	for _, b := range []*inbox{exact, exact2, star, deep} {
		b.empty(t)
	}
}

func testPublishRefused(t *testing.T, url, tr string) {
	ctx := ctxT(t)
	c, _ := newTestClient(t, url, tr)
	err := c.Publish(ctx, "/meta/forbidden", payload{1})
	var be *client.Error
	if !errors.As(err, &be) {
		t.Fatalf("publish on a meta channel: got %v, want *client.Error", err)
	}
	if be.Code < 400 || be.Code >= 500 {
		t.Fatalf("refusal code %d (%v), want 4xx", be.Code, be)
	}
	// The session is still usable.
	if err := c.Publish(ctx, "/fine", payload{2}); err != nil {
		t.Fatalf("publish after a refusal: %v", err)
	}
}

func testUnsubscribe(t *testing.T, url, tr string) {
	ctx := ctxT(t)
	c, _ := newTestClient(t, url, tr)
	gone, stays := newInbox("unsubscribed"), newInbox("kept")
	s, err := c.Subscribe(ctx, "/u/a", gone.handler)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, "/u/*", stays.handler); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "/u/a", payload{1}); err != nil {
		t.Fatal(err)
	}
	gone.next(t, ctx)
	stays.next(t, ctx)
	if err := s.Unsubscribe(ctx); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if err := c.Publish(ctx, "/u/a", payload{2}); err != nil {
		t.Fatal(err)
	}
	if m := stays.next(t, ctx); decodeN(t, m) != 2 {
		t.Fatalf("kept handle got %s", m.Data)
	}
	gone.empty(t)
}

func testSubscribeChan(t *testing.T, url, tr string) {
	ctx := ctxT(t)
	c, _ := newTestClient(t, url, tr)
	ch := make(chan *client.Message, 4)
	if _, err := c.SubscribeChan(ctx, "/c/x", ch); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := c.Publish(ctx, "/c/x", payload{i}); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-ch:
			if decodeN(t, m) != i {
				t.Fatalf("got %s, want n=%d", m.Data, i)
			}
		case <-ctx.Done():
			t.Fatal("no message on the Go channel")
		}
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	if st := c.State(); st != client.StateDisconnected {
		t.Fatalf("state after Disconnect: %v", st)
	}
	if err := c.Publish(ctx, "/c/x", payload{0}); !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("publish after Disconnect: %v", err)
	}
}

// testReconnectAfterRestart publishes, restarts the server on the same
// address, and checks both clients re-handshake, re-subscribe and deliver.
func testReconnectAfterRestart(t *testing.T, url, tr string, restart func()) {
	ctx := ctxT(t)
	sub, subLog := newTestClient(t, url, tr)
	pub, pubLog := newTestClient(t, url, tr)
	box := newInbox("sub")
	if _, err := sub.Subscribe(ctx, "/r/x", box.handler); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "/r/x", payload{1}); err != nil {
		t.Fatal(err)
	}
	box.next(t, ctx)
	subMark := subLog.waitFor(t, ctx, 0, "first connect", func(e stateEvent) bool { return e.s == client.StateConnected })
	pubMark := pubLog.waitFor(t, ctx, 0, "first connect", func(e stateEvent) bool { return e.s == client.StateConnected })
	oldSub, oldPub := sub.ClientID(), pub.ClientID()

	restart()

	// Each client must go through a handshake and come back connected.
	for _, w := range []struct {
		log  *stateLog
		mark int
		c    *client.Client
		old  string
	}{{subLog, subMark, sub, oldSub}, {pubLog, pubMark, pub, oldPub}} {
		m := w.log.waitFor(t, ctx, w.mark, "re-handshake", func(e stateEvent) bool { return e.s == client.StateHandshaking })
		w.log.waitFor(t, ctx, m, "reconnected", func(e stateEvent) bool { return e.s == client.StateConnected })
		if w.c.ClientID() == w.old {
			t.Fatalf("clientId unchanged after server restart: %s", w.old)
		}
	}
	// A client may have re-handshaken with the dying server before it went
	// away, and must then do it once more with the new one; so publish until
	// the first message gets through, then require an unbroken sequence.
	n := 2
	for received := false; !received; n++ {
		if err := pub.Publish(ctx, "/r/x", payload{n}); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("publish after restart: %v", err)
			}
			continue
		}
		wait := time.NewTimer(250 * time.Millisecond)
		select {
		case m := <-box.ch:
			received = decodeN(t, m) >= 2
		case <-wait.C:
		case <-ctx.Done():
			t.Fatalf("no delivery after restart: %v; subscriber states %v", ctx.Err(), subLog.snapshot())
		}
		wait.Stop()
	}
	for i := n; i < n+10; i++ {
		if err := pub.Publish(ctx, "/r/x", payload{i}); err != nil {
			t.Fatalf("publish %d after recovery: %v", i, err)
		}
	}
	for i := n; i < n+10; {
		got := decodeN(t, box.next(t, ctx))
		if got < n {
			continue // a late copy of a probe published above
		}
		if got != i {
			t.Fatalf("after recovery got n=%d, want %d", got, i)
		}
		i++
	}
}
