package server

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestCORSOrigins: a listed origin or one a pattern matches gets credentials;
// "*" allows any other origin without them; "null", a lookalike domain, another
// scheme or port get nothing.
func TestCORSOrigins(t *testing.T) {
	tests := []struct {
		name     string
		allowed  []string
		origin   string
		wantACAO string
		wantCred bool
	}{
		{"listed", []string{"https://app.example.org"}, "https://app.example.org", "https://app.example.org", true},
		{"listed, case", []string{"https://App.Example.org"}, "https://app.example.org", "https://app.example.org", true},
		{"listed, default port", []string{"https://app.example.org:443"}, "https://app.example.org", "https://app.example.org", true},
		{"not listed", []string{"https://app.example.org"}, "https://evil.example", "", false},
		{"other scheme", []string{"https://app.example.org"}, "http://app.example.org", "", false},
		{"other port", []string{"https://app.example.org"}, "https://app.example.org:8443", "", false},
		{"pattern", []string{"https://*.example.org"}, "https://a.b.example.org", "https://a.b.example.org", true},
		{"pattern is not the apex", []string{"https://*.example.org"}, "https://example.org", "", false},
		{"pattern lookalike", []string{"https://*.example.org"}, "https://evilexample.org", "", false},
		{"pattern suffix trick", []string{"https://*.example.org"}, "https://example.org.evil.com", "", false},
		{"pattern other scheme", []string{"https://*.example.org"}, "http://a.example.org", "", false},
		{"star: any origin, no credentials", []string{"*"}, "https://anyone.example", "*", false},
		{"star: null gets no credentials", []string{"*"}, "null", "*", false},
		{"null is never listed", []string{"https://app.example.org"}, "null", "", false},
		{"star and a listed one", []string{"*", "https://app.example.org"}, "https://app.example.org", "https://app.example.org", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, Config{AllowedOrigins: tc.allowed})
			for _, method := range []string{http.MethodOptions, http.MethodPost} {
				req, _ := http.NewRequest(method, ts.url, strings.NewReader(`[]`))
				req.Header.Set("Origin", tc.origin)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				h := resp.Header
				if got := h.Get("Access-Control-Allow-Origin"); got != tc.wantACAO {
					t.Errorf("%s: Access-Control-Allow-Origin = %q, want %q", method, got, tc.wantACAO)
				}
				if got := h.Get("Access-Control-Allow-Credentials") == "true"; got != tc.wantCred {
					t.Errorf("%s: Access-Control-Allow-Credentials = %v, want %v", method, got, tc.wantCred)
				}
				if h.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("%s: no X-Content-Type-Options: nosniff", method)
				}
			}
		})
	}
}

func TestAllowedOriginsInvalid(t *testing.T) {
	for _, o := range []string{"app.example.org", "https://a.example.org/path", "ftp://a.example.org", "https://*.org", "null"} {
		if _, err := NewServer(Config{AllowedOrigins: []string{o}}); err == nil {
			t.Errorf("AllowedOrigins %q accepted", o)
		}
	}
}

// TestJSONPCallbackNames: only the names the CometD and Faye clients
// produce are accepted as callbacks.
func TestJSONPCallbackNames(t *testing.T) {
	ts := newTestServer(t, Config{})
	for cb, ok := range map[string]bool{
		"_cometd_jsonp_0": true, "_cometd_jsonp_123": true, "__jsonp7__": true,
		"location.assign": false, "alert": false, "_cometd_jsonp_": false, "__jsonp__": false,
		"_cometd_jsonp_1.x": false, "__jsonp1__.call": false, "_cometd_jsonp_1234567890123": false,
		"window.opener.postMessage": false, "cb": false,
	} {
		q := url.Values{"jsonp": {cb}, "message": {`[{"channel":"/meta/handshake","version":"1.0"}]`}}
		resp, err := http.Get(ts.url + "/handshake?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.StatusCode == 200; got != ok {
			t.Errorf("callback %q: status %d, accepted %v, want %v", cb, resp.StatusCode, got, ok)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("callback %q: no nosniff", cb)
		}
	}
}

// TestBrowserCookieAttributes: BAYEUX_BROWSER is HttpOnly and SameSite=Lax,
// and Secure when the request came over TLS (here: a proxy says so).
func TestBrowserCookieAttributes(t *testing.T) {
	ts := newTestServer(t, Config{})
	for _, tlsProxy := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
		if tlsProxy {
			req.Header.Set("X-Forwarded-Proto", "https")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Get("Set-Cookie")
		if !strings.Contains(sc, BrowserCookie+"=") || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
			t.Errorf("Set-Cookie %q", sc)
		}
		if got := strings.Contains(sc, "Secure"); got != tlsProxy {
			t.Errorf("behind TLS %v: Set-Cookie %q", tlsProxy, sc)
		}
	}
}

// TestBrowserCookieValueChecked: an oversized or odd BAYEUX_BROWSER value is
// not kept; the client gets a new cookie.
func TestBrowserCookieValueChecked(t *testing.T) {
	ts := newTestServer(t, Config{})
	req, _ := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
	req.AddCookie(&http.Cookie{Name: BrowserCookie, Value: strings.Repeat("a", 200)})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Set-Cookie"), BrowserCookie+"=") {
		t.Fatal("an oversized browser cookie was kept")
	}
}

// TestSessionKeepsShortUserAgent: a session keeps a copy of at most 256
// bytes of its User-Agent.
func TestSessionKeepsShortUserAgent(t *testing.T) {
	ts := newTestServer(t, Config{})
	req, _ := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
	req.Header.Set("User-Agent", strings.Repeat("u", 8000))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ss := ts.Sessions()
	if len(ss) != 1 || len(ss[0].UserAgent()) != maxClientString {
		t.Fatalf("sessions %d, user agent of %d bytes", len(ss), len(ss[0].UserAgent()))
	}
}

// TestWebsocketOriginDNSRebinding: a browser's websocket must come from a
// listed origin; same-origin is trusted only when the Host is an address,
// since a rebinding page sends its own name as both Origin and Host.
func TestWebsocketOriginDNSRebinding(t *testing.T) {
	ts := newTestServer(t, Config{AllowedOrigins: []string{"https://*.example.org"}})
	addr := strings.TrimPrefix(ts.hs.URL, "http://")
	_, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		name, host, origin string
		ok                 bool
	}{
		{"no Origin: not a browser", "", "", true},
		{"listed pattern", "", "https://app.example.org", true},
		{"same origin on an IP", "", "http://" + addr, true},
		{"same origin on localhost", "localhost:" + port, "http://localhost:" + port, true},
		{"rebinding: same name as Origin and Host", "attacker.test:" + port, "http://attacker.test:" + port, false},
		{"other origin", "", "http://evil.test", false},
		{"null", "", "null", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			if tc.host != "" {
				h.Set("Host", tc.host)
			}
			d := websocket.Dialer{HandshakeTimeout: testWait}
			c, resp, err := d.Dial("ws://"+addr+"/cometd", h)
			if c != nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("upgrade err %v, want ok %v", err, tc.ok)
			}
			if err == nil && resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("upgrade reply without nosniff")
			}
		})
	}
}

// TestBatchTooLarge: a batch whose replies alone would pass MaxPendingBytes is
// refused before it is processed, on every transport.
func TestBatchTooLarge(t *testing.T) {
	ts := newTestServer(t, Config{MaxPendingBytes: 64 << 10})
	n := int(64<<10/(perMessageOverhead+minReplySize)) + 1
	batch := "[" + strings.TrimSuffix(strings.Repeat("{},", n), ",") + "]"
	if code, _ := ts.post(t, batch); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("long-polling: status %d, want 413", code)
	}
	if code, out := ts.post(t, "["+strings.TrimSuffix(strings.Repeat("{},", n/2), ",")+"]"); code != 200 || len(out) != n/2 {
		t.Fatalf("half the batch: status %d, %d replies", code, len(out))
	}
	c := ts.dialWS(t)
	c.send(batch)
	_ = c.c.SetReadDeadline(time.Now().Add(testWait))
	_, _, err := c.c.ReadMessage()
	if got := closeCode(err); got != websocket.CloseMessageTooBig {
		t.Fatalf("websocket close %d (%v), want 1009", got, err)
	}
	if ts.Stats().MessagesIn != uint64(n/2) {
		t.Fatalf("messages processed %d, want only the half batch's %d", ts.Stats().MessagesIn, n/2)
	}
}

// TestWebsocketSlowConnection: a client that sends and never reads is cut once
// the replies waiting for it pass MaxPendingBytes, and counted.
func TestWebsocketSlowConnection(t *testing.T) {
	ts := newTestServer(t, Config{MaxPendingBytes: 64 << 10, WriteTimeout: time.Minute})
	addr := strings.TrimPrefix(ts.hs.URL, "http://")
	d := websocket.Dialer{
		HandshakeTimeout: testWait,
		NetDial: func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err == nil {
				_ = c.(*net.TCPConn).SetReadBuffer(4096) // fill up soon
			}
			return c, err
		},
	}
	c, _, err := d.Dial("ws://"+addr+"/cometd", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := []byte("[" + strings.TrimSuffix(strings.Repeat(`{"channel":"/x","data":"`+strings.Repeat("y", 200)+`"},`, 40), ",") + "]")
	deadline := time.Now().Add(testWait)
	var werr error
	for i := 0; werr == nil && time.Now().Before(deadline) && i < 100000; i++ {
		_ = c.SetWriteDeadline(time.Now().Add(testWait))
		werr = c.WriteMessage(websocket.TextMessage, frame)
	}
	if werr == nil {
		t.Fatal("a client that never reads was not cut")
	}
	waitFor(t, "the slow connection to be counted", func() bool { return ts.Stats().SlowConnections == 1 })
	waitFor(t, "the connection to be released", func() bool { return len(ts.websockets()) == 0 })
}

// TestLimitListener: connections past MaxConns or MaxConnsPerIP are answered
// 503 and closed at once; a closed connection gives its slot back.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(raw, ConnLimits{MaxConns: 3, MaxConnsPerIP: 2})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = bufio.NewReader(c).ReadByte(); c.Close() }() // held until the client writes
		}
	}()
	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testWait}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refused := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.Contains(line, "503")
	}
	a1, _ := dial("127.0.0.1"), dial("127.0.0.1")
	waitFor(t, "two open", func() bool { return ln.Stats().Open == 2 })
	if c := dial("127.0.0.1"); !refused(c) {
		t.Fatal("a third connection from one IP was not refused")
	}
	dial("127.0.0.2")
	waitFor(t, "three open", func() bool { return ln.Stats().Open == 3 })
	if c := dial("127.0.0.3"); !refused(c) {
		t.Fatal("a connection past MaxConns was not refused")
	}
	st := ln.Stats()
	if st.RefusedPerIP != 1 || st.RefusedMax != 1 {
		t.Fatalf("stats %+v", st)
	}
	_, _ = a1.Write([]byte("x")) // the server closes it
	waitFor(t, "a slot given back", func() bool { return ln.Stats().Open == 2 })
	if c := dial("127.0.0.1"); refused(c) {
		t.Fatal("refused after a slot was given back")
	}
}
