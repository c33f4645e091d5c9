package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

func TestHandshake(t *testing.T) {
	ts := newTestServer(t, Config{NodeID: "node-a", Transports: []string{"long-polling", "websocket"}})
	tests := []struct {
		name      string
		body      string
		ok        bool
		errPrefix string
		reconnect string
	}{
		{"plain", `{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"h1"}`, true, "", "retry"},
		{"no version fields", `[{"channel":"/meta/handshake"}]`, true, "", "retry"},
		{"minimum version too high", `[{"channel":"/meta/handshake","version":"2.0","minimumVersion":"2.0","supportedConnectionTypes":["long-polling"]}]`, false, "400::version", "none"},
		{"no common connection type", `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["callback-polling","flash"]}]`, false, "406::", "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := ts.must(t, tc.body)
			if len(out) != 1 {
				t.Fatalf("replies: %v", out)
			}
			r := out[0]
			if (r["successful"] == true) != tc.ok {
				t.Fatalf("successful=%v: %v", r["successful"], r)
			}
			if adv, _ := r["advice"].(msg); adv["reconnect"] != tc.reconnect {
				t.Fatalf("advice %v", r["advice"])
			}
			if !tc.ok {
				if !strings.HasPrefix(r["error"].(string), tc.errPrefix) {
					t.Fatalf("error %q", r["error"])
				}
				return
			}
			id := r["clientId"].(string)
			if OwnerOf(id) != "node-a" || len(id) < len("node-a~")+26 {
				t.Fatalf("clientId %q does not name its owner or is too short", id)
			}
			if r["version"] != "1.0" || r["minimumVersion"] != "1.0" {
				t.Fatalf("versions: %v", r)
			}
			// The enabled types the client listed, or all enabled ones.
			want := "[long-polling websocket]"
			if strings.Contains(tc.body, "supportedConnectionTypes") {
				want = "[long-polling]"
			}
			if types := fmt.Sprint(r["supportedConnectionTypes"]); types != want {
				t.Fatalf("supportedConnectionTypes %s", types)
			}
			if strings.Contains(tc.body, `"id":"h1"`) && r["id"] != "h1" {
				t.Fatalf("id not echoed: %v", r)
			}
			adv := r["advice"].(msg)
			if adv["timeout"] != 30000.0 || adv["interval"] != 0.0 || adv["maxInterval"] != 10000.0 {
				t.Fatalf("default advice: %v", adv)
			}
		})
	}
	if ts.Stats().Sessions != 2 {
		t.Fatalf("sessions = %d, want 2", ts.Stats().Sessions)
	}
}

func TestHandshakeSetsBrowserCookie(t *testing.T) {
	ts := newTestServer(t, Config{})
	resp, err := http.Post(ts.url, "application/json", strings.NewReader(`[{"channel":"/meta/handshake"}]`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	found := false
	for _, c := range resp.Cookies() {
		found = found || (c.Name == BrowserCookie && c.Value != "")
	}
	if !found {
		t.Fatal("no BAYEUX_BROWSER cookie on handshake")
	}
}

func TestConnectHeldUntilMessage(t *testing.T) {
	ts := newTestServer(t, Config{})
	a, b := ts.connected(t), ts.connected(t)
	ts.subscribe(t, a, "/chat/room")
	ch := ts.connectAsync(a)
	ts.waitHeld(t, a)
	if r := ts.publish(t, b, "/chat/room", `{"text":"hi"}`); r["successful"] != true || r["id"] != "p1" {
		t.Fatalf("publish ack: %v", r)
	}
	out := recv(t, ch)
	ev := events(out)
	if len(ev) != 1 || ev[0]["channel"] != "/chat/room" || ev[0]["data"].(msg)["text"] != "hi" {
		t.Fatalf("delivered: %v", out)
	}
	if _, leaked := ev[0]["clientId"]; leaked {
		t.Fatalf("publisher clientId leaked to subscriber: %v", ev[0])
	}
	if c := last(out); c["channel"] != "/meta/connect" || c["successful"] != true {
		t.Fatalf("connect reply not last: %v", out)
	}
}

func TestConnectTimeout(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 300 * time.Millisecond, Interval: 50 * time.Millisecond})
	id := ts.connected(t)
	start := time.Now()
	out := ts.connect(t, id)
	if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("connect returned after %v, before the timeout", time.Since(start))
	}
	adv := last(out)["advice"].(msg)
	if adv["reconnect"] != "retry" || adv["timeout"] != 300.0 || adv["interval"] != 50.0 {
		t.Fatalf("advice %v", adv)
	}
	// A client-requested shorter timeout is honoured.
	start = time.Now()
	ts.must(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","advice":{"timeout":0}}]`, id))
	if time.Since(start) > 250*time.Millisecond {
		t.Fatalf("advice.timeout=0 connect held %v", time.Since(start))
	}
}

func TestSubscribeArrayWildcardsDeliverOnce(t *testing.T) {
	ts := newTestServer(t, Config{})
	a, b := ts.connected(t), ts.connected(t)
	ts.subscribe(t, a, "/chat/*", "/chat/**", "/chat/room")
	if n := len(ts.Session(a).Subscriptions()); n != 3 {
		t.Fatalf("subscriptions = %d", n)
	}
	ts.publish(t, b, "/chat/room", `1`)
	ts.publish(t, b, "/chat/deep/x", `2`)
	ts.publish(t, b, "/other", `3`)
	out := ts.connect(t, a)
	ev := events(out)
	if len(ev) != 2 || ev[0]["data"] != 1.0 || ev[1]["data"] != 2.0 {
		t.Fatalf("want data 1 then 2 exactly once, got %v", out)
	}
}

func TestUnsubscribe(t *testing.T) {
	ts := newTestServer(t, Config{})
	a, b := ts.connected(t), ts.connected(t)
	ts.subscribe(t, a, "/x", "/y")
	out := ts.must(t, fmt.Sprintf(`[{"channel":"/meta/unsubscribe","clientId":%q,"subscription":"/x","id":"u1"}]`, a))
	if out[0]["successful"] != true || out[0]["subscription"] != "/x" || out[0]["id"] != "u1" {
		t.Fatalf("unsubscribe reply %v", out)
	}
	ts.publish(t, b, "/x", `"gone"`)
	ts.publish(t, b, "/y", `"kept"`)
	ev := events(ts.connect(t, a))
	if len(ev) != 1 || ev[0]["data"] != "kept" {
		t.Fatalf("after unsubscribe: %v", ev)
	}
	if ts.Channel("/x") != nil {
		t.Fatal("channel /x kept with no subscribers")
	}
}

func TestDisconnectAnswersPendingConnect(t *testing.T) {
	ts := newTestServer(t, Config{})
	id := ts.connected(t)
	ch := ts.connectAsync(id)
	ts.waitHeld(t, id)
	out := ts.must(t, fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q,"id":"d"}]`, id))
	if out[0]["successful"] != true || out[0]["id"] != "d" {
		t.Fatalf("disconnect reply %v", out)
	}
	c := last(recv(t, ch))
	if c["channel"] != "/meta/connect" || c["advice"].(msg)["reconnect"] != "none" {
		t.Fatalf("pending connect answer %v", c)
	}
	if ts.Session(id) != nil || ts.Stats().Sessions != 0 {
		t.Fatal("session survived disconnect")
	}
}

func TestSessionExpiry(t *testing.T) {
	ts := newTestServer(t, Config{MaxInterval: 100 * time.Millisecond})
	id := ts.connected(t)
	removed := make(chan error, 1)
	ts.Session(id).AddRemovedListener(func(_ *ServerSession, reason error) { removed <- reason })
	select {
	case r := <-removed:
		if r != ErrExpired {
			t.Fatalf("reason %v", r)
		}
	case <-time.After(testWait):
		t.Fatal("session never expired")
	}
	c := ts.connect(t, id)[0]
	adv := c["advice"].(msg)
	if c["error"] != "402::session_unknown" || adv["reconnect"] != "handshake" || adv["interval"] != 0.0 {
		t.Fatalf("expired session connect: %v", c)
	}
}

func TestBadInput(t *testing.T) {
	ts := newTestServer(t, Config{MaxMessageSize: 1024})
	id := ts.connected(t)
	baseline := ts.Stats()
	tests := []struct {
		name   string
		body   string
		status int
		errStr string // expected reply error for 200 responses
	}{
		{"handshake, unsupported connection types", `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["flash"]}]`, 200, "406::connection_type_unsupported"},
		{"handshake, unsupported version", `[{"channel":"/meta/handshake","version":"1.0","minimumVersion":"2.0","supportedConnectionTypes":["long-polling"]}]`, 200, "400::version_unsupported"},
		{"subscribe, one valid channel and one invalid", fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":["/fine","/a//b"]}]`, id), 200, "405::channel_invalid"},
		{"malformed JSON", `[{"channel":"/meta/handshake"`, 400, ""},
		{"not JSON at all", `hello`, 400, ""},
		{"wrong field type", `[{"channel":"/meta/subscribe","clientId":"x","subscription":42}]`, 400, ""},
		{"wrong type for channel", `[{"channel":["/a"]}]`, 400, ""},
		{"oversized body", `[{"channel":"/a","data":"` + strings.Repeat("x", 2000) + `"}]`, 413, ""},
		{"channel missing", fmt.Sprintf(`[{"clientId":%q,"data":1}]`, id), 200, "400::channel_missing"},
		{"channel invalid", fmt.Sprintf(`[{"channel":"/a//b","clientId":%q,"data":1}]`, id), 200, "405::channel_invalid"},
		{"publish to wildcard", fmt.Sprintf(`[{"channel":"/a/*","clientId":%q,"data":1}]`, id), 200, "405::channel_invalid"},
		{"subscribe invalid", fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/a/*/b"}]`, id), 200, "405::channel_invalid"},
		{"publish to meta", fmt.Sprintf(`[{"channel":"/meta/foo","clientId":%q,"data":1}]`, id), 200, "403::publish_meta_denied"},
		{"publish to meta handshake-like", fmt.Sprintf(`[{"channel":"/meta/subscribe/x","clientId":%q,"data":1}]`, id), 200, "403::publish_meta_denied"},
		{"unknown meta channel", fmt.Sprintf(`[{"channel":"/meta/foo","clientId":%q}]`, id), 200, "400::message_unknown"},
		{"subscribe to meta", fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/meta/connect"}]`, id), 200, "403::subscribe_denied"},
		{"unknown clientId publish", `[{"channel":"/a","clientId":"nope","data":1}]`, 200, "402::session_unknown"},
		{"unknown clientId connect", `[{"channel":"/meta/connect","clientId":"nope","connectionType":"long-polling"}]`, 200, "402::session_unknown"},
		{"publish without data", fmt.Sprintf(`[{"channel":"/a","clientId":%q}]`, id), 200, "400::data_missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := ts.post(t, tc.body)
			if code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if len(out) != 1 || out[0]["successful"] != false || out[0]["error"] != tc.errStr {
				t.Fatalf("reply %v, want error %s", out, tc.errStr)
			}
			if tc.errStr == "402::session_unknown" {
				adv := out[0]["advice"].(msg)
				if adv["reconnect"] != "handshake" || adv["interval"] != 0.0 {
					t.Fatalf("402 advice %v", adv)
				}
			}
		})
	}
	// Nothing leaked: no session, channel or subscription is left over.
	if st := ts.Stats(); st.Sessions != baseline.Sessions || st.Channels != baseline.Channels ||
		st.Subscriptions != baseline.Subscriptions {
		t.Fatalf("after bad input: %d sessions, %d channels, %d subscriptions; before: %d, %d, %d",
			st.Sessions, st.Channels, st.Subscriptions, baseline.Sessions, baseline.Channels, baseline.Subscriptions)
	}
	// Nothing was lost or broken: the session still works.
	ts.subscribe(t, id, "/still/works")
	if ts.Session(id) == nil {
		t.Fatal("bad input ended a good session")
	}
}

func TestSecondConcurrentConnect(t *testing.T) {
	ts := newTestServer(t, Config{})
	id := ts.connected(t)
	first := ts.connectAsync(id)
	ts.waitHeld(t, id)
	hc := func() *heldConnect { s := ts.Session(id); s.mu.Lock(); defer s.mu.Unlock(); return s.held }
	old := hc()
	second := ts.connectAsync(id)
	// The first connect is answered at once: one outstanding connect per session.
	out := recv(t, first)
	if last(out)["channel"] != "/meta/connect" {
		t.Fatalf("first connect answer %v", out)
	}
	waitFor(t, "the second connect to be held", func() bool { h := hc(); return h != nil && h != old })
	// Two connects in one batch: the second is refused.
	dup := ts.must(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"advice":{"timeout":0}},{"channel":"/meta/connect","clientId":%q}]`, id, id))
	if len(dup) != 2 || dup[0]["error"] != bayeux.ErrDuplicateConnect || dup[1]["successful"] != true {
		t.Fatalf("duplicate connect in batch: %v", dup)
	}
	recv(t, second) // released by the batch's connect
}

func TestServiceChannels(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 200 * time.Millisecond})
	a, b := ts.connected(t), ts.connected(t)
	ts.subscribe(t, a, "/service/echo")
	heard := make(chan string, 1)
	svc, _ := ts.CreateChannel("/service/echo")
	svc.AddListener(func(from *ServerSession, _ *ServerChannel, m *ServerMessage) bool {
		heard <- string(m.Data())
		// Answer the sender privately.
		_ = from.Deliver(nil, "/service/echo", "pong")
		return true
	})
	if r := ts.publish(t, b, "/service/echo", `"ping"`); r["successful"] != true {
		t.Fatalf("service publish %v", r)
	}
	select {
	case got := <-heard:
		if got != `"ping"` {
			t.Fatalf("listener heard %s", got)
		}
	case <-time.After(testWait):
		t.Fatal("the service listener heard nothing")
	}
	if ev := events(ts.connect(t, a)); len(ev) != 0 {
		t.Fatalf("service message reached another client: %v", ev)
	}
	if ev := events(ts.connect(t, b)); len(ev) != 1 || ev[0]["data"] != "pong" {
		t.Fatalf("private reply: %v", ev)
	}
}

func TestCallbackPolling(t *testing.T) {
	ts := newTestServer(t, Config{})
	get := func(cb, message string) (int, string, string) {
		resp, err := http.Get(ts.url + "/handshake?jsonp=" + cb + "&message=" + message)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		_, _ = fmt.Fprint(b, readAll(resp))
		return resp.StatusCode, resp.Header.Get("Content-Type"), b.String()
	}
	code, ct, body := get("_cometd_jsonp_0", `%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%2C%22id%22%3A%227%22%7D%5D`)
	if code != 200 || !strings.HasPrefix(ct, "text/javascript") {
		t.Fatalf("status %d content-type %q", code, ct)
	}
	if !strings.HasPrefix(body, "_cometd_jsonp_0([") || !strings.HasSuffix(body, "]);") {
		t.Fatalf("body %s", body)
	}
	var out []msg
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(body, "_cometd_jsonp_0("), ");")), &out); err != nil ||
		out[0]["successful"] != true || out[0]["id"] != "7" {
		t.Fatalf("reply %s: %v", body, err)
	}
	if code, _, _ := get("alert(1)//", `%5B%5D`); code != 400 {
		t.Fatalf("hostile callback accepted: %d", code)
	}
	if code, _, _ := get("cb", `%5B`); code != 400 {
		t.Fatalf("malformed JSONP message: %d", code)
	}
}

func TestCORS(t *testing.T) {
	ts := newTestServer(t, Config{AllowedOrigins: []string{"https://app.example"}})
	do := func(method, origin string) *http.Response {
		req, _ := http.NewRequest(method, ts.url, strings.NewReader(`[{"channel":"/meta/handshake"}]`))
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	pre := do(http.MethodOptions, "https://app.example")
	if pre.StatusCode != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		pre.Header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	if r := do(http.MethodPost, "https://app.example"); r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("allowed origin POST headers %v", r.Header)
	}
	if r := do(http.MethodPost, "https://evil.example"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed origin got CORS headers %v", r.Header)
	}
}

func TestMultipleClientsAdvice(t *testing.T) {
	ts := newTestServer(t, Config{})
	a, b := ts.connected(t), ts.connected(t)
	body := func(id string) string {
		return fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id)
	}
	post := func(id string) <-chan result {
		ch := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(body(id)))
			req.AddCookie(&http.Cookie{Name: BrowserCookie, Value: "browser-1"})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer resp.Body.Close()
			var out []msg
			err = json.NewDecoder(resp.Body).Decode(&out)
			ch <- result{out: out, code: resp.StatusCode, err: err}
		}()
		return ch
	}
	held := post(a)
	ts.waitHeld(t, a)
	out := recv(t, post(b))
	adv := last(out)["advice"].(msg)
	if adv["multiple-clients"] != true || adv["interval"] != 2000.0 {
		t.Fatalf("second session of a browser: %v", out)
	}
	ts.Session(a).Disconnect()
	recv(t, held)
}

func TestSlowConsumerDisconnected(t *testing.T) {
	ts := newTestServer(t, Config{MaxQueueBytes: 2048})
	a := ts.connected(t)
	ts.subscribe(t, a, "/flood")
	reason := make(chan error, 1)
	ts.Session(a).AddRemovedListener(func(_ *ServerSession, r error) { reason <- r })
	for i := 0; i < 100 && ts.Session(a) != nil; i++ {
		if err := ts.Publish("/flood", strings.Repeat("x", 100)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-reason:
		var dr *DisconnectReason
		if r != ErrSlowConsumer || !asReason(r, &dr) || dr.Code != "slow_consumer" {
			t.Fatalf("reason %v", r)
		}
	case <-time.After(testWait):
		t.Fatal("slow consumer kept")
	}
	if st := ts.Stats(); st.SlowConsumers != 1 || st.QueueDrops == 0 {
		t.Fatalf("stats %+v", st)
	}
	if c := ts.connect(t, a)[0]; c["error"] != "402::session_unknown" {
		t.Fatalf("slow consumer connect %v", c)
	}
}

func asReason(err error, out **DisconnectReason) bool {
	r, ok := err.(*DisconnectReason)
	*out = r
	return ok
}

func TestMethodNotAllowed(t *testing.T) {
	ts := newTestServer(t, Config{})
	resp, err := http.Get(ts.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET without jsonp: %d", resp.StatusCode)
	}
}

func TestDrainAnswersHeldConnectsAndRefusesHandshakes(t *testing.T) {
	ts := newTestServer(t, Config{})
	lp := ts.connected(t)
	held := ts.connectAsync(lp)
	ts.waitHeld(t, lp)
	ws := ts.dialWS(t)
	wsID := ws.handshake()
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, wsID))
	ts.waitHeld(t, wsID)
	ts.Drain()
	if c := last(recv(t, held)); c["successful"] != true || c["advice"].(msg)["reconnect"] != "retry" || c["advice"].(msg)["interval"] != 1000.0 {
		t.Fatalf("long-poll connect at drain: %v", c)
	}
	if c := ws.readUntil("/meta/connect"); c["successful"] != true || c["advice"].(msg)["reconnect"] != "retry" {
		t.Fatalf("websocket connect at drain: %v", c)
	}
	r := ts.must(t, `[{"channel":"/meta/handshake"}]`)[0]
	if r["successful"] != false || r["error"] != bayeux.ErrServerDraining {
		t.Fatalf("handshake while draining: %v", r)
	}
	// Connects during the drain are answered at once.
	start := time.Now()
	ts.connect(t, lp)
	if time.Since(start) > 5*time.Second {
		t.Fatal("connect held while draining")
	}
}

func TestWebsocketSessionExpiresAfterConnectionLoss(t *testing.T) {
	ts := newTestServer(t, Config{MaxInterval: 100 * time.Millisecond})
	ws := ts.dialWS(t)
	id := ws.handshake()
	ws.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id))
	ts.waitHeld(t, id)
	ws.c.Close()
	waitFor(t, "the session to expire", func() bool { return ts.Session(id) == nil })
	if ts.Stats().Sessions != 0 {
		t.Fatal("session count not updated")
	}
}

func TestChunkedBody(t *testing.T) {
	ts := newTestServer(t, Config{})
	// The CometD client sends chunked request bodies: write one by hand.
	c, err := net.Dial("tcp", ts.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	part1, part2 := `[{"channel":"/meta/handshake",`, `"id":"c"}]`
	fmt.Fprintf(c, "POST /cometd/handshake HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n",
		len(part1), part1, len(part2), part2)
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []msg
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out) != 1 || out[0]["successful"] != true || out[0]["id"] != "c" {
		t.Fatalf("chunked handshake: %d %v %v", resp.StatusCode, out, err)
	}
}

// TestMaxQueueMessages fills a session's queue past MaxQueue messages (bytes
// are not the limit here): the message over the cap ends the session as a
// slow consumer and counts the messages dropped.
func TestMaxQueueMessages(t *testing.T) {
	const maxQueue = 3
	ts := newTestServer(t, Config{MaxQueue: maxQueue, MaxQueueBytes: -1})
	a := ts.connected(t)
	ss := ts.Session(a)
	reason := make(chan error, 1)
	ss.AddRemovedListener(func(_ *ServerSession, r error) { reason <- r })
	for i := range maxQueue {
		if err := ss.Deliver(nil, "/q", i); err != nil {
			t.Fatalf("message %d of %d refused: %v", i, maxQueue, err)
		}
	}
	if n := ss.QueueLen(); n != maxQueue {
		t.Fatalf("%d queued, want %d", n, maxQueue)
	}
	if err := ss.Deliver(nil, "/q", maxQueue); err != ErrSessionClosed {
		t.Fatalf("message over MaxQueue: %v, want ErrSessionClosed", err)
	}
	select {
	case r := <-reason:
		if r != ErrSlowConsumer {
			t.Fatalf("reason %v, want ErrSlowConsumer", r)
		}
	case <-time.After(testWait):
		t.Fatal("session over MaxQueue kept")
	}
	if st := ts.Stats(); st.SlowConsumers != 1 || st.QueueDrops != maxQueue+1 || st.Sessions != 0 {
		t.Fatalf("stats %+v, want 1 slow consumer, %d drops, no session", st, maxQueue+1)
	}
	if c := ts.connect(t, a)[0]; c["error"] != "402::session_unknown" || c["advice"].(msg)["reconnect"] != "handshake" {
		t.Fatalf("connect after the overflow: %v", c)
	}
}
