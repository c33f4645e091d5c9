package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// durableNode is a node of a durable cluster, with what a test needs to
// kill it.
type durableNode struct {
	*testServer
	bb *backbone.NATS
	ds *backbone.Durable
}

// kill stops the node the way a crash does, as far as its peers can tell:
// its backbone connection drops and it answers nothing more. Its sessions
// end with ErrShutdown, which keeps their records.
func (n *durableNode) kill() {
	n.hs.CloseClientConnections()
	n.hs.Close()
	_ = n.bb.Close()
	n.Close()
}

// startJetStream starts a NATS server with JetStream on a loopback port.
func startJetStream(t *testing.T) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(testWait) {
		t.Fatal("NATS not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// durableCluster starts a NATS server with JetStream and one durable node
// per name.
func durableCluster(t *testing.T, names ...string) (*natsserver.Server, []*durableNode) {
	t.Helper()
	ns := startJetStream(t)
	var out []*durableNode
	for _, name := range names {
		bb, err := backbone.NewNATS(backbone.NATSConfig{URL: ns.ClientURL(), Cluster: "durable", NodeID: name, FailFast: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bb.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		ds, err := bb.EnableDurability(ctx, backbone.DurableConfig{Settings: config.Durability{}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ts := newTestServer(t, Config{Backbone: bb, Durable: ds, Timeout: 500 * time.Millisecond,
			LivenessInterval: 100 * time.Millisecond, DurableInterval: 100 * time.Millisecond})
		ts.AddExtension(AckExtension{})
		out = append(out, &durableNode{testServer: ts, bb: bb, ds: ds})
	}
	return ns, out
}

// publishRange publishes from..to on channel from node, each stored before
// the next.
func publishRange(t *testing.T, node *durableNode, channel string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := node.Publish(channel, i); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDurableSessionSurvivesItsNode: an ack client's node dies with
// messages queued and one batch unacknowledged; messages are published while
// no node holds the session. The client's next connect, on another node, is
// served by the session adopted from its record: same clientId, no
// handshake, every message exactly once and in order.
func TestDurableSessionSurvivesItsNode(t *testing.T) {
	_, nodes := durableCluster(t, "node-a", "node-b")
	a, b := nodes[0], nodes[1]
	c := newAckClient(t, a.testServer)
	a.subscribe(t, c.id, "/durable/room")
	publishRange(t, b, "/durable/room", 1, 20)
	testutil.Eventually(t, testWait, "the client to receive the first 20", func(context.Context) (bool, string) {
		c.connect()
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.got) >= 20, fmt.Sprint(len(c.got))
	})
	publishRange(t, b, "/durable/room", 21, 30)
	testutil.Eventually(t, testWait, "the session's queue to hold 21..30 on node A", func(context.Context) (bool, string) {
		ss := a.Session(c.id)
		return ss != nil && ss.QueueLen() == 10, ""
	})
	c.connect() // 21..30 go out in a batch the client will only acknowledge on node B
	w := a.Stats().DurableWrites
	testutil.Eventually(t, testWait, "node A to write the session's record again", func(context.Context) (bool, string) {
		return a.Stats().DurableWrites > w, ""
	})
	a.kill()
	publishRange(t, b, "/durable/room", 31, 40) // nobody holds the session now
	c.nodes = []*testServer{b.testServer}
	testutil.Eventually(t, testWait, "the client to receive 1..40 through node B", func(context.Context) (bool, string) {
		c.connect()
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.got) >= 40, fmt.Sprint(len(c.got))
	})
	publishRange(t, b, "/durable/room", 41, 45) // and the adopted session goes on as before
	testutil.Eventually(t, testWait, "the client to receive 41..45", func(context.Context) (bool, string) {
		c.connect()
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.got) >= 45, fmt.Sprint(len(c.got))
	})
	c.check(t, 45)
	if st := b.Stats(); st.DurableAdopted != 1 {
		t.Errorf("node B adopted %d durable sessions, want 1", st.DurableAdopted)
	}
}

// TestDurableWebsocketSessionSurvivesItsNode: a websocket client whose node
// died reconnects to another node with the same clientId and gets the
// messages published meanwhile.
func TestDurableWebsocketSessionSurvivesItsNode(t *testing.T) {
	_, nodes := durableCluster(t, "node-a", "node-b")
	a, b := nodes[0], nodes[1]
	ws := a.dialWS(t)
	id := ws.handshake()
	ws.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/durable/ws"}]`, id))
	if r := ws.readUntil("/meta/subscribe"); r["successful"] != true {
		t.Fatalf("subscribe: %v", r)
	}
	w := a.Stats().DurableWrites
	testutil.Eventually(t, testWait, "node A to write the session's record with its subscription", func(context.Context) (bool, string) {
		return a.Stats().DurableWrites > w, ""
	})
	a.kill()
	if err := b.Publish("/durable/ws", "while-dead"); err != nil {
		t.Fatal(err)
	}
	ws2 := b.dialWS(t)
	ws2.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id))
	if got := ws2.readUntil("/durable/ws"); got["data"] != "while-dead" {
		t.Fatalf("on node B: %v", got)
	}
	ws2.send(fmt.Sprintf(`[{"channel":"/durable/ws","clientId":%q,"data":"after"}]`, id))
	for got := ws2.readUntil("/durable/ws"); got["data"] != "after"; got = ws2.readUntil("/durable/ws") {
		if got["successful"] != true {
			t.Fatalf("the adopted session's own publish: %v", got)
		}
	}
	if b.Session(id) == nil {
		t.Fatalf("node B does not hold session %s", id)
	}
}

// TestDurableSessionOfLiveNodeIsNotTaken: a node asked to adopt a session
// whose owner is alive and holds it points at the owner instead.
func TestDurableSessionOfLiveNodeIsNotTaken(t *testing.T) {
	_, nodes := durableCluster(t, "node-a", "node-b")
	a, b := nodes[0], nodes[1]
	id := a.connected(t)
	a.subscribe(t, id, "/durable/live")
	testutil.Eventually(t, testWait, "node A to write the session's record", func(context.Context) (bool, string) {
		return a.Stats().DurableWrites > 0, ""
	})
	if got := b.orphan(id); got.here || got.node != "node-a" {
		t.Fatalf("orphan on node B = %+v, want the session left on node-a", got)
	}
	if a.Session(id) == nil || b.Session(id) != nil {
		t.Fatal("the session moved")
	}
}

// TestDurableSessionWithGapHandshakesAgain: when messages the session had
// not received are gone from the stream, the adopting node deletes the
// record and the client is told to handshake again, with a clear error.
func TestDurableSessionWithGapHandshakesAgain(t *testing.T) {
	ns, nodes := durableCluster(t, "node-a", "node-b")
	a, b := nodes[0], nodes[1]
	id := a.connected(t)
	a.subscribe(t, id, "/durable/gap")
	publishRange(t, b, "/durable/gap", 1, 3)
	testutil.Eventually(t, testWait, "node A to queue the messages", func(context.Context) (bool, string) {
		ss := a.Session(id)
		return ss != nil && ss.QueueLen() == 3, ""
	})
	w := a.Stats().DurableWrites
	testutil.Eventually(t, testWait, "node A to write the session's record", func(context.Context) (bool, string) {
		return a.Stats().DurableWrites > w, ""
	})
	a.kill()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), b.ds.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil { // as maxAge would
		t.Fatal(err)
	}
	publishRange(t, b, "/durable/gap", 4, 4)
	out := b.must(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id))
	if r := last(out); r["error"] != "402::session_unknown" || r["advice"].(msg)["reconnect"] != "handshake" {
		t.Fatalf("connect of a session with a gap = %v, want 402 with handshake advice", out)
	}
	if st := b.Stats(); st.DurableGaps != 1 || st.DurableAdopted != 0 {
		t.Fatalf("gaps %d, adopted %d; want 1 and 0", st.DurableGaps, st.DurableAdopted)
	}
	if _, _, err := b.ds.GetRecord(context.Background(), id); err == nil {
		t.Fatal("the record of the lost session is still there")
	}
}

// TestDurablePublishRefusedWhenStreamFull: a publish the stream does not
// store is refused to its publisher, and nobody receives it.
func TestDurablePublishRefusedWhenStreamFull(t *testing.T) {
	ns := startJetStream(t)
	bb, err := backbone.NewNATS(backbone.NATSConfig{URL: ns.ClientURL(), Cluster: "full", NodeID: "node-a", FailFast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bb.Close() })
	ds, err := bb.EnableDurability(context.Background(), backbone.DurableConfig{Settings: config.Durability{MaxBytes: 8192, MaxSessionBytes: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	a := newTestServer(t, Config{Backbone: bb, Durable: ds, Timeout: 200 * time.Millisecond})
	id := a.connected(t)
	a.subscribe(t, id, "/full")
	big := strings.Repeat("x", 1000)
	var refused msg
	for i := 0; i < 50 && refused == nil; i++ {
		out := a.must(t, fmt.Sprintf(`[{"channel":"/full","clientId":%q,"data":%q}]`, id, big))
		if r := last(out); r["successful"] != true {
			refused = r
		}
	}
	if refused == nil || !strings.HasPrefix(fmt.Sprint(refused["error"]), "503::") {
		t.Fatalf("publishing past the stream's maxBytes: %v, want a 503 error", refused)
	}
	if a.Stats().DurableNotStored == 0 {
		t.Error("the refused publish is not counted")
	}
}

// pingAnswers answers pings with the process numbers it is given, in turn.
type pingAnswers struct {
	mu      sync.Mutex
	answers []string
}

func (p *pingAnswers) Request(context.Context, string, []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.answers[0]
	if len(p.answers) > 1 {
		p.answers = p.answers[1:]
	}
	return []byte(a), nil
}

func (p *pingAnswers) HandleRequests(backbone.RequestHandler) {}

// TestRestartedNodeCountsAsDead: a node that answers pings from another
// process than before (restarted under the same ID) is dead to the requests
// that waited on the old one; one that keeps answering from the same process
// is not.
func TestRestartedNodeCountsAsDead(t *testing.T) {
	s := newTestServer(t, Config{LivenessInterval: 10 * time.Millisecond})
	same, doneSame := s.watchNode(&pingAnswers{answers: []string{"p1"}}, "node-x")
	defer doneSame()
	restarted, doneRestarted := s.watchNode(&pingAnswers{answers: []string{"p1", "p1", "p2"}}, "node-y")
	defer doneRestarted()
	select {
	case <-restarted:
	case <-time.After(testWait):
		t.Fatal("a node that restarted under its ID was not found dead")
	}
	select {
	case <-same:
		t.Fatal("a node answering from the same process was found dead")
	default:
	}
}

// TestNodeStartEndsWaitsOnItsOldProcess: a node that starts tells the others,
// and the requests they had waiting on a node of that ID (its process before
// a restart in place) end at once.
func TestNodeStartEndsWaitsOnItsOldProcess(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := memoryNodes(t, hub, Config{LivenessInterval: time.Hour}, "node-a", "node-b")
	a, b := nodes[0], nodes[1]
	rq, _ := a.router()
	gone, done := a.watchNode(rq, "node-b")
	defer done()
	b.announceStart()
	select {
	case <-gone:
	case <-time.After(testWait):
		t.Fatal("the wait on node-b did not end when node-b announced its start")
	}
}
