package server

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestWebsocketFlow(t *testing.T) {
	ts := newTestServer(t, Config{})
	a, b := ts.dialWS(t), ts.dialWS(t)
	ida, idb := a.handshake(), b.handshake()
	a.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":["/chat/*","/chat/**"],"id":"s"},{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, ida, ida))
	if r := a.readUntil("/meta/subscribe"); r["successful"] != true || r["id"] != "s" {
		t.Fatalf("subscribe %v", r)
	}
	b.send(fmt.Sprintf(`{"channel":"/chat/room","clientId":%q,"data":{"n":1},"id":"p"}`, idb))
	if r := b.readUntil("/chat/room"); r["successful"] != true || r["id"] != "p" {
		t.Fatalf("publish ack %v", r)
	}
	// Delivered once (two matching subscriptions), while the connect stays held.
	ev := a.readUntil("/chat/room")
	if ev["data"].(msg)["n"] != 1.0 {
		t.Fatalf("event %v", ev)
	}
	b.send(fmt.Sprintf(`{"channel":"/chat/room","clientId":%q,"data":{"n":2}}`, idb))
	if ev := a.readUntil("/chat/room"); ev["data"].(msg)["n"] != 2.0 {
		t.Fatalf("second event %v (a duplicate of the first?)", ev)
	}
	// Disconnect answers the held connect.
	a.send(fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, ida))
	sawDisc, sawConn := false, false
	var seen []msg
	for !sawDisc || !sawConn {
		_ = a.c.SetReadDeadline(time.Now().Add(testWait))
		var frame []msg
		if err := a.c.ReadJSON(&frame); err != nil {
			t.Fatalf("after disconnect, read %v then: %v", seen, err)
		}
		seen = append(seen, frame...)
		for _, m := range frame {
			switch m["channel"] {
			case "/meta/disconnect":
				sawDisc = m["successful"] == true
			case "/meta/connect":
				sawConn = m["advice"].(msg)["reconnect"] == "none"
			}
		}
	}
	if ts.Session(ida) != nil {
		t.Fatal("session survived ws disconnect")
	}
}

func TestWebsocketConnectTimeoutKeepsSessionAlive(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 100 * time.Millisecond, MaxInterval: 100 * time.Millisecond})
	a := ts.dialWS(t)
	id := a.handshake()
	for i := range 3 {
		a.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id))
		start := time.Now()
		c := a.readUntil("/meta/connect")
		if c["successful"] != true || time.Since(start) < 50*time.Millisecond {
			t.Fatalf("connect %d: %v after %v", i, c, time.Since(start))
		}
	}
	if ts.Session(id) == nil {
		t.Fatal("session expired although its websocket connected regularly")
	}
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

func TestWebsocketBadInput(t *testing.T) {
	ts := newTestServer(t, Config{MaxMessageSize: 1024})
	tests := []struct {
		name string
		body string
		code int
	}{
		{"oversized frame", `[{"channel":"/a","data":"` + strings.Repeat("x", 1100) + `"}]`, websocket.CloseMessageTooBig},
		{"malformed JSON", `[{"channel":`, websocket.CloseInvalidFramePayloadData},
		{"wrong field type", `[{"channel":"/meta/handshake","supportedConnectionTypes":"websocket"}]`, websocket.CloseInvalidFramePayloadData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dialWS(t)
			c.send(tc.body)
			_ = c.c.SetReadDeadline(time.Now().Add(testWait))
			_, _, err := c.c.ReadMessage()
			if got := closeCode(err); got != tc.code {
				t.Fatalf("close code %d (%v), want %d", got, err, tc.code)
			}
		})
	}
	// Replies with errors keep the connection.
	c := ts.dialWS(t)
	id := c.handshake()
	c.send(fmt.Sprintf(`[{"channel":"/a//b","clientId":%q,"data":1},{"clientId":%q,"data":1},{"channel":"/x","clientId":"nobody","data":1}]`, id, id))
	out := c.read()
	if len(out) != 3 || out[0]["error"] != "405::channel_invalid" || out[1]["error"] != "400::channel_missing" || out[2]["error"] != "402::session_unknown" {
		t.Fatalf("error replies %v", out)
	}
	waitFor(t, "ws connections to be released", func() bool {
		return len(ts.websockets()) == 1
	})
	// Nothing leaked: the one session left is the good connection's, with no
	// channel or subscription.
	if st := ts.Stats(); st.Sessions != 1 || st.Channels != 0 || st.Subscriptions != 0 {
		t.Fatalf("after bad frames: %+v, want 1 session, no channel, no subscription", st)
	}
}

// TestWebsocketBadFrameAfterHandshake closes a connection on a bad frame that
// follows a handshake and a subscription: the session, its subscription and
// its channel go when the session expires, and the connection is released.
func TestWebsocketBadFrameAfterHandshake(t *testing.T) {
	ts := newTestServer(t, Config{MaxInterval: 200 * time.Millisecond})
	c := ts.dialWS(t)
	id := c.handshake()
	c.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/bad/after"}]`, id))
	if r := c.readUntil("/meta/subscribe"); r["successful"] != true {
		t.Fatalf("subscribe: %v", r)
	}
	c.send(`[{"channel":`)
	_ = c.c.SetReadDeadline(time.Now().Add(testWait))
	if _, _, err := c.c.ReadMessage(); closeCode(err) != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("bad frame: %v", err)
	}
	waitFor(t, "the session, channel and connection to go", func() bool {
		conns := len(ts.websockets())
		st := ts.Stats()
		return conns == 0 && st.Sessions == 0 && st.Channels == 0 && st.Subscriptions == 0
	})
}

// TestWebsocketEncodeOnce proves a publish to N websocket subscribers is encoded
// once and the same bytes reach every subscriber.
func TestWebsocketEncodeOnce(t *testing.T) {
	ts := newTestServer(t, Config{})
	const n = 20
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = ts.dialWS(t)
		id := clients[i].handshake()
		clients[i].send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/news"}]`, id))
		clients[i].readUntil("/meta/subscribe")
	}
	before := broadcastEncodes.Load()
	if err := ts.Publish("/news", map[string]string{"headline": "once"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if ev := c.readUntil("/news"); ev["data"].(msg)["headline"] != "once" {
			t.Fatalf("event %v", ev)
		}
	}
	if got := broadcastEncodes.Load() - before; got != 1 {
		t.Fatalf("message encoded %d times for %d subscribers, want 1", got, n)
	}
}

func TestWebsocketSessionWithoutConnectsExpires(t *testing.T) {
	ts := newTestServer(t, Config{MaxInterval: 100 * time.Millisecond})
	ws := ts.dialWS(t)
	id := ws.handshake() // handshake and one immediate connect, then silence
	waitFor(t, "the silent session to expire", func() bool { return ts.Session(id) == nil })
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id))
	if c := ws.readUntil("/meta/connect"); c["error"] != "402::session_unknown" {
		t.Fatalf("connect after expiry: %v", c)
	}
}

// TestWebsocketWriteFailureRequeues breaks a websocket's write side under a
// session with messages on their way: the messages the writer took but could
// not write go back to the session's queue, so the same clientId, connecting
// over long-polling, gets each of them once and in order.
func TestWebsocketWriteFailureRequeues(t *testing.T) {
	for _, perFrame := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d per frame", perFrame), func(t *testing.T) {
			ts := newTestServer(t, Config{Timeout: 2 * time.Second, WSMessagesPerFrame: perFrame})
			ws := ts.dialWS(t)
			id := ws.handshake()
			ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"held"}]`, id))
			ts.waitHeld(t, id)
			conns := ts.websockets()
			if len(conns) != 1 {
				t.Fatalf("%d websockets", len(conns))
			}
			// The server can still read, but every write fails.
			if err := conns[0].bc.Conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			ss := ts.Session(id)
			const n = 7
			for i := range n {
				if err := ss.Deliver(nil, "/requeued", i); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the broken websocket to close", func() bool {
				return len(ts.websockets()) == 0
			})
			if got := ss.QueueLen(); got != n {
				t.Fatalf("%d messages queued after the failed write, want %d", got, n)
			}
			var got []float64
			for len(got) < n {
				ev := events(ts.connect(t, id))
				if len(ev) == 0 {
					t.Fatalf("a long-poll connect got nothing after %v", got)
				}
				for _, m := range ev {
					got = append(got, m["data"].(float64))
				}
			}
			for i, v := range got {
				if v != float64(i) {
					t.Fatalf("messages %v, want 0..%d once each, in order", got, n-1)
				}
			}
			if ss.QueueLen() != 0 {
				t.Fatalf("%d messages left queued", ss.QueueLen())
			}
		})
	}
}

// TestWebsocketMessagesPerFrame checks frame grouping with WSMessagesPerFrame
// 3: seven messages queued before the first connect over a websocket go out
// in frames of 3, 3 and 1, and the connect reply rides in the last frame.
func TestWebsocketMessagesPerFrame(t *testing.T) {
	ts := newTestServer(t, Config{WSMessagesPerFrame: 3})
	id := ts.handshake(t) // over HTTP: no websocket takes the queue yet
	ss := ts.Session(id)
	const n = 7
	for i := range n {
		if err := ss.Deliver(nil, "/grouped", i); err != nil {
			t.Fatal(err)
		}
	}
	ws := ts.dialWS(t)
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"c1"}]`, id))
	var frames [][]msg
	next := 0
	for len(frames) == 0 || last(frames[len(frames)-1])["channel"] != "/meta/connect" {
		f := ws.read()
		for _, m := range events(f) {
			if m["channel"] != "/grouped" || m["data"] != float64(next) {
				t.Fatalf("frame %d holds %v, want message %d", len(frames), m, next)
			}
			next++
		}
		frames = append(frames, f)
	}
	if next != n {
		t.Fatalf("got %d messages, want %d", next, n)
	}
	want := []int{3, 3, 2} // the last frame: message 6 and the connect reply
	if len(frames) != len(want) {
		t.Fatalf("%d frames, want %d: %v", len(frames), len(want), frames)
	}
	for i, f := range frames {
		if len(f) != want[i] {
			t.Errorf("frame %d holds %d messages, want %d: %v", i, len(f), want[i], f)
		}
	}
	if r := last(frames[2]); r["successful"] != true || r["id"] != "c1" {
		t.Errorf("connect reply %v", r)
	}
}

// TestWebsocketFrameLengths: frames the writer builds itself (see
// batchConn.appendFrame) carry each length encoding of RFC 6455 (7-bit,
// 16-bit, 64-bit) and read back whole with a websocket library.
func TestWebsocketFrameLengths(t *testing.T) {
	ts := newTestServer(t, Config{MaxMessageSize: 1 << 20})
	a, b := ts.dialWS(t), ts.dialWS(t)
	ida, idb := a.handshake(), b.handshake()
	a.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/f"},{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, ida, ida))
	a.readUntil("/meta/subscribe")
	for _, n := range []int{1, 60, 200, 65000, 70000} {
		b.send(fmt.Sprintf(`{"channel":"/f","clientId":%q,"data":%q}`, idb, strings.Repeat("x", n)))
		if ev := a.readUntil("/f"); len(ev["data"].(string)) != n {
			t.Fatalf("payload of %d bytes came back as %d", n, len(ev["data"].(string)))
		}
	}
}

// TestWebsocketPongsBetweenMessages: pongs (unsolicited ones are allowed as
// heartbeats), which the reader consumes itself while it waits (see
// wsConn.awaitFrame), leave the messages around them intact, whether they
// arrive alone or in one segment with a message.
func TestWebsocketPongsBetweenMessages(t *testing.T) {
	ts := newTestServer(t, Config{})
	a := ts.dialWS(t)
	id := a.handshake()
	deadline := time.Now().Add(testWait)
	for i, payload := range []string{"", "x", strings.Repeat("p", 125)} {
		if err := a.c.WriteControl(websocket.PongMessage, []byte(payload), deadline); err != nil {
			t.Fatal(err)
		}
		a.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/p/%d","id":"s%d"}]`, id, i, i))
		if r := a.readUntil("/meta/subscribe"); r["successful"] != true || r["id"] != fmt.Sprintf("s%d", i) {
			t.Fatalf("subscribe after pong %d: %v", i, r)
		}
	}
}
