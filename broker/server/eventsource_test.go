package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fayeTypes is the supportedConnectionTypes Faye's browser client sends.
const fayeTypes = `["websocket","eventsource","long-polling","cross-origin-long-polling","callback-polling"]`

// fayeCORS posts body as Faye's cross-origin-long-polling transport does: a
// text/plain body "message=<urlencoded JSON>" with credentials, from origin.
func (ts *testServer) fayeCORS(t *testing.T, origin, body string) (*http.Response, []msg) {
	t.Helper()
	return ts.send(t, ts.url, "message="+url.QueryEscape(body), map[string]string{
		"Content-Type": "text/plain;charset=UTF-8", "Origin": origin, "Pragma": "no-cache"})
}

func TestCrossOriginLongPolling(t *testing.T) {
	const origin = "http://page.example:8000"
	ts := newTestServer(t, Config{AllowedOrigins: []string{origin}, Timeout: 5 * time.Second})

	// The preflight Faye's Pragma header earns.
	req, _ := http.NewRequest(http.MethodOptions, ts.url, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "pragma")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != origin ||
		pre.Header.Get("Access-Control-Allow-Credentials") != "true" || pre.Header.Get("Access-Control-Allow-Headers") != "pragma" {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}

	resp, out := ts.fayeCORS(t, origin, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":`+fayeTypes+`}]`)
	if resp.Header.Get("Access-Control-Allow-Origin") != origin || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("handshake CORS headers: %v", resp.Header)
	}
	if len(out) != 1 || out[0]["successful"] != true {
		t.Fatalf("handshake: %v", out)
	}
	if got := fmt.Sprint(out[0]["supportedConnectionTypes"]); got != "[websocket long-polling callback-polling cross-origin-long-polling eventsource]" {
		t.Fatalf("supportedConnectionTypes %s", got)
	}
	id := out[0]["clientId"].(string)
	connect := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"cross-origin-long-polling"}]`, id)
	if _, out := ts.fayeCORS(t, origin, connect); last(out)["successful"] != true {
		t.Fatalf("first connect: %v", out)
	}
	if _, out := ts.fayeCORS(t, origin, fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/chat/*"}]`, id)); last(out)["successful"] != true {
		t.Fatalf("subscribe: %v", out)
	}
	held := make(chan []msg, 1)
	go func() {
		_, out := ts.fayeCORS(t, origin, connect)
		held <- out
	}()
	ts.waitHeld(t, id)
	if got := ts.Session(id).ConnectionType(); got != "cross-origin-long-polling" {
		t.Fatalf("ConnectionType %q", got)
	}
	if err := ts.Publish("/chat/room", "hi"); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-held:
		if ev := events(out); len(ev) != 1 || ev[0]["data"] != "hi" || last(out)["channel"] != "/meta/connect" {
			t.Fatalf("held connect reply: %v", out)
		}
	case <-time.After(testWait):
		t.Fatal("held connect not answered")
	}
}

func TestHandshakeAdvertisesWhatTheClientKnows(t *testing.T) {
	tests := []struct {
		name, enabled, client, want string
	}{
		{"cometd client", "", `["websocket","long-polling","callback-polling"]`, "[websocket long-polling callback-polling]"},
		{"faye client", "", fayeTypes, "[websocket long-polling callback-polling cross-origin-long-polling eventsource]"},
		{"no list", "", ``, "[websocket long-polling callback-polling cross-origin-long-polling eventsource]"},
		{"only faye's cors", "cross-origin-long-polling", fayeTypes, "[cross-origin-long-polling]"},
		{"only eventsource", "eventsource,websocket", fayeTypes, "[eventsource websocket]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var enabled []string
			if tc.enabled != "" {
				enabled = strings.Split(tc.enabled, ",")
			}
			ts := newTestServer(t, Config{Transports: enabled})
			types := ""
			if tc.client != "" {
				types = `,"supportedConnectionTypes":` + tc.client
			}
			out := ts.must(t, `[{"channel":"/meta/handshake","version":"1.0"`+types+`}]`)
			if len(out) != 1 || out[0]["successful"] != true {
				t.Fatalf("handshake: %v", out)
			}
			if got := fmt.Sprint(out[0]["supportedConnectionTypes"]); got != tc.want {
				t.Fatalf("supportedConnectionTypes %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPOSTRefusedWhenNoPOSTTransportEnabled(t *testing.T) {
	ts := newTestServer(t, Config{Transports: []string{"websocket", "callback-polling"}})
	if code, _ := ts.post(t, `[{"channel":"/meta/handshake","version":"1.0"}]`); code != http.StatusBadRequest {
		t.Fatalf("POST with only websocket and callback-polling: status %d", code)
	}
}

// sseClient is an open EventSource stream.
type sseClient struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// openSSE opens the eventsource stream of session id, as a browser does.
func (ts *testServer) openSSE(t *testing.T, id string, hdr http.Header) (*sseClient, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+"/"+id, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET stream: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode
	}
	return &sseClient{t: t, resp: resp, r: bufio.NewReader(resp.Body)}, resp.StatusCode
}

// next returns the next event's data, or the comment of a keep-alive as
// ":"; fields other than data (retry) are returned as read.
func (c *sseClient) next() (string, error) {
	var data []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && len(data) > 0:
			return strings.Join(data, "\n"), nil
		case line == "":
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		default:
			return line, nil
		}
	}
}

// messages reads events until one carries messages and decodes them.
func (c *sseClient) messages() []msg {
	c.t.Helper()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(testWait):
			c.resp.Body.Close()
		}
	}()
	for {
		ev, err := c.next()
		if err != nil {
			c.t.Fatalf("stream: %v", err)
		}
		if !strings.HasPrefix(ev, "[") {
			continue
		}
		var out []msg
		if err := json.Unmarshal([]byte(ev), &out); err != nil {
			c.t.Fatalf("event data %q: %v", ev, err)
		}
		return out
	}
}

// ended reads the stream until it ends, failing the test if it does not
// within testWait; it returns the events read meanwhile.
func (c *sseClient) ended() []string {
	c.t.Helper()
	timer := time.AfterFunc(testWait, func() { c.resp.Body.Close() })
	defer timer.Stop()
	start := time.Now()
	var evs []string
	for {
		ev, err := c.next()
		if err != nil {
			if time.Since(start) >= testWait {
				c.t.Fatal("the stream did not end")
			}
			return evs
		}
		evs = append(evs, ev)
	}
}

// eventSourceSession handshakes and connects as Faye's eventsource
// transport does, subscribed to channels, and opens its stream.
func (ts *testServer) eventSourceSession(t *testing.T, channels ...string) (string, *sseClient) {
	t.Helper()
	out := ts.must(t, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":`+fayeTypes+`}]`)
	id := out[0]["clientId"].(string)
	for _, c := range channels {
		ts.subscribe(t, id, c)
	}
	sc, code := ts.openSSE(t, id, nil)
	if code != http.StatusOK {
		t.Fatalf("stream status %d", code)
	}
	if ev, err := sc.next(); err != nil || ev != "retry: 5000" {
		t.Fatalf("first line %q, %v", ev, err)
	}
	return id, sc
}

func TestEventSource(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 20 * time.Second, MaxInterval: 6 * time.Second})
	id, sc := ts.eventSourceSession(t, "/chat/**")
	if h := sc.resp.Header; h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache, no-store" {
		t.Fatalf("stream headers %v", h)
	}

	// A connect of the eventsource type is answered at once, twice, with
	// advice to come back within MaxInterval.
	for range 2 {
		start := time.Now()
		out := ts.must(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"eventsource"}]`, id))
		r := last(out)
		adv, _ := r["advice"].(msg)
		if r["successful"] != true || adv["timeout"] != 0.0 || adv["interval"] != 3000.0 {
			t.Fatalf("eventsource connect: %v", out)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("eventsource connect held %v", d)
		}
	}
	if got := ts.Session(id).ConnectionType(); got != "eventsource" {
		t.Fatalf("ConnectionType %q", got)
	}

	// Messages come on the stream as they are published, the second
	// subscription matching the same message delivers it once.
	ts.subscribe(t, id, "/chat/*")
	for i := range 3 {
		if err := ts.Publish("/chat/room", i); err != nil {
			t.Fatal(err)
		}
		out := sc.messages()
		if len(out) != 1 || out[0]["channel"] != "/chat/room" || out[0]["data"] != float64(i) {
			t.Fatalf("event %d: %v", i, out)
		}
	}
	if n := ts.Session(id).QueueLen(); n != 0 {
		t.Fatalf("queue holds %d after the stream took them", n)
	}

	// A disconnect ends the stream.
	ts.must(t, fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, id))
	sc.ended()
}

func TestEventSourceQueuedBeforeStreamOpens(t *testing.T) {
	ts := newTestServer(t, Config{})
	out := ts.must(t, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":`+fayeTypes+`}]`)
	id := out[0]["clientId"].(string)
	ts.subscribe(t, id, "/a")
	if err := ts.Publish("/a", "early"); err != nil {
		t.Fatal(err)
	}
	sc, code := ts.openSSE(t, id, nil)
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if out := sc.messages(); len(out) != 1 || out[0]["data"] != "early" {
		t.Fatalf("event: %v", out)
	}
}

func TestEventSourceNewStreamReplacesOld(t *testing.T) {
	ts := newTestServer(t, Config{})
	id, old := ts.eventSourceSession(t, "/a")
	nw, code := ts.openSSE(t, id, nil)
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if ev, _ := nw.next(); ev != "retry: 5000" {
		t.Fatalf("first line %q", ev)
	}
	if err := ts.Publish("/a", "x"); err != nil {
		t.Fatal(err)
	}
	if out := nw.messages(); len(out) != 1 || out[0]["data"] != "x" {
		t.Fatalf("new stream: %v", out)
	}
	for _, ev := range old.ended() { // the old stream ends, having delivered nothing
		if strings.HasPrefix(ev, "[") {
			t.Fatalf("old stream delivered %s", ev)
		}
	}
}

func TestEventSourceHostile(t *testing.T) {
	ts := newTestServer(t, Config{AllowedOrigins: []string{"https://app.example"}})
	id := ts.handshake(t)
	tests := []struct {
		name string
		path string
		hdr  http.Header
		want int
	}{
		{"unknown session", "node-x~nope", nil, http.StatusNotFound},
		{"empty id", "", nil, http.StatusNotFound},
		{"dot dot", "..", nil, http.StatusNotFound},
		{"id with a query", url.PathEscape(id + "?x=1"), nil, http.StatusNotFound},
		{"long id", strings.Repeat("a", 4000), nil, http.StatusNotFound},
		{"foreign origin", id, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"null origin", id, http.Header{"Origin": {"null"}}, http.StatusForbidden},
		{"allowed origin", id, http.Header{"Origin": {"https://app.example"}}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, code := ts.openSSE(t, tc.path, tc.hdr); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
	// A local session's queue is not for streaming.
	ls := ts.NewLocalSession("local")
	if err := ls.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, code := ts.openSSE(t, ls.ID(), nil); code != http.StatusNotFound {
		t.Fatalf("local session stream: status %d", code)
	}

	off := newTestServer(t, Config{Transports: []string{"long-polling"}})
	oid := off.handshake(t)
	if _, code := off.openSSE(t, oid, nil); code != http.StatusBadRequest {
		t.Fatalf("stream with eventsource disabled: status %d", code)
	}
	// The eventsource connection type is then an ordinary held connect.
	off.connect(t, oid)
	held := off.postAsync(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"eventsource"}]`, oid))
	off.waitHeld(t, oid)
	off.Session(oid).Disconnect()
	recv(t, held)
}

// TestEventSourceSlowReader: a client that opens its stream and never reads
// has it closed within WriteTimeout once the network stops taking bytes; the
// messages that were not written stay queued for the session.
func TestEventSourceSlowReader(t *testing.T) {
	ts := newTestServer(t, Config{WriteTimeout: 300 * time.Millisecond, MaxQueueBytes: -1, MaxPendingBytes: 64 << 10})
	out := ts.must(t, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":`+fayeTypes+`}]`)
	id := out[0]["clientId"].(string)
	ts.subscribe(t, id, "/big")

	conn, err := net.Dial("tcp", ts.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(conn, "GET /cometd/%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", id)
	waitFor(t, "the stream to carry the session", func() bool { return ts.Session(id).conn.Load() != nil })

	payload := `"` + strings.Repeat("x", 32<<10) + `"`
	var data any
	_ = json.Unmarshal([]byte(payload), &data)
	waitFor(t, "the stream closed as a slow connection", func() bool {
		for range 64 {
			if err := ts.Publish("/big", data); err != nil {
				t.Fatal(err)
			}
		}
		return ts.Stats().SlowConnections > 0
	})
	waitFor(t, "the session to be free of the stream", func() bool { return ts.Session(id).conn.Load() == nil })
	ss := ts.Session(id)
	if ss == nil || ss.QueueLen() == 0 {
		t.Fatalf("session %v lost its unwritten messages", ss)
	}
}

func TestEventSourceClosedWithServer(t *testing.T) {
	ts := newTestServer(t, Config{})
	_, sc := ts.eventSourceSession(t, "/a")
	ts.Close()
	sc.ended()
}

// TestCallbackPollingOrigin: a browser loads a JSONP reply as a script, which
// CORS does not protect; the broker answers a cross-site one only for an
// allowed page origin.
func TestCallbackPollingOrigin(t *testing.T) {
	ts := newTestServer(t, Config{AllowedOrigins: []string{"http://localhost:8000"}})
	any := newTestServer(t, Config{AllowedOrigins: []string{"*"}})
	const query = "/handshake?jsonp=__jsonp1__&message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D"
	tests := []struct {
		name string
		ts   *testServer
		hdr  map[string]string
		want int
	}{
		{"no fetch metadata (not a browser)", ts, nil, 200},
		{"same origin", ts, map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"typed in", ts, map[string]string{"Sec-Fetch-Site": "none"}, 200},
		{"allowed page by Referer", ts, map[string]string{"Sec-Fetch-Site": "same-site", "Referer": "http://localhost:8000/"}, 200},
		{"allowed page by Origin", ts, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost:8000"}, 200},
		{"allowed page, full Referer", ts, map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": "http://localhost:8000/app/page.html?x=1"}, 200},
		{"other page", ts, map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": "http://localhost:9000/"}, 403},
		{"other scheme", ts, map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": "https://localhost:8000/"}, 403},
		{"no Referer", ts, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"null Origin, no Referer", ts, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "null"}, 403},
		{"junk Referer", ts, map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": "::not a url"}, 403},
		{"userinfo Referer", ts, map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": "http://localhost:8000@evil.example/"}, 403},
		{"any origin allowed", any, map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": "http://evil.example/"}, 200},
		// Browsers send no fetch metadata to a plain-HTTP host that is not a
		// loopback address (a Service's ClusterIP): the page's origin decides.
		{"no fetch metadata, other page", ts, map[string]string{"Referer": "http://localhost:9000/"}, 403},
		{"no fetch metadata, other page by Origin", ts, map[string]string{"Origin": "http://evil.example"}, 403},
		{"no fetch metadata, allowed page", ts, map[string]string{"Referer": "http://localhost:8000/chat"}, 200},
		{"no fetch metadata, the broker's own page", ts, map[string]string{"Referer": strings.TrimSuffix(ts.url, "/cometd") + "/demo/"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.ts.url+query, nil)
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
