package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
)

// cluster starts a server for each name on hub, with the ack extension.
func cluster(t *testing.T, hub *backbone.MemoryHub, names ...string) []*testServer {
	t.Helper()
	out := memoryNodes(t, hub, Config{Timeout: 500 * time.Millisecond}, names...)
	for _, n := range out {
		n.AddExtension(AckExtension{})
	}
	return out
}

// ackClient is a long-polling client with the ack extension that sends each
// request to the next node in turn, as a Service without affinity does, and
// records what it is delivered.
type ackClient struct {
	t     *testing.T
	nodes []*testServer
	next  int
	id    string
	batch int

	mu       sync.Mutex
	got      []int
	handshks int
	refused  []msg
}

func newAckClient(t *testing.T, nodes ...*testServer) *ackClient {
	c := &ackClient{t: t, nodes: nodes}
	hs := nodes[0].must(t, `[{"channel":"/meta/handshake","supportedConnectionTypes":["long-polling"],"ext":{"ack":true}}]`)[0]
	c.id = hs["clientId"].(string)
	c.handshks = 1
	c.connect()
	return c
}

func (c *ackClient) node() *testServer {
	n := c.nodes[c.next%len(c.nodes)]
	c.next++
	return n
}

// connect sends one /meta/connect acknowledging the last batch and records
// the delivered numbers; a failed reply is kept in refused.
func (c *ackClient) connect() {
	out := c.node().must(c.t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","ext":{"ack":%d}}]`, c.id, c.batch))
	r := last(out)
	if r["successful"] != true {
		c.mu.Lock()
		c.refused = append(c.refused, r)
		c.mu.Unlock()
		return
	}
	if ext, ok := r["ext"].(msg); ok {
		if b, ok := ext["ack"].(float64); ok {
			c.batch = int(b)
		}
	}
	c.mu.Lock()
	for _, ev := range events(out) {
		c.got = append(c.got, int(ev["data"].(float64)))
	}
	c.mu.Unlock()
}

// check asserts the client got 1..n exactly once, in order.
func (c *ackClient) check(t *testing.T, n int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.refused) > 0 {
		t.Fatalf("connects refused: %v", c.refused)
	}
	lost, dup := 0, 0
	seen := map[int]int{}
	for _, v := range c.got {
		seen[v]++
	}
	for i := 1; i <= n; i++ {
		switch seen[i] {
		case 0:
			lost++
		case 1:
		default:
			dup += seen[i] - 1
		}
	}
	if lost > 0 || dup > 0 || len(c.got) != n {
		t.Fatalf("client %s: %d delivered for %d published, %d lost, %d duplicated", c.id, len(c.got), n, lost, dup)
	}
	for i, v := range c.got {
		if v != i+1 {
			t.Fatalf("client %s: delivery %d is %d: out of order", c.id, i, v)
		}
	}
}

// publisher publishes 1, 2, … on channel from node until stopped.
type publisher struct {
	n    atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func startPublisher(t *testing.T, node *testServer, channel string) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(200 * time.Microsecond) // a steady rate
		defer tick.Stop()
		for i := 1; i <= 100_000; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			if err := node.Publish(channel, i); err != nil {
				t.Error(err)
				return
			}
			p.n.Store(int64(i))
		}
	}()
	return p
}

func (p *publisher) finish() int {
	close(p.stop)
	<-p.done
	return int(p.n.Load())
}

// TestHandoverUnderPublishing moves an ack session while a publisher on
// another node keeps publishing: the client, whose requests go to every node
// in turn, keeps its clientId and gets every message once, in order.
func TestHandoverUnderPublishing(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := cluster(t, hub, "node-a", "node-b", "node-c")
	a, b := nodes[0], nodes[1]
	c := newAckClient(t, nodes...)
	a.subscribe(t, c.id, "/h/**")
	pub := startPublisher(t, nodes[2], "/h/x")
	waitFor(t, "some messages", func() bool { return pub.n.Load() > 50 })
	c.connect()
	owner := a
	for move := range 4 {
		node, err := owner.HandOver(context.Background(), c.id)
		if err != nil {
			t.Fatalf("move %d: %v", move, err)
		}
		for _, n := range nodes {
			if n.NodeID() == node {
				owner = n
			}
		}
		if owner.Session(c.id) == nil {
			t.Fatalf("move %d: node %s does not hold the session", move, node)
		}
		c.connect()
	}
	n := pub.finish()
	for range 20 { // each connect returns once messages wait, or after Timeout
		c.connect()
		c.mu.Lock()
		done := len(c.got) > 0 && c.got[len(c.got)-1] == n
		c.mu.Unlock()
		if done {
			break
		}
	}
	c.connect() // acknowledges the last batch
	c.check(t, n)
	var handed, adopted uint64
	for _, node := range nodes {
		st := node.Stats()
		handed += st.HandedOver
		adopted += st.Adopted
	}
	if handed != 4 || adopted != 4 {
		t.Fatalf("stats: %d handed over, %d adopted; want 4 each", handed, adopted)
	}
	if ss := owner.Session(c.id); ss == nil || ss.Unacknowledged() != 0 {
		t.Fatal("the final owner lost the session or its acknowledgement")
	}
	_ = b
}

// TestMovedSessionIsFoundEverywhere: after two moves, a node that started
// later finds the session through the node that created it, and, once that
// node is gone, by asking every node.
func TestMovedSessionIsFoundEverywhere(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := cluster(t, hub, "node-a", "node-b", "node-c")
	a := nodes[0]
	id := a.connected(t)
	a.subscribe(t, id, "/found")
	// The creator takes no work, so the second move cannot bring the session back.
	if err := a.cfg.Backbone.(backbone.Router).TakeWork(false); err != nil {
		t.Fatal(err)
	}
	first, err := a.HandOver(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var mid *testServer
	for _, n := range nodes {
		if n.NodeID() == first {
			mid = n
		}
	}
	second, err := mid.HandOver(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("moved to %s twice", second)
	}
	late := newTestServer(t, Config{Backbone: newMemoryNode(t, hub, "node-late"), Timeout: 500 * time.Millisecond})
	if err := late.Publish("/found", "one"); err != nil {
		t.Fatal(err)
	}
	if ev := events(late.connect(t, id)); len(ev) != 1 || ev[0]["data"] != "one" {
		t.Fatalf("through the creator's trail: %v", ev)
	}
	// The creator and the first owner leave: the trail is gone. The late node
	// learned where the session is from the redirects; a node that starts
	// now finds it by asking every node.
	for _, n := range []*testServer{a, mid} {
		n.Close()
		_ = n.cfg.Backbone.Close()
	}
	if err := late.Publish("/found", "two"); err != nil {
		t.Fatal(err)
	}
	if ev := events(late.connect(t, id)); len(ev) != 1 || ev[0]["data"] != "two" {
		t.Fatalf("through the late node's route: %v", ev)
	}
	later := newTestServer(t, Config{Backbone: newMemoryNode(t, hub, "node-later"), Timeout: 500 * time.Millisecond})
	if err := later.Publish("/found", "three"); err != nil {
		t.Fatal(err)
	}
	out := later.connect(t, id)
	if ev := events(out); len(ev) != 1 || ev[0]["data"] != "three" || last(out)["successful"] != true {
		t.Fatalf("by asking: %v", out)
	}
	if later.Stats().Located != 1 {
		t.Fatalf("the later node located %d sessions by asking, want 1", later.Stats().Located)
	}
}

// TestDrainHandsSessionsOver: Shutdown moves every session to the other
// nodes; held connects are answered with advice to connect again at once,
// and each client goes on with its clientId.
func TestDrainHandsSessionsOver(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := cluster(t, hub, "node-a", "node-b", "node-c")
	a := nodes[0]
	const n = 30
	ids := make([]string, n)
	for i := range ids {
		ids[i] = a.connected(t)
		a.subscribe(t, ids[i], "/drain")
	}
	held := a.connectAsync(ids[0])
	a.waitHeld(t, ids[0])
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.HandedOver != n || st.Sessions != 0 || st.HandoversFailed != 0 {
		t.Fatalf("drained node stats %+v", st)
	}
	if r := last(recv(t, held)); r["successful"] != true || r["advice"].(msg)["reconnect"] != "retry" || r["advice"].(msg)["interval"] != 0.0 {
		t.Fatalf("held connect answered %v", r)
	}
	if err := nodes[1].Publish("/drain", "after"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		out := nodes[1].connect(t, id)
		if ev := events(out); len(ev) != 1 || ev[0]["data"] != "after" {
			t.Fatalf("session %s after the drain: %v", id, out)
		}
	}
	if got := nodes[1].Stats().Adopted + nodes[2].Stats().Adopted; got != n {
		t.Fatalf("%d adopted, want %d", got, n)
	}
}

// TestDrainWithoutOtherNodeReleases: alone, a draining node cannot hand
// sessions over; it releases them as before and counts the failure.
func TestDrainWithoutOtherNodeReleases(t *testing.T) {
	hub := backbone.NewMemoryHub()
	a := cluster(t, hub, "node-a")[0]
	id := a.connected(t)
	held := a.connectAsync(id)
	a.waitHeld(t, id)
	a.Drain()
	if r := last(recv(t, held)); r["successful"] != true || r["advice"].(msg)["interval"].(float64) < 1000 {
		t.Fatalf("released connect answered %v", r)
	}
	waitFor(t, "the failure to be counted", func() bool { return a.Stats().HandoversFailed == 1 })
	if a.Session(id) == nil {
		t.Fatal("the session was lost instead of released")
	}
}

// TestHandoverWebsocket: a websocket client whose session moves gets its held
// connect answered (reconnect at once), then the connection closes; it
// reconnects to another node and goes on with the same clientId.
func TestHandoverWebsocket(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := cluster(t, hub, "node-a", "node-b")
	a, b := nodes[0], nodes[1]
	ws := a.dialWS(t)
	id := ws.handshake()
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"c1"}]`, id))
	ws.readUntil("/meta/connect")
	ws.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/ws/moved"}]`, id))
	ws.readUntil("/meta/subscribe")
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"c2"}]`, id))
	a.waitHeld(t, id)
	if _, err := a.HandOver(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	r := ws.readUntil("/meta/connect")
	if r["successful"] != true || r["advice"].(msg)["reconnect"] != "retry" {
		t.Fatalf("held connect answered %v", r)
	}
	_ = ws.c.SetReadDeadline(time.Now().Add(testWait))
	if _, _, err := ws.c.ReadMessage(); closeCode(err) != 1001 {
		t.Fatalf("after the move the connection ended with %v, want close 1001", err)
	}
	if err := b.Publish("/ws/moved", "here"); err != nil {
		t.Fatal(err)
	}
	ws2 := b.dialWS(t)
	ws2.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"c3"}]`, id))
	got := ws2.readUntil("/ws/moved")
	if got["data"] != "here" {
		t.Fatalf("on the new node: %v", got)
	}
}

// TestDrainReleasesForwardedConnects: a draining node does not keep its
// clients waiting on connects it forwarded to other nodes: a long-polling
// connect is answered at once (reconnect now, Connection: close) and a
// websocket's connect likewise, then its connection closes; the sessions, on
// the other node, keep their messages.
func TestDrainReleasesForwardedConnects(t *testing.T) {
	// Connects are held far longer than the test waits for their replies.
	n := memoryNodes(t, backbone.NewMemoryHub(), Config{Timeout: time.Minute}, "node-a", "node-b")
	a, b := n[0], n[1]
	lp := b.connected(t)
	b.subscribe(t, lp, "/relay")
	held := a.connectAsync(lp)
	b.waitHeld(t, lp)

	wsID := b.connected(t)
	b.subscribe(t, wsID, "/relay")
	ws := a.dialWS(t)
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"w1"}]`, wsID))
	b.waitHeld(t, wsID)

	a.Drain()
	r := recv(t, held)
	if rep := last(r); rep["successful"] != true || rep["advice"].(msg)["reconnect"] != "retry" || rep["advice"].(msg)["interval"] != 0.0 || len(events(r)) != 0 {
		t.Fatalf("released long-polling connect: %v", r)
	}
	if rep := ws.readUntil("/meta/connect"); rep["successful"] != true || rep["advice"].(msg)["interval"] != 0.0 {
		t.Fatalf("released websocket connect: %v", rep)
	}
	_ = ws.c.SetReadDeadline(time.Now().Add(testWait))
	if _, _, err := ws.c.ReadMessage(); closeCode(err) != 1001 {
		t.Fatalf("after the release the websocket ended with %v, want close 1001", err)
	}
	if err := b.Publish("/relay", "kept"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{lp, wsID} { // a connect returns at once with messages waiting
		if ev := events(b.connect(t, id)); len(ev) != 1 || ev[0]["data"] != "kept" {
			t.Fatalf("session %s on node B after node A drained: %v", id, ev)
		}
	}
}

func TestMsgIDRoundTrip(t *testing.T) {
	for _, id := range []msgID{{1, 1}, {^uint64(0), ^uint64(0)}, {12345, 0}, {0, 7}} {
		if got := parseMsgID(id.String()); got != id {
			t.Errorf("parseMsgID(%q) = %v, want %v", id.String(), got, id)
		}
	}
	if (msgID{}).String() != "" {
		t.Error("the zero msgID has a string form")
	}
	for _, bad := range []string{"", "x", "1.", ".1", "1.2.3", "zz!.1"} {
		if got := parseMsgID(bad); got != (msgID{}) {
			t.Errorf("parseMsgID(%q) = %v, want the zero msgID", bad, got)
		}
	}
}

// hangingBackbone is a Memory node whose request handler stops answering
// once hang is set, as a SIGKILLed broker does: requests sent to it wait for
// ever.
type hangingBackbone struct {
	*backbone.Memory
	hang atomic.Bool
}

func (h *hangingBackbone) HandleRequests(f backbone.RequestHandler) {
	h.Memory.HandleRequests(func(ctx context.Context, data []byte) ([]byte, error) {
		if h.hang.Load() {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return f(ctx, data)
	})
}

// TestDeadOwnerEndsForwardedConnect: a connect forwarded to a session's owner
// that then stops answering (killed) does not wait out the connect timeout:
// the pings find the owner dead and the client is told, at once, to
// handshake again.
func TestDeadOwnerEndsForwardedConnect(t *testing.T) {
	hub := backbone.NewMemoryHub()
	mb, err := backbone.NewMemory(backbone.MemoryConfig{Hub: hub, NodeID: "node-b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	hb := &hangingBackbone{Memory: mb}
	cfg := Config{Timeout: time.Minute, LivenessInterval: 50 * time.Millisecond, LocateTimeout: 200 * time.Millisecond}
	a := newTestServer(t, Config{Backbone: newMemoryNode(t, hub, "node-a"), Timeout: cfg.Timeout, LivenessInterval: cfg.LivenessInterval, LocateTimeout: cfg.LocateTimeout})
	cfg.Backbone = hb
	b := newTestServer(t, cfg)
	id := b.connected(t)
	held := a.connectAsync(id)
	b.waitHeld(t, id)
	hb.hang.Store(true)  // node B is killed: it never answers again
	out := recv(t, held) // well before the minute the connect would be held
	if r := last(out); r["successful"] != false || r["error"] != "402::session_unknown" || r["advice"].(msg)["reconnect"] != "handshake" {
		t.Fatalf("a connect whose owner died was answered %v", out)
	}
}

// TestDrainingRepliesCloseTheirConnection: while a node drains, every polling
// reply closes its connection, so that the client's next request opens a new
// one (which a Service sends to a node that stays).
func TestDrainingRepliesCloseTheirConnection(t *testing.T) {
	ts := newTestServer(t, Config{})
	post := func() *http.Response {
		resp, err := http.Post(ts.url, "application/json", strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := post(); resp.Close {
		t.Fatal("a reply closed its connection before any drain")
	}
	ts.Drain()
	if resp := post(); !resp.Close {
		t.Fatal("a reply while draining keeps its connection open")
	}
}
