package backbone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATS runs a real NATS server on 127.0.0.1 (port 0: a random one) until the
// test ends or it is shut down.
func startNATS(t testing.TB, port int, mod func(*server.Options)) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true}
	if mod != nil {
		mod(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(waitTimeout) {
		s.Shutdown()
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func natsPort(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }

func newNATS(t testing.TB, cfg NATSConfig) *NATS {
	t.Helper()
	n, err := NewNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func natsCluster(t *testing.T, n int) []node {
	s := startNATS(t, 0, nil)
	ns := make([]node, n)
	for i := range ns {
		ns[i] = newNATS(t, NATSConfig{URL: s.ClientURL(), Cluster: t.Name(), NodeID: fmt.Sprintf("nats-%d", i), FailFast: true})
	}
	return ns
}

func TestNATS(t *testing.T) { runSuite(t, natsCluster) }

// TestNATSInProcess runs the suite over in-process connections to an embedded
// server, as cmd/broker does when no NATS URL is configured.
func TestNATSInProcess(t *testing.T) {
	runSuite(t, func(t *testing.T, n int) []node {
		s := startNATS(t, 0, func(o *server.Options) { o.DontListen = true })
		ns := make([]node, n)
		for i := range ns {
			ns[i] = newNATS(t, NATSConfig{InProcess: s, NodeID: fmt.Sprint(i), FailFast: true})
		}
		return ns
	})
}

// waitCond polls cond until it holds or the wait times out.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestNATSRestart kills the NATS server and starts a new one on the same port: the
// nodes report unhealthy during the outage, reconnect by themselves, and their
// subscriptions (made once, before the outage) carry traffic again.
func TestNATSRestart(t *testing.T) {
	s := startNATS(t, 0, nil)
	port := natsPort(s)
	cfg := NATSConfig{URL: s.ClientURL(), ReconnectWait: 50 * time.Millisecond, FailFast: true}
	cfg.NodeID = "a"
	a := newNATS(t, cfg)
	cfg.NodeID = "b"
	b := newNATS(t, cfg)
	rec := newRecorder(b)
	mustSub(t, b, "/r/**")
	settle(t, a, rec, "/r/x")

	s.Shutdown()
	s.WaitForShutdown()
	waitCond(t, "a to notice the outage", func() bool { return a.Healthy() != nil })
	waitCond(t, "b to notice the outage", func() bool { return b.Healthy() != nil })

	// A node started and closed during the outage comes and goes cleanly.
	c := newNATS(t, NATSConfig{URL: s.ClientURL(), NodeID: "c", ReconnectWait: 50 * time.Millisecond})
	if c.Healthy() == nil {
		t.Error("a node started during the outage reports healthy")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	startNATS(t, port, nil)
	waitCond(t, "a to reconnect", func() bool { return a.Healthy() == nil })
	waitCond(t, "b to reconnect", func() bool { return b.Healthy() == nil })
	settle(t, a, rec, "/r/after")
	if st := b.Stats(); st.Reconnects == 0 {
		t.Errorf("reconnects = %d, want ≥ 1", st.Reconnects)
	}
	b.HandleRequests(func(_ context.Context, d []byte) ([]byte, error) { return d, nil })
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if got, err := a.Request(ctx, "b", []byte("ping")); err != nil || string(got) != "ping" {
		t.Errorf("request after restart = %q, %v", got, err)
	}
}

// TestNATSIsolation puts two clusters on one NATS server, with the same node IDs:
// neither sees the other's messages or requests.
func TestNATSIsolation(t *testing.T) {
	s := startNATS(t, 0, nil)
	mk := func(cluster, id string) *NATS {
		return newNATS(t, NATSConfig{URL: s.ClientURL(), Cluster: cluster, NodeID: id, FailFast: true})
	}
	a1, b1 := mk("one", "a"), mk("one", "b")
	a2, b2 := mk("two", "a"), mk("two", "b")
	r1, r2 := newRecorder(b1), newRecorder(b2)
	mustSub(t, b1, "/**")
	mustSub(t, b2, "/**")
	settle(t, a1, r1, "/x")
	settle(t, a2, r2, "/x")
	b1.HandleRequests(func(context.Context, []byte) ([]byte, error) { return []byte("one"), nil })
	b2.HandleRequests(func(context.Context, []byte) ([]byte, error) { return []byte("two"), nil })

	mustPub(t, a1, "/chat", "from-one")
	mustPub(t, a2, "/chat", "from-two")
	// Everything a2 published has reached b1's connection (if it were to) once both
	// connections have round-tripped to the server; a later message from a1 then
	// arrives behind it.
	for _, n := range []*NATS{a2, a1, b1, b2} {
		if err := n.flush(); err != nil {
			t.Fatal(err)
		}
	}
	mustPub(t, a1, "/chat", "end")
	mustPub(t, a2, "/chat", "end")
	m1 := r1.waitData(t, "end")
	m2 := r2.waitData(t, "end")
	if count(m1, "from-one") != 1 || count(m1, "from-two") != 0 {
		t.Errorf("cluster one received %v", summary(m1))
	}
	if count(m2, "from-two") != 1 || count(m2, "from-one") != 0 {
		t.Errorf("cluster two received %v", summary(m2))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, c := range []struct {
		from *NATS
		want string
	}{{a1, "one"}, {a2, "two"}} {
		if got, err := c.from.Request(ctx, "b", nil); err != nil || string(got) != c.want {
			t.Errorf("request to b = %q, %v; want %q", got, err, c.want)
		}
	}
}

func TestNATSConfigErrors(t *testing.T) {
	s := startNATS(t, 0, nil)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]NATSConfig{
		"no URL":            {},
		"bad prefix":        {URL: s.ClientURL(), SubjectPrefix: "a.*"},
		"cert without key":  {URL: s.ClientURL(), CertFile: "x"},
		"missing creds":     {URL: s.ClientURL(), CredsFile: filepath.Join(dir, "nope")},
		"missing token":     {URL: s.ClientURL(), TokenFile: filepath.Join(dir, "nope")},
		"empty token":       {URL: s.ClientURL(), TokenFile: empty},
		"missing CA":        {URL: s.ClientURL(), CAFile: filepath.Join(dir, "nope")},
		"unreachable, fast": {URL: "nats://127.0.0.1:1", FailFast: true},
		"control in node":   {URL: s.ClientURL(), NodeID: "a\nb"},
	} {
		if n, err := NewNATS(cfg); err == nil {
			n.Close()
			t.Errorf("%s: NewNATS succeeded", name)
		}
	}
}

// TestNATSToken connects to a server that requires a token, read from a file.
func TestNATSToken(t *testing.T) {
	s := startNATS(t, 0, func(o *server.Options) { o.Authorization = "s3cret" })
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewNATS(NATSConfig{URL: s.ClientURL(), FailFast: true}); err == nil {
		t.Error("connected without the token")
	}
	n := newNATS(t, NATSConfig{URL: s.ClientURL(), TokenFile: file, FailFast: true})
	if err := n.Healthy(); err != nil {
		t.Error(err)
	}
}

// TestNATSStartBeforeServer starts a node while no server listens: it reports
// unhealthy, then connects when the server appears, and its early subscription
// works.
func TestNATSStartBeforeServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	b := newNATS(t, NATSConfig{URL: url, NodeID: "b", ReconnectWait: 50 * time.Millisecond})
	if b.Healthy() == nil {
		t.Fatal("healthy with no server")
	}
	rec := newRecorder(b)
	mustSub(t, b, "/early")
	startNATS(t, port, nil)
	waitCond(t, "b to connect", func() bool { return b.Healthy() == nil })
	a := newNATS(t, NATSConfig{URL: url, NodeID: "a", FailFast: true})
	settle(t, a, rec, "/early")
}

// TestNATSInvalidEnvelope injects messages without a valid envelope on a channel
// subject: they are counted and dropped, and the node keeps working.
func TestNATSInvalidEnvelope(t *testing.T) {
	ns := natsCluster(t, 2)
	a, b := ns[0].(*NATS), ns[1].(*NATS)
	rec := newRecorder(b)
	mustSub(t, b, "/v/**")
	settle(t, a, rec, "/v/ok")
	if err := a.nc.Publish(b.chPrefix+"v.raw", []byte("no headers")); err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Publish(b.chPrefix+"v.bad_ZZ", []byte("bad token")); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", "e 1 2", "e x 2 o", "e 1 x o", " 1 2 o", "e 1 2 "} {
		m := &nats.Msg{Subject: b.chPrefix + "v.env", Data: []byte("bad envelope"), Header: nats.Header{}}
		m.Header.Set(HeaderEnvelope, env)
		if err := a.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	mustPub(t, a, "/v/ok", "after")
	msgs := rec.waitData(t, "after")
	if c := count(msgs, "no headers") + count(msgs, "bad token") + count(msgs, "bad envelope"); c != 0 {
		t.Errorf("%d invalid messages reached the handler", c)
	}
	if d := b.Stats().Dropped; d != 8 {
		t.Errorf("Dropped = %d, want 8", d)
	}
	// A node ID with spaces travels intact.
	c := newNATS(t, NATSConfig{URL: a.nc.ConnectedUrl(), Cluster: t.Name(), NodeID: "node with spaces", FailFast: true})
	mustPub(t, c, "/v/ok", "spaced")
	for _, m := range rec.waitData(t, "spaced") {
		if string(m.Data) == "spaced" && m.Origin != "node with spaces" {
			t.Errorf("origin = %q", m.Origin)
		}
	}
}

func TestNATSClosedRequests(t *testing.T) {
	ns := natsCluster(t, 2)
	a, b := ns[0], ns[1]
	b.HandleRequests(func(context.Context, []byte) ([]byte, error) { return nil, nil })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := a.Request(ctx, "nats-1", nil); !errors.Is(err, ErrNoNode) {
		t.Errorf("request to a closed node: %v, want ErrNoNode", err)
	}
	// A node answers its own requests without going through NATS.
	a.HandleRequests(func(context.Context, []byte) ([]byte, error) { return []byte("self"), nil })
	if got, err := a.Request(ctx, a.NodeID(), nil); err != nil || string(got) != "self" {
		t.Errorf("request to self = %q, %v", got, err)
	}
}
