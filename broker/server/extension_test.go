package server

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

func TestAckExtensionRedeliversAfterDroppedConnect(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 200 * time.Millisecond})
	ts.AddExtension(AckExtension{})
	hs := ts.must(t, `[{"channel":"/meta/handshake","supportedConnectionTypes":["long-polling"],"ext":{"ack":true}}]`)[0]
	if hs["ext"].(msg)["ack"] != true {
		t.Fatalf("handshake reply without ext.ack: %v", hs)
	}
	id := hs["clientId"].(string)
	connect := func(ack int) []msg {
		return ts.must(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","ext":{"ack":%d}}]`, id, ack))
	}
	connect(0)
	ts.subscribe(t, id, "/orders")
	for i := 1; i <= 2; i++ {
		if err := ts.Publish("/orders", i); err != nil {
			t.Fatal(err)
		}
	}
	first := connect(0)
	if ev := events(first); len(ev) != 2 || ev[0]["data"] != 1.0 || ev[1]["data"] != 2.0 {
		t.Fatalf("first batch %v", first)
	}
	batch := last(first)["ext"].(msg)["ack"].(float64)
	if batch != 1 {
		t.Fatalf("batch id %v", batch)
	}
	// The reply was "lost": the client acks the previous batch again and gets
	// the same messages, in order.
	again := connect(0)
	if ev := events(again); len(ev) != 2 || ev[0]["data"] != 1.0 || ev[1]["data"] != 2.0 {
		t.Fatalf("redelivery %v", again)
	}
	if err := ts.Publish("/orders", 3); err != nil {
		t.Fatal(err)
	}
	next := connect(int(batch))
	if ev := events(next); len(ev) != 1 || ev[0]["data"] != 3.0 {
		t.Fatalf("after ack: %v", next)
	}
	if last(next)["ext"].(msg)["ack"] != 2.0 {
		t.Fatalf("next batch id: %v", last(next))
	}
	connect(2)
	if n := ts.Session(id).Unacknowledged(); n != 0 {
		t.Fatalf("%d unacknowledged after the final ack", n)
	}
}

func TestTimesyncExtension(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.AddExtension(TimesyncExtension{Now: func() time.Time { return time.UnixMilli(10_000) }})
	r := ts.must(t, `[{"channel":"/meta/handshake","ext":{"timesync":{"tc":9000,"l":100,"o":0}}}]`)[0]
	sync := r["ext"].(msg)["timesync"].(msg)
	if sync["tc"] != 9000.0 || sync["ts"] != 10000.0 || sync["a"] != 900.0 {
		t.Fatalf("timesync %v", sync)
	}
	plain := ts.must(t, `[{"channel":"/meta/handshake"}]`)[0]
	if _, ok := plain["ext"]; ok {
		t.Fatalf("timesync added without a request: %v", plain)
	}
}

type tagExt struct{ in, out atomic.Int32 }

func (e *tagExt) Incoming(_ *ServerSession, m *ServerMessage) bool {
	e.in.Add(1)
	return !strings.HasSuffix(m.Channel(), "/drop")
}

func (e *tagExt) Outgoing(_, _ *ServerSession, m *ServerMessage) *ServerMessage {
	e.out.Add(1)
	if m.Channel() == "/tagged" {
		c := m.Copy()
		_ = c.Mutable().SetExtField("tag", "x")
		return c
	}
	return m
}

type sessExt struct{ seen atomic.Int32 }

func (e *sessExt) Incoming(*ServerSession, *ServerMessage) bool { e.seen.Add(1); return true }
func (e *sessExt) Outgoing(_ *ServerSession, m *ServerMessage) *ServerMessage {
	if m.Channel() == "/hidden" {
		return nil
	}
	return m
}

func TestExtensions(t *testing.T) {
	ts := newTestServer(t, Config{})
	ext := &tagExt{}
	ts.AddExtension(ext)
	a, b := ts.connected(t), ts.connected(t)
	se := &sessExt{}
	ts.Session(a).AddExtension(se)
	ts.subscribe(t, a, "/tagged", "/hidden", "/a/drop")
	if r := ts.publish(t, b, "/a/drop", `1`); r["successful"] != false || r["error"] != "404::message_deleted" {
		t.Fatalf("dropped message acked as successful: %v", r)
	}
	ts.publish(t, b, "/hidden", `2`)
	ts.publish(t, b, "/tagged", `3`)
	ev := events(ts.connect(t, a))
	if len(ev) != 1 || ev[0]["channel"] != "/tagged" || ev[0]["ext"].(msg)["tag"] != "x" {
		t.Fatalf("delivered %v", ev)
	}
	if ext.in.Load() == 0 || ext.out.Load() == 0 || se.seen.Load() == 0 {
		t.Fatalf("extensions not called: in=%d out=%d session=%d", ext.in.Load(), ext.out.Load(), se.seen.Load())
	}
}

func TestAuthorizersDenyWins(t *testing.T) {
	ts := newTestServer(t, Config{})
	id := ts.connected(t)
	grant := AuthorizerFunc(func(Operation, bayeux.ChannelID, *ServerSession, *ServerMessage) Result { return Grant })
	deny := AuthorizerFunc(func(op Operation, _ bayeux.ChannelID, _ *ServerSession, _ *ServerMessage) Result {
		if op == OpPublish {
			return Deny
		}
		return Ignore
	})
	ignore := AuthorizerFunc(func(Operation, bayeux.ChannelID, *ServerSession, *ServerMessage) Result { return Ignore })
	mk := func(name string, a ...Authorizer) {
		_, err := ts.CreateChannel(name, func(c *ServerChannel) {
			for _, x := range a {
				c.AddAuthorizer(x)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	mk("/open/**", grant)
	mk("/open/locked/*", deny)
	mk("/quiet/*", ignore)
	tests := []struct {
		op      string
		channel string
		ok      bool
	}{
		{"publish", "/open/x", true},
		{"subscribe", "/open/x", true},
		{"publish", "/open/locked/x", false}, // deny on /open/locked/* beats grant on /open/**
		{"subscribe", "/open/locked/x", true},
		{"subscribe", "/open/locked/*", true},
		{"publish", "/quiet/x", false}, // authorizers exist, none grants
		{"publish", "/free/x", true},   // no authorizers at all
	}
	for _, tc := range tests {
		var r msg
		if tc.op == "publish" {
			r = ts.publish(t, id, tc.channel, `1`)
		} else {
			r = ts.must(t, fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":%q}]`, id, tc.channel))[0]
		}
		if (r["successful"] == true) != tc.ok {
			t.Errorf("%s %s: %v, want ok=%v", tc.op, tc.channel, r, tc.ok)
		}
	}
}

type denyHandshake struct{ DefaultSecurityPolicy }

func (denyHandshake) CanHandshake(_ *Server, _ *ServerSession, m *ServerMessage) bool {
	var tok string
	return m.Message().ExtField("token", &tok) && tok == "secret"
}

func TestSecurityPolicyHandshake(t *testing.T) {
	ts := newTestServer(t, Config{Security: denyHandshake{}})
	r := ts.must(t, `[{"channel":"/meta/handshake"}]`)[0]
	if r["successful"] != false || r["error"] != bayeux.ErrHandshakeDenied || r["advice"].(msg)["reconnect"] != "none" {
		t.Fatalf("denied handshake %v", r)
	}
	r = ts.must(t, `[{"channel":"/meta/handshake","ext":{"token":"secret"}}]`)[0]
	if r["successful"] != true || r["authSuccessful"] != true {
		t.Fatalf("allowed handshake %v", r)
	}
	if ts.Stats().Sessions != 1 {
		t.Fatalf("sessions %d", ts.Stats().Sessions)
	}
}

func TestLocalSessionAndListeners(t *testing.T) {
	ts := newTestServer(t, Config{})
	var evs []string
	ts.AddListener(ServerListener{
		SessionAdded:   func(s *ServerSession, _ *ServerMessage) { evs = append(evs, "added") },
		SessionRemoved: func(*ServerSession, error) { evs = append(evs, "removed") },
		Subscribed:     func(_ *ServerSession, c *ServerChannel, _ *ServerMessage) { evs = append(evs, "sub "+c.Name()) },
	})
	local := ts.NewLocalSession("bot")
	if err := local.Channel("/x").Publish(1); err != ErrNotHandshaken {
		t.Fatalf("publish before handshake: %v", err)
	}
	if err := local.Handshake(); err != nil {
		t.Fatal(err)
	}
	got := make(chan bayeux.Message, 4)
	if err := local.Channel("/chat/*").Subscribe(func(m bayeux.Message) { got <- m }); err != nil {
		t.Fatal(err)
	}
	// A channel listener may veto a publish.
	ch, _ := ts.CreateChannel("/chat/blocked")
	remove := ch.AddListener(func(*ServerSession, *ServerChannel, *ServerMessage) bool { return false })
	remote := ts.connected(t)
	if r := ts.publish(t, remote, "/chat/blocked", `"no"`); r["successful"] != false || r["error"] != "404::message_deleted" || r["id"] != "p1" {
		t.Fatalf("vetoed publish answered %v, want successful false with 404::message_deleted", r)
	}
	if r := ts.publish(t, remote, "/chat/room", `"yes"`); r["successful"] != true {
		t.Fatalf("accepted publish answered %v", r)
	}
	select {
	case m := <-got:
		if string(m.Data()) != `"yes"` || m.Channel() != "/chat/room" {
			t.Fatalf("local got %s on %s", m.Data(), m.Channel())
		}
	case <-time.After(testWait):
		t.Fatal("local session got nothing")
	}
	if len(got) != 0 {
		t.Fatal("vetoed message delivered")
	}
	remove()
	// The local session publishes to a remote subscriber.
	ts.subscribe(t, remote, "/from/bot")
	if err := local.Channel("/from/bot").Publish(map[string]int{"v": 7}); err != nil {
		t.Fatal(err)
	}
	if ev := events(ts.connect(t, remote)); len(ev) != 1 || ev[0]["data"].(msg)["v"] != 7.0 {
		t.Fatalf("remote got %v", ev)
	}
	sc := ts.Channel("/chat/*")
	if sc == nil || sc.SubscriberCount() != 1 || sc.Subscribers()[0] != local.ServerSession() {
		t.Fatal("ServerChannel subscribers wrong")
	}
	local.Disconnect()
	if strings.Join(evs, ",") != "added,sub /chat/*,added,sub /from/bot,removed" {
		t.Fatalf("listener events %v", evs)
	}
}

func TestServerSessionQueueInspection(t *testing.T) {
	ts := newTestServer(t, Config{})
	id := ts.connected(t)
	ss := ts.Session(id)
	if err := ss.Deliver(nil, "/direct", "a"); err != nil {
		t.Fatal(err)
	}
	if ss.QueueLen() != 1 || ss.QueueBytes() == 0 || ss.Queue()[0].Channel() != "/direct" {
		t.Fatalf("queue len=%d bytes=%d", ss.QueueLen(), ss.QueueBytes())
	}
	if ev := events(ts.connect(t, id)); len(ev) != 1 || ev[0]["data"] != "a" {
		t.Fatalf("delivered %v", ev)
	}
	if ss.QueueLen() != 0 || ss.QueueBytes() != 0 {
		t.Fatal("queue not drained")
	}
}

func TestLazyChannel(t *testing.T) {
	ts := newTestServer(t, Config{MaxLazyTimeout: 100 * time.Millisecond})
	id := ts.connected(t)
	ts.subscribe(t, id, "/lazy")
	ts.Channel("/lazy").SetLazy(true)
	ch := ts.connectAsync(id)
	ts.waitHeld(t, id)
	start := time.Now()
	if err := ts.Publish("/lazy", 1); err != nil {
		t.Fatal(err)
	}
	out := recv(t, ch)
	if ev := events(out); len(ev) != 1 || time.Since(start) < 80*time.Millisecond {
		t.Fatalf("lazy message %v after %v", ev, time.Since(start))
	}
}

func TestAckUnacknowledgedCountsAgainstQueueCap(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 100 * time.Millisecond, MaxQueueBytes: 4096})
	ts.AddExtension(AckExtension{})
	id := ts.must(t, `[{"channel":"/meta/handshake","ext":{"ack":true}}]`)[0]["clientId"].(string)
	ts.subscribe(t, id, "/x")
	body := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","ext":{"ack":0}}]`, id)
	// The client receives batches but never acknowledges them.
	for i := 0; i < 100 && ts.Session(id) != nil; i++ {
		if err := ts.Publish("/x", strings.Repeat("y", 200)); err != nil {
			t.Fatal(err)
		}
		ts.must(t, body)
	}
	if ss := ts.Session(id); ss != nil {
		t.Fatalf("session kept %d unacknowledged messages past the queue cap", ss.Unacknowledged())
	}
}

// TestSessionMessageListener checks ServerSession.AddMessageListener: it sees
// each message before it is queued to its session, with the sender, and
// returning false drops the message for that session only.
func TestSessionMessageListener(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 100 * time.Millisecond})
	a, b, c := ts.connected(t), ts.connected(t), ts.connected(t)
	ts.subscribe(t, a, "/l/*")
	ts.subscribe(t, c, "/l/*")
	type call struct{ to, from, channel string }
	calls := make(chan call, 10)
	ts.Session(a).AddMessageListener(func(to, from *ServerSession, m *ServerMessage) bool {
		calls <- call{to.ID(), from.ID(), m.Channel()}
		return m.Channel() != "/l/drop"
	})
	ts.publish(t, b, "/l/keep", `1`)
	ts.publish(t, b, "/l/drop", `2`)
	// The publish replies came after the deliveries: the calls are made.
	want := []call{{a, b, "/l/keep"}, {a, b, "/l/drop"}}
	if len(calls) != len(want) {
		t.Fatalf("listener called %d times, want %d", len(calls), len(want))
	}
	for _, w := range want {
		if got := <-calls; got != w {
			t.Fatalf("listener call %v, want %v", got, w)
		}
	}
	if ev := events(ts.connect(t, a)); len(ev) != 1 || ev[0]["channel"] != "/l/keep" {
		t.Fatalf("a got %v, want only /l/keep", ev)
	}
	if ev := events(ts.connect(t, c)); len(ev) != 2 {
		t.Fatalf("c, with no listener, got %v, want both messages", ev)
	}
}

// TestSessionChannelListenWithoutSubscribing checks SessionChannel.AddListener:
// the listener hears what is delivered to its session on the channel, creates
// no subscription and no channel, hears no publish to the channel, and stops
// when removed.
func TestSessionChannelListenWithoutSubscribing(t *testing.T) {
	ts := newTestServer(t, Config{})
	local := ts.NewLocalSession("listener")
	if err := local.Handshake(); err != nil {
		t.Fatal(err)
	}
	ss := local.ServerSession()
	var heard []string // dispatch to a local session runs on the deliverer's goroutine
	remove := local.Channel("/direct/*").AddListener(func(m bayeux.Message) {
		heard = append(heard, m.Channel()+" "+string(m.Data()))
	})
	if err := ts.Publish("/direct/x", "published"); err != nil {
		t.Fatal(err)
	}
	if err := ss.Deliver(nil, "/direct/x", "delivered"); err != nil {
		t.Fatal(err)
	}
	if err := ss.Deliver(nil, "/elsewhere", "other"); err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 || heard[0] != `/direct/x "delivered"` {
		t.Fatalf("listener heard %q, want only the delivered message", heard)
	}
	if subs := ss.Subscriptions(); len(subs) != 0 {
		t.Fatalf("listening subscribed the session to %v", subs)
	}
	if ts.Channel("/direct/*") != nil || ts.Channel("/direct/x") != nil {
		t.Fatal("listening created a channel")
	}
	if st := ts.Stats(); st.Subscriptions != 0 || st.Channels != 0 {
		t.Fatalf("stats %+v, want no subscription and no channel", st)
	}
	remove()
	if err := ss.Deliver(nil, "/direct/x", "after"); err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 {
		t.Fatalf("a removed listener heard %q", heard[1:])
	}
}
