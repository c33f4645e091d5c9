package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
)

// twoNodes starts two servers joined by a Memory hub.
func twoNodes(t *testing.T) (a, b *testServer) {
	t.Helper()
	n := memoryNodes(t, backbone.NewMemoryHub(), Config{Timeout: 2 * time.Second}, "node-a", "node-b")
	return n[0], n[1]
}

// TestForwardLongPolling drives a session owned by node A entirely through node B.
func TestForwardLongPolling(t *testing.T) {
	a, b := twoNodes(t)
	id := a.handshake(t)
	if out := b.connect(t, id); last(out)["successful"] != true {
		t.Fatalf("first connect through B: %v", out)
	}
	b.subscribe(t, id, "/chat/*")
	if a.Session(id) == nil || b.Session(id) != nil {
		t.Fatal("the session moved: forwarding must leave it on its owner")
	}
	held := b.connectAsync(id)
	a.waitHeld(t, id) // the owner holds the connect B forwarded
	pub := b.connected(t)
	if rep := b.publish(t, pub, "/chat/room", `"hi"`); rep["successful"] != true {
		t.Fatalf("publish: %v", rep)
	}
	out := recv(t, held)
	ev := events(out)
	if len(ev) != 1 || ev[0]["data"] != "hi" || last(out)["channel"] != "/meta/connect" {
		t.Fatalf("held connect through B returned %v", out)
	}
	// A publish from the session through B is processed by the owner.
	if rep := b.publish(t, id, "/chat/other", `"from a's session"`); rep["successful"] != true {
		t.Fatalf("forwarded publish: %v", rep)
	}
}

// TestForwardUnknownOwner answers a clientId of a node that does not exist with
// session_unknown, so that the client handshakes again.
func TestForwardUnknownOwner(t *testing.T) {
	_, b := twoNodes(t)
	out := b.connect(t, "node-gone~abcdefghijklmnop")
	if len(out) != 1 || out[0]["successful"] != false || out[0]["error"] != "402::session_unknown" {
		t.Fatalf("connect for a gone owner: %v", out)
	}
	if adv, _ := out[0]["advice"].(map[string]any); adv["reconnect"] != "handshake" {
		t.Fatalf("advice %v", out[0]["advice"])
	}
}

// TestForwardCallbackPolling checks that a JSONP request is relayed with its
// callback and content type.
func TestForwardCallbackPolling(t *testing.T) {
	a, b := twoNodes(t)
	id := a.handshake(t)
	q := url.Values{
		"jsonp":   {"__jsonp1__"},
		"message": {fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"callback-polling"}]`, id)},
	}
	resp, err := http.Get(b.url + "/connect?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := readAll(resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		!strings.HasPrefix(body, "__jsonp1__([") || !strings.Contains(body, `"successful":true`) {
		t.Fatalf("forwarded JSONP: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestForwardClientGivesUp cancels a forwarded held connect: the owner stops
// holding it, and a message published afterwards waits in the session's queue for
// the next connect instead of being lost.
func TestForwardClientGivesUp(t *testing.T) {
	a, b := twoNodes(t)
	id := a.connected(t)
	a.subscribe(t, id, "/news")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		body := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.url, strings.NewReader(body))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	a.waitHeld(t, id)
	cancel()
	<-done
	waitFor(t, "the owner to release the abandoned connect", func() bool {
		s := a.Session(id)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.held == nil
	})
	pub := a.connected(t)
	a.publish(t, pub, "/news", `"kept"`)
	ev := events(a.connect(t, id))
	if len(ev) != 1 || ev[0]["data"] != "kept" {
		t.Fatalf("after an abandoned forwarded connect, got %v", ev)
	}
}

// TestServeNodeRequestBadInput feeds malformed node requests: each is refused
// with an error and nothing else happens.
func TestServeNodeRequestBadInput(t *testing.T) {
	a, _ := twoNodes(t)
	ctx := context.Background()
	for _, in := range []string{
		"",
		"no newline",
		"{not json}\n[]",
		`{"k":"other"}` + "\n[]",
		`{"k":"poll","t":"websocket"}` + "\n[]",
		`{"k":"poll","t":"callback-polling","cb":"alert(1)"}` + "\n[]",
		`{"k":"poll","t":"long-polling"}` + "\n[{",
	} {
		if out, err := a.serveNodeRequest(ctx, []byte(in)); err == nil {
			t.Errorf("serveNodeRequest(%q) = %q, want an error", in, out)
		}
	}
	// A well-formed request for an unknown session gets the owner's reply.
	out, err := a.serveNodeRequest(ctx, []byte(`{"k":"poll","t":"long-polling"}`+"\n"+`[{"channel":"/meta/connect","clientId":"node-a~zz"}]`))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.IndexByte(string(out), '\n')
	var rep forwardReply
	var msgs []msg
	if i < 0 || json.Unmarshal(out[:i], &rep) != nil || json.Unmarshal(out[i+1:], &msgs) != nil ||
		rep.Status != 200 || len(msgs) != 1 || msgs[0]["error"] != "402::session_unknown" {
		t.Fatalf("reply %q", out)
	}
}

// TestForwardWebsocket runs a session handshaken over HTTP on node A through a
// websocket on node B, as Faye does when its websocket lands on another broker.
func TestForwardWebsocket(t *testing.T) {
	a, b := twoNodes(t)
	id := a.handshake(t)
	ws := b.dialWS(t)
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"1"}]`, id))
	if c := ws.readUntil("/meta/connect"); c["successful"] != true {
		t.Fatalf("first connect over B's websocket: %v", c)
	}
	ws.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/ws/*","id":"2"}]`, id))
	if r := ws.readUntil("/meta/subscribe"); r["successful"] != true {
		t.Fatalf("subscribe over B's websocket: %v", r)
	}
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"3"}]`, id))
	a.waitHeld(t, id)
	pub := a.connected(t)
	a.publish(t, pub, "/ws/x", `"pushed"`)
	for {
		out := ws.read()
		if ev := events(out); len(ev) == 1 {
			if ev[0]["data"] != "pushed" || ev[0]["channel"] != "/ws/x" {
				t.Fatalf("event %v", ev)
			}
			return
		}
	}
}

// TestForwardWebsocketUnknownOwner answers a websocket batch for a node that
// does not exist with session_unknown, and keeps the connection open.
func TestForwardWebsocketUnknownOwner(t *testing.T) {
	_, b := twoNodes(t)
	ws := b.dialWS(t)
	ws.send(`[{"channel":"/meta/connect","clientId":"node-gone~abcdef","connectionType":"websocket"}]`)
	if c := ws.readUntil("/meta/connect"); c["error"] != "402::session_unknown" {
		t.Fatalf("connect for a gone owner: %v", c)
	}
	id := ws.handshake() // the same connection still works
	if OwnerOf(id) != "node-b" {
		t.Fatalf("handshake on B gave %s", id)
	}
}

// TestForwardWebsocketConnectFlood floods a forwarded websocket with
// /meta/connect frames: at most maxForwardedConnects forwarded connects are
// in flight per connection, and every connect gets exactly one reply (a superseded one is
// answered empty, as the owner answers a replaced connect).
func TestForwardWebsocketConnectFlood(t *testing.T) {
	a, b := twoNodes(t)
	id := a.handshake(t)
	ws := b.dialWS(t)
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"first"}]`, id))
	if c := ws.readUntil("/meta/connect"); c["successful"] != true {
		t.Fatalf("first connect over B's websocket: %v", c)
	}
	const flood = 200
	for i := range flood {
		ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","id":"c%d"}]`, id, i))
	}
	replies := map[string]int{}
	for len(replies) < flood { // the last connect is held for A's 2 s timeout
		for _, m := range ws.read() {
			if m["channel"] != "/meta/connect" {
				t.Fatalf("unexpected message %v", m)
			}
			if m["successful"] != true {
				t.Fatalf("connect answered %v", m)
			}
			rid, _ := m["id"].(string)
			if replies[rid]++; replies[rid] > 1 {
				t.Fatalf("connect %s answered twice", rid)
			}
		}
	}
	bb := b.cfg.Backbone.(*countingBackbone)
	if _, peak := bb.requests(); peak > maxForwardedConnects {
		t.Errorf("%d forwarded connects were in flight at once from one websocket; want at most %d", peak, maxForwardedConnects)
	}
	waitFor(t, "forwarded connects to end", func() bool { n, _ := bb.requests(); return n == 0 })
}
