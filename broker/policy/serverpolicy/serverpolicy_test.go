package serverpolicy

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

const testWait = 15 * time.Second

var secret = []byte("serverpolicy-test-secret-of-at-least-32-bytes")

type msg = map[string]any

type broker struct {
	sec     *Security
	srv     *server.Server
	watcher *policy.Watcher
	url     string
	path    string
	revoked chan Revoked
}

// writeDoc compiles rules and writes them where the watcher reads.
// leeway nil means the default.
func writeDoc(t *testing.T, path string, anon bool, leeway *int, rules ...policy.Rule) {
	t.Helper()
	doc, errs := policy.Compile([]policy.SourcePolicy{{Name: "ns/p", Rules: rules}}, policy.ClusterSettings{
		Default: policy.Deny, AllowAnonymous: anon,
		Auth: policy.Auth{Algorithm: policy.HS256, Issuer: "idp", Audience: "chat", Keys: []policy.Key{{File: "secret"}},
			LeewaySeconds: leeway},
	})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	b, err := policy.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func newBroker(t *testing.T, anon bool, rules ...policy.Rule) *broker {
	t.Helper()
	return newBrokerLog(t, slog.New(slog.NewTextHandler(io.Discard, nil)), anon, rules...)
}

func newBrokerLog(t *testing.T, log *slog.Logger, anon bool, rules ...policy.Rule) *broker {
	t.Helper()
	return newBrokerLeeway(t, log, nil, anon, rules...)
}

func newBrokerLeeway(t *testing.T, log *slog.Logger, leeway *int, anon bool, rules ...policy.Rule) *broker {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.json")
	writeDoc(t, path, anon, leeway, rules...)
	w, err := policy.NewWatcher(policy.WatcherConfig{Path: path, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := New(Config{Source: w, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// Connects held briefly, so that clients send what they have often.
	srv, err := server.NewServer(server.Config{Security: sec, Logger: log, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{sec: sec, srv: srv, watcher: w, path: path, revoked: make(chan Revoked, 16)}
	sec.Attach(w, srv, func(r Revoked) { b.revoked <- r })
	mux := http.NewServeMux()
	mux.Handle("/cometd", srv.Handler())
	mux.Handle("/cometd/", srv.Handler())
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	b.url = hs.URL + "/cometd/"
	return b
}

func (b *broker) post(t *testing.T, batch ...msg) []msg {
	t.Helper()
	body, _ := json.Marshal(batch)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out []msg
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("reply %q: %v", raw, err)
	}
	return out
}

func token(t *testing.T, claims msg) string {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	c := msg{"sub": "alice", "iss": "idp", "aud": "chat", "exp": time.Now().Add(time.Hour).Unix(), "groups": []string{"staff"}}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	in := enc(msg{"alg": "HS256", "typ": "JWT"}) + "." + enc(c)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func handshakeMsg(ext msg) msg {
	m := msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}}
	if ext != nil {
		m["ext"] = ext
	}
	return m
}

// handshake returns the reply to a handshake carrying ext.
func (b *broker) handshake(t *testing.T, ext msg) msg {
	t.Helper()
	out := b.post(t, handshakeMsg(ext))
	if len(out) != 1 {
		t.Fatalf("handshake reply %v", out)
	}
	return out[0]
}

func (b *broker) login(t *testing.T, claims msg) string {
	t.Helper()
	r := b.handshake(t, msg{"auth": msg{"token": token(t, claims)}})
	if r["successful"] != true {
		t.Fatalf("handshake refused: %v", r)
	}
	id := r["clientId"].(string)
	if out := b.post(t, msg{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}); out[len(out)-1]["successful"] != true {
		t.Fatalf("first connect: %v", out)
	}
	return id
}

func (b *broker) subscribe(t *testing.T, id, ch string) msg {
	t.Helper()
	out := b.post(t, msg{"channel": "/meta/subscribe", "clientId": id, "subscription": ch})
	return out[0]
}

func (b *broker) publish(t *testing.T, id, ch string) msg {
	t.Helper()
	out := b.post(t, msg{"channel": ch, "clientId": id, "data": msg{"text": "hi"}})
	return out[0]
}

func allow(name string, acts []policy.Action, chans []string, principals ...string) policy.Rule {
	return policy.Rule{Name: name, Effect: policy.Allow, Actions: acts, Channels: chans, Principals: principals}
}

var (
	handshake = []policy.Action{policy.ActionHandshake}
	subPubCr  = []policy.Action{policy.ActionSubscribe, policy.ActionPublish, policy.ActionCreate}
)

func TestHandshakeAuthentication(t *testing.T) {
	b := newBroker(t, false, allow("join", handshake, nil, "authenticated"))
	cases := []struct {
		name string
		ext  msg
		ok   bool
	}{
		{"valid token", msg{"auth": msg{"token": token(t, nil)}}, true},
		{"no token, anonymous not allowed", nil, false},
		{"expired", msg{"auth": msg{"token": token(t, msg{"exp": time.Now().Add(-time.Hour).Unix()})}}, false},
		{"wrong audience", msg{"auth": msg{"token": token(t, msg{"aud": "billing"})}}, false},
		{"wrong issuer", msg{"auth": msg{"token": token(t, msg{"iss": "evil"})}}, false},
		{"alg none", msg{"auth": msg{"token": "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","exp":99999999999}`)) + "."}}, false},
		{"garbage token", msg{"auth": msg{"token": "not-a-jwt"}}, false},
		{"token not a string", msg{"auth": msg{"token": 42}}, false},
		{"auth without token", msg{"auth": msg{}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := b.handshake(t, c.ext)
			if ok := r["successful"] == true; ok != c.ok {
				t.Fatalf("handshake = %v, want successful=%v", r, c.ok)
			}
			if c.ok {
				ss := b.srv.Session(r["clientId"].(string))
				if ss == nil || IdentityOf(ss).Subject != "alice" || !IdentityOf(ss).Authenticated {
					t.Fatalf("identity not stored on the session")
				}
				return
			}
			if r["error"] != "403::handshake_denied" {
				t.Fatalf("error = %v, want 403::handshake_denied", r["error"])
			}
			if adv, _ := r["advice"].(msg); adv["reconnect"] != "none" {
				t.Fatalf("advice = %v, want reconnect none", r["advice"])
			}
		})
	}
}

func TestAnonymousHandshake(t *testing.T) {
	b := newBroker(t, true, allow("join", handshake, nil, "anonymous"), allow("pub", subPubCr, []string{"/public"}, "anonymous"))
	r := b.handshake(t, nil)
	if r["successful"] != true {
		t.Fatalf("anonymous handshake refused: %v", r)
	}
	id := r["clientId"].(string)
	if r := b.subscribe(t, id, "/public"); r["successful"] != true {
		t.Fatalf("anonymous subscribe: %v", r)
	}
	// A token makes the client "authenticated", which this policy does not let in.
	if r := b.handshake(t, msg{"auth": msg{"token": token(t, nil)}}); r["successful"] == true {
		t.Fatalf("authenticated client let in without a rule: %v", r)
	}
}

func TestChannelOperations(t *testing.T) {
	b := newBroker(t, false,
		allow("join", handshake, nil, "authenticated"),
		allow("public", subPubCr, []string{"/chat/public"}, "authenticated"),
		allow("own", subPubCr, []string{"/user/{sub}/**"}, "authenticated"))
	id := b.login(t, nil)
	cases := []struct {
		op, ch string
		ok     bool
		err    string
	}{
		{"subscribe", "/chat/public", true, ""},
		{"subscribe", "/chat/*", false, "403::"},
		{"subscribe", "/**", false, "403::"},
		{"subscribe", "/chat/private", false, "403::"},
		{"subscribe", "/user/alice/inbox", true, ""},
		{"subscribe", "/user/alice/**", true, ""},
		{"subscribe", "/user/bob/inbox", false, "403::"},
		{"subscribe", "/chat/%70ublic", false, "403::"},
		{"publish", "/chat/public", true, ""},
		{"publish", "/chat/private", false, "403::"},
		{"publish", "/user/alice/x", true, ""},
		{"publish", "/user/bob/x", false, "403::"},
	}
	for _, c := range cases {
		t.Run(c.op+" "+c.ch, func(t *testing.T) {
			var r msg
			if c.op == "subscribe" {
				r = b.subscribe(t, id, c.ch)
			} else {
				r = b.publish(t, id, c.ch)
			}
			if (r["successful"] == true) != c.ok {
				t.Fatalf("%s %s = %v, want successful=%v", c.op, c.ch, r, c.ok)
			}
			if !c.ok && !strings.HasPrefix(fmt.Sprint(r["error"]), c.err) {
				t.Fatalf("error = %v, want a %s error", r["error"], c.err)
			}
		})
	}
}

// The policy file changes while a client is connected: the new rules apply,
// the forbidden subscription is removed with a notice, and the session lives.
func TestReloadWhileConnected(t *testing.T) {
	b := newBroker(t, false,
		allow("join", handshake, nil, "authenticated"),
		allow("chat", subPubCr, []string{"/chat/**"}, "authenticated"))
	alice := b.login(t, nil)
	bob := b.login(t, msg{"sub": "bob"})
	for _, ch := range []string{"/chat/public", "/chat/private"} {
		if r := b.subscribe(t, alice, ch); r["successful"] != true {
			t.Fatalf("subscribe %s: %v", ch, r)
		}
	}
	oldVersion := b.watcher.Version()

	writeDoc(t, b.path, false, nil,
		allow("join", handshake, nil, "authenticated"),
		allow("chat", subPubCr, []string{"/chat/public"}, "authenticated"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.watcher.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	select {
	case r := <-b.revoked:
		if r.Session.ID() != alice || r.Channel != "/chat/private" {
			t.Fatalf("revoked %s %s, want alice /chat/private", r.Session.ID(), r.Channel)
		}
	case <-time.After(testWait):
		t.Fatal("no revocation after the policy changed")
	}
	if b.watcher.Version() == oldVersion {
		t.Fatal("version did not change")
	}
	// Check waits for a reload in progress (its callbacks run under the same
	// lock), so every revocation of this reload has been reported by now.
	if changed, err := b.watcher.Check(); changed || err != nil {
		t.Fatalf("second check: changed=%v err=%v", changed, err)
	}
	if len(b.revoked) != 0 {
		t.Fatalf("more revocations than expected: %v", <-b.revoked)
	}

	// The session survives, learns why, and keeps its allowed subscription.
	ss := b.srv.Session(alice)
	if ss == nil {
		t.Fatal("the session was dropped by the reload")
	}
	var subs []string
	for _, c := range ss.Subscriptions() {
		subs = append(subs, c.Name())
	}
	if strings.Join(subs, ",") != "/chat/public" {
		t.Fatalf("subscriptions after reload: %v", subs)
	}
	if r := b.publish(t, bob, "/chat/public"); r["successful"] != true {
		t.Fatalf("publish on the still-allowed channel: %v", r)
	}
	if r := b.publish(t, bob, "/chat/private"); r["successful"] == true {
		t.Fatalf("publish on the now-forbidden channel succeeded: %v", r)
	}
	out := b.post(t, msg{"channel": "/meta/connect", "clientId": alice, "connectionType": "long-polling"})
	var notice, chat bool
	for _, m := range out {
		switch m["channel"] {
		case NoticeChannel:
			d, _ := m["data"].(msg)
			notice = d["subscription"] == "/chat/private" && d["error"] == ErrSubscriptionRevoked && d["policyVersion"] == b.watcher.Version()
		case "/chat/public":
			chat = true
		case "/meta/connect":
			if m["successful"] != true {
				t.Fatalf("connect after reload failed: %v", m)
			}
		}
	}
	if !notice || !chat {
		t.Fatalf("after reload, connect delivered %v: want the revocation notice and the /chat/public message", out)
	}
	if r := b.subscribe(t, alice, "/chat/private"); r["successful"] == true {
		t.Fatalf("resubscribing to the forbidden channel succeeded: %v", r)
	}
}

// The CometD JavaScript client, over each transport, goes through a policy
// reload: it is told which subscription was revoked, keeps its session and its
// other subscription, and the new rules apply to it.
func TestReloadWithCometDClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is required: %v", err)
	}
	modules, err := filepath.Abs("../../../test/conformance/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "cometd", "cometd.js")); err != nil {
		t.Fatalf("the CometD npm client is required: %v", err)
	}
	for _, transport := range []string{"websocket", "long-polling"} {
		t.Run(transport, func(t *testing.T) {
			b := newBroker(t, false,
				allow("join", handshake, nil, "authenticated"),
				allow("chat", subPubCr, []string{"/chat/public", "/chat/private"}, "authenticated"))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "testdata/reload.mjs", modules, strings.TrimSuffix(b.url, "/"), transport,
				token(t, nil), token(t, msg{"exp": time.Now().Add(-time.Hour).Unix()}))
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			wdone := make(chan struct{})
			wctx, wcancel := context.WithCancel(ctx)
			go func() { b.watcher.Run(wctx); close(wdone) }()
			defer func() { wcancel(); <-wdone }()

			var last string
			for line := range lines {
				last = line
				if strings.Contains(line, `"event":"subscribed"`) {
					writeDoc(t, b.path, false, nil,
						allow("join", handshake, nil, "authenticated"),
						allow("chat", subPubCr, []string{"/chat/public"}, "authenticated"))
				}
			}
			werr := cmd.Wait()
			var res struct {
				OK    bool     `json:"ok"`
				Error string   `json:"error"`
				Steps []string `json:"steps"`
			}
			if err := json.Unmarshal([]byte(last), &res); err != nil || !res.OK || werr != nil {
				t.Fatalf("client run failed (%v): %s", werr, last)
			}
			if len(res.Steps) < 10 {
				t.Fatalf("client ran only %v", res.Steps)
			}
		})
	}
}

// A reload that bans a user ends that user's session; the others survive.
func TestReloadBansUser(t *testing.T) {
	rules := []policy.Rule{
		allow("join", handshake, nil, "authenticated"),
		allow("chat", subPubCr, []string{"/chat/**"}, "authenticated"),
	}
	b := newBroker(t, false, rules...)
	alice := b.login(t, nil)
	bob := b.login(t, msg{"sub": "bob"})
	writeDoc(t, b.path, false, nil, append(rules, policy.Rule{Name: "ban", Effect: policy.Deny, Actions: handshake, Principals: []string{"user:bob"}})...)
	if changed, err := b.watcher.Check(); !changed || err != nil {
		t.Fatalf("reload: changed=%v err=%v", changed, err)
	}
	select {
	case r := <-b.revoked:
		if r.Session.ID() != bob || r.Channel != "" || r.Decision.Rule != "ban" {
			t.Fatalf("revoked %+v, want bob's session by rule ban", r)
		}
	default:
		t.Fatal("bob's session was not revoked")
	}
	if b.srv.Session(bob) != nil || b.srv.Session(alice) == nil {
		t.Fatal("want bob's session gone and alice's alive")
	}
	out := b.post(t, msg{"channel": "/meta/connect", "clientId": bob, "connectionType": "long-polling"})
	if adv, _ := out[0]["advice"].(msg); out[0]["successful"] == true || adv["reconnect"] != "handshake" {
		t.Fatalf("bob's connect after the ban: %v", out)
	}
	if r := b.handshake(t, msg{"auth": msg{"token": token(t, msg{"sub": "bob"})}}); r["error"] != "403::handshake_denied" {
		t.Fatalf("bob's new handshake: %v", r)
	}
}

// TestDecodeIdentityRoundTrip: the identity a session carries survives its
// snapshot's JSON with its type and its claims' numbers.
func TestDecodeIdentityRoundTrip(t *testing.T) {
	want := policy.Identity{
		Subject: "alice", Groups: []string{"ops", "dev"}, Authenticated: true,
		Claims: map[string]any{"sub": "alice", "exp": json.Number("1893456000"), "tenant": map[string]any{"id": json.Number("7")}},
	}
	raw, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIdentity(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeIdentity = %#v, want %#v", got, want)
	}
	if _, err := DecodeIdentity(json.RawMessage(`{"Subject":`)); err == nil {
		t.Fatal("a truncated identity decoded")
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDenialLogsRateLimited: a client that repeats a forbidden publish gets
// every one refused and counted, but only logBurst log lines a second; the
// next line says how many were left out.
func TestDenialLogsRateLimited(t *testing.T) {
	var out syncBuffer
	b := newBrokerLog(t, slog.New(slog.NewTextHandler(&out, nil)), false,
		allow("join", handshake, nil, "authenticated"))
	now := time.Unix(1_000_000, 0)
	b.sec.opLog.now = func() time.Time { return now }
	id := b.login(t, nil)
	const n = 100
	batch := make([]msg, n)
	for i := range batch {
		batch[i] = msg{"channel": "/forbidden", "clientId": id, "data": i}
	}
	for _, r := range b.post(t, batch...) {
		if r["successful"] == true {
			t.Fatalf("a forbidden publish succeeded: %v", r)
		}
	}
	lines := strings.Count(out.String(), "operation denied")
	if lines != logBurst {
		t.Fatalf("%d denial lines for %d denials in one second, want %d", lines, n, logBurst)
	}
	if st := b.sec.Stats(); st.OperationsDenied != n || st.LogsSuppressed != n-logBurst {
		t.Fatalf("stats %+v, want %d denied, %d suppressed", st, n, n-logBurst)
	}
	now = now.Add(logWindow)
	b.publish(t, id, "/forbidden")
	if want := fmt.Sprintf("suppressed=%d", n-logBurst); !strings.Contains(out.String(), want) {
		t.Fatalf("the line after the quiet spell does not say %s:\n%s", want, out.String())
	}
}
