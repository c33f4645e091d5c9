package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// TestReplacedConnectLeavesMessagesForTheNewOne: a client sends a new
// /meta/connect only when it has given up on the previous one, so a message
// queued while the old connect is being answered must go with the new connect,
// not out on the abandoned request.
func TestReplacedConnectLeavesMessagesForTheNewOne(t *testing.T) {
	ts := newTestServer(t, Config{})
	id := ts.connected(t)
	ss := ts.Session(id)
	connect := func() *pendingConnect {
		m := &ServerMessage{m: &bayeux.Mutable{Channel: bayeux.MetaConnect, ClientID: id, ConnectionType: "long-polling"}}
		return ts.beginConnect(m, ss, reqInfo{transport: "long-polling"})
	}
	old := connect()
	// The message arrives as the client's next connect replaces the held one,
	// before the old connect's goroutine has woken up to answer.
	if err := ss.Deliver(nil, "/chat/a", "m1"); err != nil {
		t.Fatal(err)
	}
	next := connect()
	msgs, reply := ts.finish(old, true)
	if len(msgs) != 0 {
		t.Fatalf("the replaced connect took %d message(s) to an abandoned request", len(msgs))
	}
	if reply == nil || reply.m.Successful != bayeux.True {
		t.Fatalf("replaced connect reply: %+v", reply)
	}
	msgs, _ = ts.finish(next, true)
	if len(msgs) != 1 || string(msgs[0].Data()) != `"m1"` {
		t.Fatalf("the new connect got %d message(s), want the one queued", len(msgs))
	}
}

// TestForwardedWebsocketBatchesKeepTheirOrder: a websocket whose session another
// node owns (Faye handshakes over HTTP, then its websocket lands elsewhere) has
// its batches forwarded; they must reach the owner in the order the client sent
// them, as they would on the owner's own websocket.
func TestForwardedWebsocketBatchesKeepTheirOrder(t *testing.T) {
	a, b := twoNodes(t)
	id := a.handshake(t)
	const n = 200
	got := make(chan int, n)
	l := a.NewLocalSession("order")
	if err := l.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := l.Channel("/order").Subscribe(func(m bayeux.Message) {
		var i int
		if err := json.Unmarshal(m.Data(), &i); err != nil {
			t.Errorf("data %s: %v", m.Data(), err)
		}
		got <- i
	}); err != nil {
		t.Fatal(err)
	}
	ws := b.dialWS(t)
	for i := range n {
		ws.send(fmt.Sprintf(`[{"channel":"/order","clientId":%q,"data":%d,"id":"%d"}]`, id, i, i))
	}
	for want := range n {
		select {
		case i := <-got:
			if i != want {
				t.Fatalf("the owner received publish %d where %d was sent", i, want)
			}
		case <-time.After(testWait):
			t.Fatalf("publish %d did not reach the owner", want)
		}
	}
}

// TestForwardedWebsocketConnectHoldsUpNothing: a batch holding a /meta/connect
// and a publish, read from a websocket whose session another node owns: the
// owner holds the connect, and the publish is answered meanwhile.
func TestForwardedWebsocketConnectHoldsUpNothing(t *testing.T) {
	n := memoryNodes(t, backbone.NewMemoryHub(), Config{Timeout: time.Hour}, "node-a", "node-b")
	a, b := n[0], n[1]
	id := a.connected(t)
	ws := b.dialWS(t)
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"c"},`+
		`{"channel":"/x","clientId":%q,"data":1,"id":"p"}]`, id, id))
	for _, m := range ws.read() {
		if m["channel"] != "/x" || m["successful"] != true {
			t.Fatalf("before the publish reply: %v", m)
		}
	}
	a.waitHeld(t, id)
	ws.send(fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, id))
	if c := ws.readUntil("/meta/connect"); c["successful"] != true {
		t.Fatalf("held connect after disconnect: %v", c)
	}
}

// TestOldWebsocketDoesNotTakeTheQueue: a client whose websocket died unseen
// (half-open) opens a new one and connects on it. The old connection's writer,
// run by its ping timer, must not take the session's messages to the dead socket.
func TestOldWebsocketDoesNotTakeTheQueue(t *testing.T) {
	ts := newTestServer(t, Config{MaxLazyTimeout: 20 * time.Millisecond})
	c, err := ts.CreateChannel("/lazy", func(c *ServerChannel) { c.SetPersistent(true); c.SetLazy(true) })
	if err != nil {
		t.Fatal(err)
	}
	ws1 := ts.dialWS(t)
	id := ws1.handshake()
	ss := ts.Session(id)
	if err := c.Subscribe(ss); err != nil {
		t.Fatal(err)
	}
	ws2 := ts.dialWS(t)
	ws2.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id))
	ts.waitHeld(t, id)
	var old *wsConn
	for _, wc := range ts.websockets() {
		if wc.current() == ss && !ss.boundTo(wc) {
			old = wc
		}
	}
	if old == nil {
		t.Fatal("no old connection found")
	}
	// A lazy message waits in the queue; the old connection's ping runs its writer.
	if err := c.Publish(nil, "m1"); err != nil {
		t.Fatal(err)
	}
	old.wake()
	if ev := events([]msg{ws2.readUntil("/lazy")}); len(ev) != 1 || ev[0]["data"] != "m1" {
		t.Fatalf("new connection got %v", ev)
	}
	// Whatever the old connection wrote came before this reply.
	ws1.send(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"],"id":"probe"}]`)
	for _, m := range ws1.read() {
		if m["channel"] != "/meta/handshake" {
			t.Fatalf("the old connection was sent %v", m)
		}
	}
}

// TestSubscriptionsPerSessionAreCapped: one client cannot make the server
// create channels (and backbone interest) without bound by subscribing to random
// names; a subscribe that would pass the cap is refused whole.
func TestSubscriptionsPerSessionAreCapped(t *testing.T) {
	ts := newTestServer(t, Config{MaxSubscriptionsPerSession: 3})
	id := ts.connected(t)
	ts.subscribe(t, id, "/r/1", "/r/2")
	sub := func(channels string) msg {
		return ts.must(t, fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":%s}]`, id, channels))[0]
	}
	if r := sub(`["/r/3","/r/4"]`); r["successful"] != false || r["error"] != bayeux.ErrSubscriptionLimit {
		t.Fatalf("subscribe past the cap: %v", r)
	}
	if n := ts.Stats().Channels; n != 2 {
		t.Fatalf("%d channels after a refused subscribe, want 2", n)
	}
	if r := sub(`"/r/1"`); r["successful"] != true {
		t.Fatalf("subscribing again to a subscribed channel: %v", r)
	}
	if r := sub(`"/r/3"`); r["successful"] != true {
		t.Fatalf("subscribe up to the cap: %v", r)
	}
	if r := sub(`"/r/4"`); r["successful"] != false {
		t.Fatalf("subscribe past the cap: %v", r)
	}
	ts.must(t, fmt.Sprintf(`[{"channel":"/meta/unsubscribe","clientId":%q,"subscription":"/r/1"}]`, id))
	if r := sub(`"/r/4"`); r["successful"] != true {
		t.Fatalf("subscribe after an unsubscribe freed a place: %v", r)
	}

	// The default cap applies with a zero Config.
	ts = newTestServer(t, Config{})
	id = ts.connected(t)
	names := make([]string, DefaultMaxSubscriptionsPerSession)
	for i := range names {
		names[i] = fmt.Sprintf("/d/%d", i)
	}
	ts.subscribe(t, id, names...)
	if r := ts.must(t, fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/d/x"}]`, id))[0]; r["successful"] != false {
		t.Fatalf("subscribe past the default cap: %v", r)
	}
}

// TestLazyTimerDoesNotCutTheNextConnectShort: lazy messages that went out early
// (with a non-lazy one) leave no timer behind to answer the next connect, empty,
// before its timeout.
func TestLazyTimerDoesNotCutTheNextConnectShort(t *testing.T) {
	const timeout = 400 * time.Millisecond
	ts := newTestServer(t, Config{MaxLazyTimeout: 20 * time.Millisecond, Timeout: timeout})
	if _, err := ts.CreateChannel("/lazy", func(c *ServerChannel) { c.SetPersistent(true); c.SetLazy(true) }); err != nil {
		t.Fatal(err)
	}
	id := ts.connected(t)
	ts.subscribe(t, id, "/lazy", "/now")
	if err := ts.Publish("/lazy", "l"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Publish("/now", "n"); err != nil {
		t.Fatal(err)
	}
	if ev := events(ts.connect(t, id)); len(ev) != 2 {
		t.Fatalf("connect after a lazy and a non-lazy message: %v", ev)
	}
	start := time.Now()
	out := ts.connect(t, id)
	if ev := events(out); len(ev) != 0 {
		t.Fatalf("next connect: %v", out)
	}
	// A lower bound: the connect must be held for its whole timeout.
	if held := time.Since(start); held < timeout {
		t.Fatalf("the next connect was answered after %v, before its %v timeout", held, timeout)
	}
}

// slowSubscribeBackbone is a real Memory backbone whose Subscribe waits for
// gate, as the NATS backbone's does for its server's confirmation (a round trip,
// up to seconds while NATS is slow).
type slowSubscribeBackbone struct {
	*countingBackbone
	entered chan string
	gate    chan struct{}
}

func (b *slowSubscribeBackbone) Subscribe(p string) error {
	b.entered <- p
	<-b.gate
	return b.countingBackbone.Subscribe(p)
}

// TestPublishDoesNotWaitForBackboneSubscribe: while the backbone confirms the
// interest of a channel's first subscriber, publishes on that channel (local
// ones, and remote ones on the backbone's delivery goroutine) go on.
func TestPublishDoesNotWaitForBackboneSubscribe(t *testing.T) {
	bb := &slowSubscribeBackbone{
		countingBackbone: newMemoryNode(t, backbone.NewMemoryHub(), "node-a"),
		entered:          make(chan string, 1),
		gate:             make(chan struct{}),
	}
	ts := newTestServer(t, Config{Backbone: bb})
	defer func() {
		select {
		case <-bb.gate:
		default:
			close(bb.gate)
		}
	}()
	id := ts.connected(t)
	subscribed := ts.postAsync(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/chat/**"}]`, id))
	select {
	case p := <-bb.entered:
		if p != "/chat/**" {
			t.Fatalf("backbone subscribe to %q", p)
		}
	case <-time.After(testWait):
		t.Fatal("no backbone subscribe")
	}
	published := make(chan error, 1)
	go func() { published <- ts.Publish("/chat/a", "x") }()
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testWait):
		t.Fatal("a publish waited for the backbone to confirm a subscription")
	}
	close(bb.gate)
	if out := recv(t, subscribed); len(out) != 1 || out[0]["successful"] != true {
		t.Fatalf("subscribe: %v", out)
	}
	if got := bb.snapshot(); !slices.Contains(got, "sub /chat/**") {
		t.Fatalf("backbone calls %v", got)
	}
}
