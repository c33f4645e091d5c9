package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/gorilla/websocket"
)

// scripted is a tiny Bayeux server whose answers the test scripts, to drive
// the client through edge cases a real server rarely produces on demand.
type scripted struct {
	// refuseUpgrade answers websocket upgrades with 400.
	refuseUpgrade atomic.Bool
	// onHTTP, if set before the first request, sees every request first
	// and may set response headers.
	onHTTP func(w http.ResponseWriter, r *http.Request)

	srv  *httptest.Server
	stop chan struct{} // closed at test end: releases held requests
}

type reply map[string]any

// newScripted serves handle(batch) for each POSTed batch; handle returns the
// status and either a string body or a value to encode as JSON.
func newScripted(t *testing.T, handle func(r *http.Request, batch []*client.Message) (int, any)) *scripted {
	s := &scripted{stop: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.onHTTP != nil {
			s.onHTTP(w, r)
		}
		if websocket.IsWebSocketUpgrade(r) {
			if s.refuseUpgrade.Load() {
				http.Error(w, "no websocket here", http.StatusBadRequest)
				return
			}
			s.serveWebsocket(t, w, r, handle)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		var batch []*client.Message
		if err := json.Unmarshal(body, &batch); err != nil {
			t.Errorf("client sent invalid JSON %q: %v", body, err)
			w.WriteHeader(400)
			return
		}
		status, out := handle(r, batch)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		switch o := out.(type) {
		case string:
			io.WriteString(w, o)
		default:
			json.NewEncoder(w).Encode(o)
		}
	}))
	t.Cleanup(func() { close(s.stop); s.srv.Close() })
	return s
}

// serveWebsocket answers each frame's batch in its own goroutine (so a held
// connect does not block other requests), writing each answer as one frame.
func (s *scripted) serveWebsocket(t *testing.T, w http.ResponseWriter, r *http.Request, handle func(r *http.Request, batch []*client.Message) (int, any)) {
	up := websocket.Upgrader{}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	var wmu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var batch []*client.Message
		if err := json.Unmarshal(data, &batch); err != nil {
			t.Errorf("client sent invalid JSON %q: %v", data, err)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, out := handle(r, batch)
			var frame []byte
			if str, ok := out.(string); ok {
				frame = []byte(str)
			} else {
				frame, _ = json.Marshal(out)
			}
			wmu.Lock()
			defer wmu.Unlock()
			conn.WriteMessage(websocket.TextMessage, frame)
		}()
	}
}

// await waits for ch, reporting false if the request or the test ended.
func (s *scripted) await(r *http.Request, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
	case <-s.stop:
	}
	return false
}

func (s *scripted) url() string { return s.srv.URL + "/cometd" }

func ok(m *client.Message, extra reply) reply {
	r := reply{"channel": m.Channel, "id": m.ID, "successful": true}
	if m.ClientID != "" {
		r["clientId"] = m.ClientID
	}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

func handshakeOK(m *client.Message, clientID string, ext reply) reply {
	r := ok(m, reply{
		"clientId":                 clientID,
		"version":                  "1.0",
		"supportedConnectionTypes": []string{"websocket", "long-polling"},
		"advice":                   reply{"reconnect": "retry", "interval": 0, "timeout": 2000},
	})
	if ext != nil {
		r["ext"] = ext
	}
	return r
}

func event(ch string, n int) reply { return reply{"channel": ch, "data": payload{n}} }

// hold blocks a request until the client gives up on it or the test ends.
func (s *scripted) hold(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.stop:
	}
}

// TestBatchOrdering checks that events are delivered whether they come
// before, after or around the /meta/connect reply in a batch, exactly once
// and in order, and that the ack extension acknowledges each batch.
func TestBatchOrdering(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) { testBatchOrdering(t, tr) })
	}
}

func testBatchOrdering(t *testing.T, tr string) {
	var (
		mu         sync.Mutex
		connects   int
		acks       []any
		subscribed = make(chan struct{})
		subOnce    sync.Once
		fourth     = make(chan struct{})
		s          *scripted
	)
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		switch m.Channel {
		case client.ChannelHandshake:
			if m.Ext["ack"] != true {
				t.Errorf("handshake ext %v, want ack:true", m.Ext)
			}
			return 200, []reply{handshakeOK(m, "c1", reply{"ack": true})}
		case client.ChannelSubscribe:
			subOnce.Do(func() { close(subscribed) })
			return 200, []reply{ok(m, reply{"subscription": m.Subscription[0]})}
		case client.ChannelConnect:
			if !s.await(r, subscribed) {
				return 200, "[]"
			}
			mu.Lock()
			connects++
			n := connects
			acks = append(acks, m.Ext["ack"])
			mu.Unlock()
			rep := func(batch int) reply { return ok(m, reply{"ext": reply{"ack": batch}}) }
			switch n {
			case 1: // events after the connect reply
				return 200, []reply{rep(1), event("/t", 1), event("/t", 2)}
			case 2: // events before it
				return 200, []reply{event("/t", 3), event("/t", 4), rep(2)}
			case 3: // around it
				return 200, []reply{event("/t", 5), rep(3), event("/t", 6)}
			default:
				if n == 4 {
					close(fourth)
				}
				s.hold(r)
				return 200, []reply{rep(n)}
			}
		case client.ChannelDisconnect:
			return 200, []reply{ok(m, nil)}
		}
		return 200, []reply{{"channel": m.Channel, "id": m.ID, "successful": false, "error": "400::unexpected"}}
	})
	c, _ := newTestClient(t, s.url(), tr, func(cfg *client.Config) { cfg.AckExtension = true })
	ctx := ctxT(t)
	box := newInbox("/t")
	if _, err := c.Subscribe(ctx, "/t", box.handler); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 6; want++ {
		if got := decodeN(t, box.next(t, ctx)); got != want {
			t.Fatalf("event %d arrived as n=%d", want, got)
		}
	}
	// The fourth connect acknowledges batch 3.
	select {
	case <-fourth:
	case <-ctx.Done():
		t.Fatal("fourth connect never arrived")
	}
	mu.Lock()
	got := append([]any(nil), acks[:4]...)
	mu.Unlock()
	want := []any{float64(-1), float64(1), float64(2), float64(3)}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("connect ext.ack values %v, want %v", got, want)
		}
	}
	box.empty(t)
}

// TestHandshakeBadInput feeds the handshake malformed or refusing answers:
// each must produce a clear error, never a panic, and leave the client idle.
func TestHandshakeBadInput(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   func(m *client.Message) any
		want   string
	}{
		{"garbage JSON", 200, func(*client.Message) any { return `[{"channel": "/meta/handshake", ` }, "invalid JSON"},
		{"HTML page", 200, func(*client.Message) any { return `<html>gateway</html>` }, "not a JSON message batch"},
		{"HTTP 500", 500, func(*client.Message) any { return `boom` }, "HTTP 500"},
		{"empty body", 200, func(*client.Message) any { return `` }, "empty response"},
		{"null message", 200, func(*client.Message) any { return `[null]` }, "null"},
		{"wrong field type", 200, func(*client.Message) any { return `[{"channel": 5}]` }, "invalid JSON"},
		{"no reply", 200, func(*client.Message) any { return `[]` }, "no reply"},
		{"refused", 200, func(m *client.Message) any {
			return []reply{{"channel": m.Channel, "id": m.ID, "successful": false, "error": "403::forbidden", "advice": reply{"reconnect": "none"}}}
		}, "403::forbidden"},
		{"no clientId", 200, func(m *client.Message) any { return []reply{ok(m, nil)} }, "no clientId"},
		{"no common transport", 200, func(m *client.Message) any {
			return []reply{ok(m, reply{"clientId": "x", "supportedConnectionTypes": []string{"callback-polling"}})}
		}, "no common transport"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newScripted(t, func(_ *http.Request, batch []*client.Message) (int, any) {
				return tc.status, tc.body(batch[0])
			})
			c, err := client.NewClient(client.Config{URL: s.url(), Transports: []string{bayeux.TransportLongPolling}})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Handshake(ctxT(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("handshake error %v, want one containing %q", err, tc.want)
			}
			if tc.name == "refused" {
				var be *client.Error
				if !errors.As(err, &be) || be.Code != 403 || be.Message != "forbidden" {
					t.Fatalf("refusal parsed as %#v", be)
				}
			}
			if st := c.State(); st != client.StateIdle {
				t.Fatalf("state after a failed handshake: %v", st)
			}
			if err := c.Publish(ctxT(t), "/x", 1); !errors.Is(err, client.ErrNotHandshaken) {
				t.Fatalf("publish before handshake: %v", err)
			}
		})
	}
}

// TestConnectBadInputAndAdvice walks the connect loop through garbage, an
// HTTP error, unknown advice, success, and finally advice "none".
func TestConnectBadInputAndAdvice(t *testing.T) {
	var mu sync.Mutex
	connects := 0
	s := newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		switch m.Channel {
		case client.ChannelHandshake:
			return 200, []reply{handshakeOK(m, "c1", nil)}
		case client.ChannelConnect:
			mu.Lock()
			connects++
			n := connects
			mu.Unlock()
			switch n {
			case 1:
				return 200, `[{"channel":"/meta/connect","successful":tru`
			case 2:
				return 503, `overloaded`
			case 3:
				return 200, []reply{ok(m, reply{"advice": reply{"reconnect": "banana", "interval": 0}})}
			case 4:
				return 200, []reply{ok(m, nil)}
			default:
				return 200, []reply{{"channel": m.Channel, "id": m.ID, "successful": false, "error": "403::go away", "advice": reply{"reconnect": "none"}}}
			}
		}
		return 200, []reply{ok(m, nil)}
	})
	c, log := newTestClient(t, s.url(), bayeux.TransportLongPolling)
	ctx := ctxT(t)
	steps := []struct {
		what  string
		state client.State
		err   string
	}{
		{"garbage connect reply", client.StateUnconnected, "invalid JSON"},
		{"HTTP 503", client.StateUnconnected, "HTTP 503"},
		{"unknown advice", client.StateUnconnected, `unknown reconnect advice "banana"`},
		{"success", client.StateConnected, ""},
		{"advice none", client.StateDisconnected, "403::go away"},
	}
	mark := 0
	for _, st := range steps {
		mark = log.waitFor(t, ctx, mark, st.what, func(e stateEvent) bool {
			if e.s != st.state {
				return false
			}
			if st.err == "" {
				return e.err == nil
			}
			return e.err != nil && strings.Contains(e.err.Error(), st.err)
		})
	}
	if err := c.Publish(ctx, "/x", 1); !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("publish after advice none: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed after advice none")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "go away") {
		t.Fatalf("Err() = %v, want the server's reason", err)
	}
}

// TestRehandshakeResubscribes answers a connect with 402 session_unknown and
// checks that the client handshakes again, re-subscribes with its new
// clientId and keeps delivering to the original handle.
func TestRehandshakeResubscribes(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) { testRehandshakeResubscribes(t, tr) })
	}
}

func testRehandshakeResubscribes(t *testing.T, tr string) {
	var (
		mu           sync.Mutex
		handshakes   int
		connects     = map[string]int{}
		resubscribe  = make(chan struct{})
		firstSub     = make(chan struct{})
		once1, once2 sync.Once
		s            *scripted
	)
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		var out []reply
		for _, m := range batch {
			switch m.Channel {
			case client.ChannelHandshake:
				mu.Lock()
				handshakes++
				id := "c" + string(rune('0'+handshakes))
				mu.Unlock()
				out = append(out, handshakeOK(m, id, nil))
			case client.ChannelSubscribe:
				switch m.ClientID {
				case "c1":
					once1.Do(func() { close(firstSub) })
				case "c2":
					once2.Do(func() { close(resubscribe) })
				}
				out = append(out, ok(m, reply{"subscription": m.Subscription[0]}))
			case client.ChannelConnect:
				mu.Lock()
				connects[m.ClientID]++
				n := connects[m.ClientID]
				mu.Unlock()
				switch {
				case m.ClientID == "c1" && n == 1:
					out = append(out, ok(m, nil))
				case m.ClientID == "c1":
					// Expire the session only once the test subscribed on it.
					if !s.await(r, firstSub) {
						return 200, "[]"
					}
					out = append(out, reply{"channel": m.Channel, "id": m.ID, "successful": false,
						"error": "402::session_unknown", "advice": reply{"reconnect": "handshake", "interval": 0}})
				case m.ClientID == "c2" && n <= 2:
					if !s.await(r, resubscribe) {
						return 200, "[]"
					}
					out = append(out, ok(m, nil), event("/r", 42))
				default:
					s.hold(r)
					out = append(out, ok(m, nil))
				}
			default:
				out = append(out, ok(m, nil))
			}
		}
		return 200, out
	})
	c, log := newTestClient(t, s.url(), tr)
	ctx := ctxT(t)
	box := newInbox("/r")
	if _, err := c.Subscribe(ctx, "/r", box.handler); err != nil {
		t.Fatal(err)
	}
	if got := decodeN(t, box.next(t, ctx)); got != 42 {
		t.Fatalf("got n=%d", got)
	}
	if c.ClientID() != "c2" {
		t.Fatalf("clientId %q after re-handshake, want c2", c.ClientID())
	}
	log.waitFor(t, ctx, 0, "re-handshake caused by 402", func(e stateEvent) bool {
		return e.s == client.StateHandshaking && e.err != nil && strings.Contains(e.err.Error(), "session_unknown")
	})
}

// TestWebsocketGarbageFrame: an unparsable frame drops the websocket; the
// client reports why, dials a new one and carries on.
func TestWebsocketGarbageFrame(t *testing.T) {
	var mu sync.Mutex
	connects := 0
	var s *scripted
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		switch m.Channel {
		case client.ChannelHandshake:
			return 200, []reply{handshakeOK(m, "c1", nil)}
		case client.ChannelConnect:
			mu.Lock()
			connects++
			n := connects
			mu.Unlock()
			switch n {
			case 1:
				return 200, `[{"channel":"/meta/connect",,]`
			case 2:
				return 200, []reply{ok(m, nil)}
			default:
				s.hold(r)
				return 200, []reply{ok(m, nil)}
			}
		}
		return 200, []reply{ok(m, nil)}
	})
	_, log := newTestClient(t, s.url(), bayeux.TransportWebSocket)
	ctx := ctxT(t)
	mark := log.waitFor(t, ctx, 0, "garbage frame reported", func(e stateEvent) bool {
		return e.s == client.StateUnconnected && e.err != nil && strings.Contains(e.err.Error(), "invalid JSON")
	})
	log.waitFor(t, ctx, mark, "reconnected on a new websocket", func(e stateEvent) bool { return e.s == client.StateConnected })
}

// TestRepliesWithoutIDs: a lenient server that omits message ids in its
// long-polling replies still has them paired with their requests, and huge
// advice values are clamped rather than overflowing.
func TestRepliesWithoutIDs(t *testing.T) {
	var s *scripted
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		var out reply
		switch m.Channel {
		case client.ChannelHandshake:
			out = handshakeOK(m, "c1", nil)
			out["advice"] = reply{"reconnect": "retry", "interval": 0, "timeout": int64(1) << 53}
		case client.ChannelConnect:
			if m.Advice == nil { // not the first connect: hold it
				s.hold(r)
			}
			out = ok(m, nil)
		case "/refused":
			out = reply{"channel": m.Channel, "successful": false, "error": "403::no"}
		default:
			out = ok(m, nil)
		}
		delete(out, "id")
		return 200, []reply{out}
	})
	c, log := newTestClient(t, s.url(), bayeux.TransportLongPolling)
	ctx := ctxT(t)
	log.waitFor(t, ctx, 0, "connected", func(e stateEvent) bool { return e.s == client.StateConnected })
	if err := c.Publish(ctx, "/fine", 1); err != nil {
		t.Fatalf("publish acknowledged without id: %v", err)
	}
	var be *client.Error
	if err := c.Publish(ctx, "/refused", 1); !errors.As(err, &be) || be.Code != 403 {
		t.Fatalf("refusal without id: %v", err)
	}
}

// TestHeadersAndCookies: configured headers go with every HTTP request and
// the websocket upgrade, and a cookie set by the server comes back on each
// later request, over both transports.
func TestHeadersAndCookies(t *testing.T) {
	for _, custom := range []bool{false, true} {
		for _, tr := range transports {
			name := tr
			if custom {
				name += "/custom http.Client without jar"
			}
			t.Run(name, func(t *testing.T) { testHeadersAndCookies(t, tr, custom) })
		}
	}
}

func testHeadersAndCookies(t *testing.T, tr string, custom bool) {
	var (
		mu      sync.Mutex
		missing []string
		seen    int
	)
	var s *scripted
	check := func(r *http.Request, needCookie bool) {
		mu.Lock()
		defer mu.Unlock()
		seen++
		if r.Header.Get("X-Tenant") != "acme" {
			missing = append(missing, r.Method+" without X-Tenant")
		}
		if ck, err := r.Cookie("BAYEUX_BROWSER"); needCookie && (err != nil || ck.Value != "b1") {
			missing = append(missing, r.Method+" without the cookie")
		}
	}
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		if m.Channel == client.ChannelHandshake {
			check(r, false)
			out := handshakeOK(m, "c1", nil)
			out["supportedConnectionTypes"] = []string{tr}
			return 200, []reply{out}
		}
		if tr == bayeux.TransportLongPolling {
			check(r, true)
		}
		if m.Channel == client.ChannelConnect && m.Advice == nil {
			s.hold(r)
		}
		return 200, []reply{ok(m, nil)}
	})
	s.onHTTP = func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			check(r, true)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "BAYEUX_BROWSER", Value: "b1", Path: "/"})
	}
	c, _ := newTestClient(t, s.url(), tr, func(cfg *client.Config) {
		cfg.Header = http.Header{"X-Tenant": {"acme"}}
		// Handshake over HTTP (which sets the cookie), then use tr.
		cfg.Transports = []string{tr, bayeux.TransportLongPolling}
		if custom {
			cfg.HTTPClient = &http.Client{Timeout: time.Minute}
		}
	})
	if err := c.Publish(ctxT(t), "/x", 1); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(missing) > 0 || seen < 2 {
		t.Fatalf("%d requests checked; problems: %v", seen, missing)
	}
}

// authExt adds a token to the handshake and drops incoming /secret events.
type authExt struct{}

func (authExt) Outgoing(m *client.Message) bool {
	if m.Channel == client.ChannelHandshake {
		if m.Ext == nil {
			m.Ext = map[string]any{}
		}
		m.Ext["auth"] = "t0k3n"
	}
	return true
}

func (authExt) Incoming(m *client.Message) bool { return m.Channel != "/secret" }

// TestExtensions: outgoing hooks can add fields the server requires, and
// incoming hooks can drop messages before delivery.
func TestExtensions(t *testing.T) {
	subscribed := make(chan struct{})
	var once sync.Once
	var s *scripted
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		switch m.Channel {
		case client.ChannelHandshake:
			if m.Ext["auth"] != "t0k3n" {
				return 200, []reply{{"channel": m.Channel, "id": m.ID, "successful": false, "error": "401::auth required"}}
			}
			return 200, []reply{handshakeOK(m, "c1", nil)}
		case client.ChannelSubscribe:
			if m.Subscription[0] == "/public" {
				once.Do(func() { close(subscribed) })
			}
			return 200, []reply{ok(m, nil)}
		case client.ChannelConnect:
			if m.Advice != nil && s.await(r, subscribed) { // the first connect
				return 200, []reply{event("/secret", 1), event("/public", 2), ok(m, nil)}
			}
			s.hold(r)
			return 200, []reply{ok(m, nil)}
		}
		return 200, []reply{ok(m, nil)}
	})
	// Without the extension the handshake is refused.
	plain, err := client.NewClient(client.Config{URL: s.url(), Transports: []string{bayeux.TransportLongPolling}})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Handshake(ctxT(t)); err == nil || !strings.Contains(err.Error(), "auth required") {
		t.Fatalf("handshake without the extension: %v", err)
	}
	c, _ := newTestClient(t, s.url(), bayeux.TransportLongPolling, func(cfg *client.Config) {
		cfg.Extensions = []client.Extension{authExt{}}
	})
	ctx := ctxT(t)
	secret, public := newInbox("/secret"), newInbox("/public")
	if _, err := c.Subscribe(ctx, "/secret", secret.handler); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, "/public", public.handler); err != nil {
		t.Fatal(err)
	}
	if got := decodeN(t, public.next(t, ctx)); got != 2 {
		t.Fatalf("public got n=%d", got)
	}
	// /secret came first in the same batch and was delivered on the same
	// goroutine, so it would be buffered by now had it not been dropped.
	secret.empty(t)
}

// TestSubscribeWhileSessionExpired: a subscribe answered with "session
// unknown, re-handshake" waits for the re-handshake, is included in the
// re-subscription, and then receives.
func TestSubscribeWhileSessionExpired(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var (
				mu         sync.Mutex
				handshakes int
				expire     = make(chan struct{})
				once       sync.Once
				s          *scripted
			)
			expired := func(m *client.Message) reply {
				return reply{"channel": m.Channel, "id": m.ID, "successful": false,
					"error": "402::session_unknown", "advice": reply{"reconnect": "handshake", "interval": 0}}
			}
			s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
				var out []reply
				for _, m := range batch {
					switch {
					case m.Channel == client.ChannelHandshake:
						mu.Lock()
						handshakes++
						id := "c" + string(rune('0'+handshakes))
						mu.Unlock()
						out = append(out, handshakeOK(m, id, nil))
					case m.ClientID == "c1" && m.Channel == client.ChannelSubscribe:
						once.Do(func() { close(expire) })
						out = append(out, expired(m))
					case m.ClientID == "c1" && m.Channel == client.ChannelConnect:
						if m.Advice == nil && !s.await(r, expire) {
							return 200, "[]"
						}
						if m.Advice == nil {
							out = append(out, expired(m))
						} else {
							out = append(out, ok(m, nil))
						}
					case m.ClientID == "c2" && m.Channel == client.ChannelConnect && m.Advice != nil:
						out = append(out, ok(m, nil), event("/late", 7))
					case m.Channel == client.ChannelConnect:
						s.hold(r)
						out = append(out, ok(m, nil))
					default:
						out = append(out, ok(m, nil))
					}
				}
				return 200, out
			})
			c, log := newTestClient(t, s.url(), tr)
			ctx := ctxT(t)
			log.waitFor(t, ctx, 0, "connected", func(e stateEvent) bool { return e.s == client.StateConnected })
			box := newInbox("/late")
			if _, err := c.Subscribe(ctx, "/late", box.handler); err != nil {
				t.Fatalf("subscribe across the re-handshake: %v", err)
			}
			if c.ClientID() != "c2" {
				t.Fatalf("clientId %q, want c2", c.ClientID())
			}
			if got := decodeN(t, box.next(t, ctx)); got != 7 {
				t.Fatalf("got n=%d", got)
			}
		})
	}
}

// TestConnectIntervalAdvice answers the first /meta/connect with advice
// interval 300 ms and checks that the next connect does not arrive earlier
// than that after the reply was sent.
func TestConnectIntervalAdvice(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) { testConnectIntervalAdvice(t, tr) })
	}
}

// gapProbe measures the time between the server's reply to the mark-th
// request of a kind and the arrival of the next one.
type gapProbe struct {
	mark  int
	mu    sync.Mutex
	n     int
	at    time.Time
	gapCh chan time.Duration
}

func newGapProbe(mark int) *gapProbe {
	return &gapProbe{mark: mark, gapCh: make(chan time.Duration, 1)}
}

// hit counts one request and returns its number. The time of the mark-th is
// taken before its reply is written, so the measured gap can only be shorter
// than the real one.
func (g *gapProbe) hit() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	switch g.n {
	case g.mark:
		g.at = time.Now()
	case g.mark + 1:
		g.gapCh <- time.Since(g.at)
	}
	return g.n
}

// count is the number of requests so far.
func (g *gapProbe) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// atLeast fails t unless the next request came at least want after the mark-th
// reply.
func (g *gapProbe) atLeast(t *testing.T, want time.Duration, what string) {
	t.Helper()
	select {
	case gap := <-g.gapCh:
		if gap < want {
			t.Fatalf("%s came %v after the reply advising %v", what, gap, want)
		}
	case <-ctxT(t).Done():
		t.Fatalf("no %s", what)
	}
}

func testConnectIntervalAdvice(t *testing.T, tr string) {
	const interval = 300 * time.Millisecond
	connects := newGapProbe(1)
	var s *scripted
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		switch m.Channel {
		case client.ChannelHandshake:
			return 200, []reply{handshakeOK(m, "c1", nil)}
		case client.ChannelConnect:
			if connects.hit() == 1 {
				return 200, []reply{ok(m, reply{"advice": reply{"reconnect": "retry", "interval": interval.Milliseconds(), "timeout": 2000}})}
			}
			s.hold(r)
			return 200, "[]"
		}
		return 200, []reply{ok(m, nil)}
	})
	newTestClient(t, s.url(), tr)
	connects.atLeast(t, interval, "second connect")
}

// TestRehandshakeHonoursRefusalInterval: when the client re-handshakes on its
// own and the server refuses with an advised interval (a full broker answers
// 503::too_many_sessions with one), the next attempt waits at least that long,
// even though the client's own backoff is far shorter.
func TestRehandshakeHonoursRefusalInterval(t *testing.T) {
	const interval = 400 * time.Millisecond
	handshakes := newGapProbe(2)
	var s *scripted
	s = newScripted(t, func(r *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		switch m.Channel {
		case client.ChannelHandshake:
			switch handshakes.hit() {
			case 1:
				return 200, []reply{handshakeOK(m, "c1", nil)}
			case 2:
				return 200, []reply{{"channel": m.Channel, "id": m.ID, "successful": false, "error": "503::too_many_sessions",
					"advice": reply{"reconnect": "handshake", "interval": interval.Milliseconds()}}}
			}
			return 200, []reply{handshakeOK(m, "c3", nil)}
		case client.ChannelConnect:
			if handshakes.count() == 1 { // the session is gone: handshake again
				return 200, []reply{{"channel": m.Channel, "id": m.ID, "successful": false, "error": "402::session_unknown",
					"advice": reply{"reconnect": "handshake", "interval": 0}}}
			}
			s.hold(r)
			return 200, "[]"
		}
		return 200, []reply{ok(m, nil)}
	})
	newTestClient(t, s.url(), bayeux.TransportLongPolling, func(c *client.Config) {
		c.BackoffBase = time.Millisecond
	})
	handshakes.atLeast(t, interval, "handshake after the refusal")
}
