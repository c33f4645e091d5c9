package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// testWait bounds every wait in these tests: generous for a loaded machine.
const testWait = 15 * time.Second

type testServer struct {
	*Server
	url string // http://127.0.0.1:port/cometd
	hs  *httptest.Server
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/cometd", s.Handler())
	mux.Handle("/cometd/", s.Handler())
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return &testServer{Server: s, url: hs.URL + "/cometd", hs: hs}
}

type msg = map[string]any

// post sends body to the server and decodes the reply batch (nil if not JSON).
func (ts *testServer) post(t *testing.T, body string) (int, []msg) {
	t.Helper()
	resp, out := ts.send(t, ts.url+"/x", body, map[string]string{"Content-Type": "application/json;charset=UTF-8"})
	return resp.StatusCode, out
}

// send POSTs body to url with the headers hdr and decodes the reply batch
// (nil if not JSON).
func (ts *testServer) send(t *testing.T, url, body string, hdr map[string]string) (*http.Response, []msg) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []msg
	_ = json.Unmarshal(b, &out)
	return resp, out
}

func (ts *testServer) must(t *testing.T, body string) []msg {
	t.Helper()
	code, out := ts.post(t, body)
	if code != http.StatusOK {
		t.Fatalf("POST %s: status %d", body, code)
	}
	return out
}

func (ts *testServer) handshake(t *testing.T) string {
	t.Helper()
	out := ts.must(t, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`)
	if len(out) != 1 || out[0]["successful"] != true {
		t.Fatalf("handshake failed: %v", out)
	}
	return out[0]["clientId"].(string)
}

// connected handshakes and completes the first (immediate) connect.
func (ts *testServer) connected(t *testing.T) string {
	t.Helper()
	id := ts.handshake(t)
	out := ts.connect(t, id)
	if last(out)["successful"] != true {
		t.Fatalf("first connect failed: %v", out)
	}
	return id
}

func (ts *testServer) connect(t *testing.T, id string) []msg {
	t.Helper()
	return ts.must(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id))
}

func (ts *testServer) subscribe(t *testing.T, id string, channels ...string) {
	t.Helper()
	b, _ := json.Marshal(channels)
	out := ts.must(t, fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":%s}]`, id, b))
	if len(out) != 1 || out[0]["successful"] != true {
		t.Fatalf("subscribe %v: %v", channels, out)
	}
}

func (ts *testServer) publish(t *testing.T, id, channel, data string) msg {
	t.Helper()
	out := ts.must(t, fmt.Sprintf(`[{"channel":%q,"clientId":%q,"data":%s,"id":"p1"}]`, channel, id, data))
	if len(out) != 1 {
		t.Fatalf("publish reply: %v", out)
	}
	return out[0]
}

func last(out []msg) msg {
	if len(out) == 0 {
		return msg{}
	}
	return out[len(out)-1]
}

// events returns the non-meta messages of a reply batch.
func events(out []msg) []msg {
	var ev []msg
	for _, m := range out {
		if ch, _ := m["channel"].(string); !strings.HasPrefix(ch, "/meta/") {
			ev = append(ev, m)
		}
	}
	return ev
}

// waitFor waits, through testutil.Eventually, until cond holds or testWait passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, testWait, what, func(context.Context) (bool, string) { return cond(), "" })
}

// wsClient is a raw websocket Bayeux client for tests.
type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func (ts *testServer) dialWS(t *testing.T) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(ts.url, "http")
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { c.Close() })
	return &wsClient{t: t, c: c}
}

func (w *wsClient) send(body string) {
	w.t.Helper()
	if err := w.c.WriteMessage(websocket.TextMessage, []byte(body)); err != nil {
		w.t.Fatalf("ws write: %v", err)
	}
}

// read returns the next frame's messages.
func (w *wsClient) read() []msg {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(testWait))
	_, b, err := w.c.ReadMessage()
	if err != nil {
		w.t.Fatalf("ws read: %v", err)
	}
	var out []msg
	if err := json.Unmarshal(b, &out); err != nil {
		w.t.Fatalf("ws frame %s: %v", b, err)
	}
	return out
}

// readUntil reads frames until one holds a message on channel.
func (w *wsClient) readUntil(channel string) msg {
	w.t.Helper()
	for {
		for _, m := range w.read() {
			if m["channel"] == channel {
				return m
			}
		}
	}
}

func (w *wsClient) handshake() string {
	w.t.Helper()
	w.send(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"]}]`)
	m := w.readUntil("/meta/handshake")
	if m["successful"] != true {
		w.t.Fatalf("ws handshake: %v", m)
	}
	id := m["clientId"].(string)
	w.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","advice":{"timeout":0}}]`, id))
	if c := w.readUntil("/meta/connect"); c["successful"] != true {
		w.t.Fatalf("ws first connect: %v", c)
	}
	return id
}

type result struct {
	out  []msg
	code int
	err  error
}

// postAsync sends body in the background (for connects that will be held).
func (ts *testServer) postAsync(body string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.url, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out []msg
		err = json.Unmarshal(b, &out)
		ch <- result{out: out, code: resp.StatusCode, err: err}
	}()
	return ch
}

func (ts *testServer) connectAsync(id string) <-chan result {
	return ts.postAsync(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id))
}

func recv(t *testing.T, ch <-chan result) []msg {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil || r.code != http.StatusOK {
			t.Fatalf("async request: code %d err %v", r.code, r.err)
		}
		return r.out
	case <-time.After(testWait):
		t.Fatal("async request did not complete")
	}
	return nil
}

func (ts *testServer) waitHeld(t *testing.T, id string) {
	t.Helper()
	waitFor(t, "a held connect", func() bool {
		s := ts.Session(id)
		if s == nil {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.held != nil
	})
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// websockets returns the server's open websocket connections.
func (ts *testServer) websockets() []*wsConn {
	ts.conns.mu.Lock()
	defer ts.conns.mu.Unlock()
	var out []*wsConn
	for c := range ts.conns.m {
		if wc, ok := c.(*wsConn); ok {
			out = append(out, wc)
		}
	}
	return out
}
