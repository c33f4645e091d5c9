package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const waitLimit = 15 * time.Second

func docBytes(t testing.TB, cluster ClusterSettings, rules ...Rule) []byte {
	t.Helper()
	doc, errs := Compile([]SourcePolicy{{Name: "ns/p", Rules: rules}}, cluster)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	b, err := Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeAtomic replaces path's content the way a careful writer does.
func writeAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	v1 := docBytes(t, ClusterSettings{AllowAnonymous: true}, allow("a", sub, []string{"/a"}, "*"))
	v2 := docBytes(t, ClusterSettings{AllowAnonymous: true}, allow("b", sub, []string{"/b"}, "*"))
	writeAtomic(t, path, v1)

	w, err := NewWatcher(WatcherConfig{Path: path, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan [2]string, 4)
	w.OnReload(func(old, new *Policy) {
		// The watcher's accessors are usable from a callback.
		if w.Err() != nil || w.Version() != new.Version() {
			t.Errorf("in callback: Err %v, Version %s, new %s", w.Err(), w.Version(), new.Version())
		}
		reloaded <- [2]string{old.Version(), new.Version()}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	first := w.Version()
	if !w.Policy().Evaluate(Anonymous, ActionSubscribe, "/a").Allowed || w.Policy().Evaluate(Anonymous, ActionSubscribe, "/b").Allowed {
		t.Fatal("initial rules not in force")
	}
	writeAtomic(t, path, v2)
	select {
	case vs := <-reloaded:
		if vs[0] != first || vs[1] == first || vs[1] != w.Version() {
			t.Fatalf("callback versions %v, first %s, now %s", vs, first, w.Version())
		}
	case <-time.After(waitLimit):
		t.Fatal("no reload after the file changed")
	}
	if w.Policy().Evaluate(Anonymous, ActionSubscribe, "/a").Allowed || !w.Policy().Evaluate(Anonymous, ActionSubscribe, "/b").Allowed {
		t.Fatal("new rules not in force")
	}
	// Rewriting the same content is not a change.
	writeAtomic(t, path, v2)
	if changed, err := w.Check(); changed || err != nil {
		t.Fatalf("same content: changed=%v err=%v", changed, err)
	}
}

func TestWatcherKeepsOldRulesOnBadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	good := docBytes(t, ClusterSettings{AllowAnonymous: true}, allow("a", sub, []string{"/a"}, "*"))
	writeAtomic(t, path, good)
	errs := make(chan error, 16)
	w, err := NewWatcher(WatcherConfig{Path: path, OnError: func(e error) { errs <- e }})
	if err != nil {
		t.Fatal(err)
	}
	version := w.Version()
	if err := os.WriteFile(filepath.Join(dir, "short"), []byte("too-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, content, want string
	}{
		{"truncated", string(good[:len(good)/2]), "parse"},
		{"invalid rule", strings.Replace(string(good), `"/a"`, `"/a/**/b"`, 1), "may only be the last segment"},
		{"future format", strings.Replace(string(good), APIVersion, "cometd.bayeux.dev/policy/v2", 1), "apiVersion"},
		{"missing key file", `{"apiVersion":"` + APIVersion + `","default":"deny","auth":{"algorithm":"HS256","keys":[{"file":"nope"}]}}`, "key file"},
		{"short secret", `{"apiVersion":"` + APIVersion + `","default":"deny","auth":{"algorithm":"HS256","keys":[{"file":"short"}]}}`, "at least 32"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			writeAtomic(t, path, []byte(b.content))
			changed, err := w.Check()
			if changed || err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("Check = %v, %v; want an error containing %q", changed, err, b.want)
			}
			select {
			case e := <-errs:
				if e.Error() != err.Error() {
					t.Fatalf("OnError got %v, Check returned %v", e, err)
				}
			default:
				t.Fatal("OnError not called")
			}
			// Checking the same bad content again does not report it again.
			if _, err := w.Check(); err == nil {
				t.Fatal("second check accepted bad content")
			}
			if len(errs) != 0 {
				t.Fatal("the same error was reported twice")
			}
			if w.Version() != version || !w.Policy().Evaluate(Anonymous, ActionSubscribe, "/a").Allowed {
				t.Fatal("the old rules were not kept")
			}
			if w.Err() == nil {
				t.Fatal("Err is nil while the file is refused")
			}
		})
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Check(); !errors.Is(err, os.ErrNotExist) || w.Version() != version {
		t.Fatalf("removed file: %v, version %s", err, w.Version())
	}
	writeAtomic(t, path, good)
	if changed, err := w.Check(); changed || err != nil || w.Err() != nil {
		t.Fatalf("restored file: changed=%v err=%v Err=%v", changed, err, w.Err())
	}
}

// Kubernetes updates a ConfigMap volume by pointing the "..data" symlink at a
// new timestamped directory; the file path itself is a symlink through it.
func TestWatcherFollowsConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	publish := func(name string, content []byte) {
		ts := filepath.Join(dir, name)
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "policy.json"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("..2026_11_23_20_00_00.1", docBytes(t, ClusterSettings{Default: Allow, AllowAnonymous: true}))
	if err := os.Symlink("..data/policy.json", filepath.Join(dir, "policy.json")); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(WatcherConfig{Path: filepath.Join(dir, "policy.json"), Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Policy().Evaluate(Anonymous, ActionPublish, "/x").Allowed {
		t.Fatal("initial default allow not in force")
	}
	reloaded := make(chan struct{}, 1)
	w.OnReload(func(_, _ *Policy) { reloaded <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	publish("..2026_11_23_20_01_00.2", docBytes(t, ClusterSettings{Default: Deny, AllowAnonymous: true}))
	select {
	case <-reloaded:
	case <-time.After(waitLimit):
		t.Fatal("symlink swap not noticed")
	}
	if w.Policy().Evaluate(Anonymous, ActionPublish, "/x").Allowed {
		t.Fatal("new default deny not in force")
	}
}

// Rotating the key Secret (same document, new key file content) reloads.
func TestWatcherReloadsRotatedKey(t *testing.T) {
	k := getKeys(t)
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "keys", "secret")
	if err := os.Mkdir(filepath.Dir(keyPath), 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keyPath, k.hmac)
	path := filepath.Join(dir, "policy.json")
	writeAtomic(t, path, docBytes(t, ClusterSettings{Default: Allow,
		Auth: Auth{Algorithm: HS256, Keys: []Key{{File: "keys/secret"}}}}))
	w, err := NewWatcher(WatcherConfig{Path: path, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	oldTok := sign(t, "HS256", k.hmac, nil, claims(nil))
	if id, err := w.Policy().Authenticate(oldTok); err != nil || id.Subject != "alice" {
		t.Fatalf("token with the first key: %v", err)
	}
	newSecret := []byte("a-rotated-secret-of-more-than-32-bytes!!")
	writeAtomic(t, keyPath, newSecret)
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("key rotation: changed=%v err=%v", changed, err)
	}
	if _, err := w.Policy().Authenticate(oldTok); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("old key still accepted: %v", err)
	}
	if _, err := w.Policy().Authenticate(sign(t, "HS256", newSecret, nil, claims(nil))); err != nil {
		t.Fatalf("new key refused: %v", err)
	}
}

// Evaluations running during reloads see a whole policy, old or new.
func TestWatcherConcurrentSwap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	docs := [][]byte{
		docBytes(t, ClusterSettings{AllowAnonymous: true}, allow("a", sub, []string{"/a"}, "*")),
		docBytes(t, ClusterSettings{AllowAnonymous: true}, allow("b", sub, []string{"/b"}, "*")),
	}
	writeAtomic(t, path, docs[0])
	w, err := NewWatcher(WatcherConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				p := w.Policy()
				a := p.Evaluate(Anonymous, ActionSubscribe, "/a").Allowed
				b := p.Evaluate(Anonymous, ActionSubscribe, "/b").Allowed
				if a == b {
					bad.Add(1)
				}
			}
		})
	}
	for i := 1; i <= 50; i++ {
		writeAtomic(t, path, docs[i%2])
		if changed, err := w.Check(); !changed || err != nil {
			t.Errorf("swap %d: changed=%v err=%v", i, changed, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d evaluations saw a mixed policy", bad.Load())
	}
}

func TestPolicyAuthenticate(t *testing.T) {
	k := getKeys(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), k.hmac, 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(cluster ClusterSettings, rules ...Rule) *Policy {
		doc, errs := Compile([]SourcePolicy{{Name: "ns/p", Rules: rules}}, cluster)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		p, err := NewPolicy(doc, PolicyConfig{BaseDir: dir, Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	auth := Auth{Algorithm: HS256, Audience: "chat", Keys: []Key{{File: "secret"}}}
	tok := sign(t, "HS256", k.hmac, nil, claims(nil))

	noAnon := load(ClusterSettings{Default: Allow, Auth: auth})
	if _, _, err := noAnon.Handshake(""); !errors.Is(err, ErrAnonymousNotAllowed) {
		t.Fatalf("anonymous: %v", err)
	}
	if id, d, err := noAnon.Handshake(tok); err != nil || !d.Allowed || id.Subject != "alice" {
		t.Fatalf("valid token: %+v %+v %v", id, d, err)
	}
	expired := sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()}))
	if _, d, err := noAnon.Handshake(expired); !errors.Is(err, ErrTokenExpired) || d.Allowed {
		t.Fatalf("expired: %+v %v", d, err)
	}
	banned := load(ClusterSettings{Default: Allow, Auth: auth}, deny("ban", []Action{ActionHandshake}, nil, "group:ops"))
	if _, d, err := banned.Handshake(tok); err != nil || d.Allowed || d.Rule != "ban" {
		t.Fatalf("banned group: %+v %v", d, err)
	}
	anonOnly := load(ClusterSettings{Default: Allow, AllowAnonymous: true})
	if id, d, err := anonOnly.Handshake(""); err != nil || !d.Allowed || id.Authenticated {
		t.Fatalf("anonymous allowed: %+v %+v %v", id, d, err)
	}
	if _, _, err := anonOnly.Handshake(tok); !errors.Is(err, ErrTokensNotAccepted) {
		t.Fatalf("token without auth config: %v", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.json"), nil); err == nil {
		t.Fatal("LoadFile of a missing file succeeded")
	}
}

func TestPolicyRecheckAfterReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	writeAtomic(t, path, docBytes(t, ClusterSettings{AllowAnonymous: true},
		allow("chat", sub, []string{"/chat/**"}, "*")))
	w, err := NewWatcher(WatcherConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var revoked []Revocation
	subs := []Subscription{
		{SessionID: "s1", Identity: Anonymous, Channel: "/chat/public"},
		{SessionID: "s1", Identity: Anonymous, Channel: "/chat/private"},
		{SessionID: "s2", Identity: alice, Channel: "/chat/*"},
		{SessionID: "s2", Identity: alice, Channel: "/chat/staff/x"},
	}
	if got := w.Policy().Recheck(subs); len(got) != 0 {
		t.Fatalf("first policy revokes %v", got)
	}
	w.OnReload(func(_, p *Policy) { revoked = p.Recheck(subs) })
	writeAtomic(t, path, docBytes(t, ClusterSettings{AllowAnonymous: true},
		allow("public", sub, []string{"/chat/public"}, "*"),
		allow("staff", sub, []string{"/chat/staff/**"}, "group:staff")))
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	var got []string
	for _, r := range revoked {
		got = append(got, r.SessionID+" "+r.Channel+" ("+r.Decision.Reason+")")
	}
	want := "s1 /chat/private (denied by default),s2 /chat/* (denied by default)"
	if strings.Join(got, ",") != want {
		t.Fatalf("revoked %q, want %q", strings.Join(got, ","), want)
	}
}

// The whole key Secret mounted as a directory (the kubelet's layout: each key
// a symlink through "..data"): keys are named by file, hidden entries are
// skipped, and a key added to the Secret is picked up without a new document.
func TestWatcherKeyDir(t *testing.T) {
	k := getKeys(t)
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "jwt")
	if err := os.Mkdir(keyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	generation := 0
	publish := func(files map[string][]byte) {
		generation++
		ts := filepath.Join(keyDir, "..gen"+string(rune('0'+generation)))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(keyDir, name)
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
					t.Fatal(err)
				}
			}
		}
		tmp := filepath.Join(keyDir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(keyDir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(map[string][]byte{"current.pem": k.rsaPEM})
	path := filepath.Join(dir, "policy.json")
	writeAtomic(t, path, docBytes(t, ClusterSettings{Default: Allow,
		Auth: Auth{Algorithm: RS256, Keys: []Key{{Dir: "jwt"}}}}))
	w, err := NewWatcher(WatcherConfig{Path: path, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	first := sign(t, "RS256", k.rsa, map[string]any{"kid": "current"}, claims(nil))
	second := sign(t, "RS256", k.rsa2, map[string]any{"kid": "next"}, claims(nil))
	if _, err := w.Policy().Authenticate(first); err != nil {
		t.Fatalf("key from the dir: %v", err)
	}
	if _, err := w.Policy().Authenticate(second); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("a key not yet in the Secret: %v", err)
	}
	publish(map[string][]byte{"current.pem": k.rsaPEM, "next.pem": k.rsaPKCS1PEM})
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("key added: changed=%v err=%v", changed, err)
	}
	for _, tok := range []string{first, second} {
		if _, err := w.Policy().Authenticate(tok); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	// A kid names exactly its file's key: the first token claiming "next" fails.
	if _, err := w.Policy().Authenticate(sign(t, "RS256", k.rsa, map[string]any{"kid": "next"}, claims(nil))); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("kid did not select the key: %v", err)
	}
	if _, err := LoadKeys(Auth{Algorithm: RS256, Keys: []Key{{Dir: t.TempDir()}}}, ""); err == nil {
		t.Fatal("an empty key dir was accepted")
	}
}
