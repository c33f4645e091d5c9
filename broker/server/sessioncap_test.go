package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

const hsBody = `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`

// refusedForCap fails t unless out is the refusal of a handshake at the
// session cap: 503::too_many_sessions with advice to handshake again after
// fullInterval plus at most fullJitter.
func refusedForCap(t *testing.T, out []msg) {
	t.Helper()
	if len(out) != 1 || out[0]["successful"] != false || out[0]["error"] != errTooManySessions {
		t.Fatalf("handshake past the cap: %v, want 503::too_many_sessions", out)
	}
	if id, ok := out[0]["clientId"]; ok && id != "" {
		t.Errorf("refused handshake carries clientId %v", id)
	}
	advice, _ := out[0]["advice"].(map[string]any)
	interval, _ := advice["interval"].(float64)
	lo, hi := float64(fullInterval.Milliseconds()), float64((fullInterval + fullJitter).Milliseconds())
	if advice["reconnect"] != bayeux.ReconnectHandshake || interval < lo || interval >= hi {
		t.Errorf("advice %v, want reconnect handshake with an interval in [%v, %v)", advice, lo, hi)
	}
}

// TestMaxSessions: with MaxSessions remote sessions live, a handshake is
// refused with 503::too_many_sessions and handshake advice, and counted;
// LocalSessions take no slot; once a session disconnects or expires, a
// handshake succeeds again.
func TestMaxSessions(t *testing.T) {
	tests := []struct {
		name string
		free func(t *testing.T, ts *testServer, id string)
	}{
		{"disconnect", func(t *testing.T, ts *testServer, id string) {
			out := ts.must(t, fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, id))
			if len(out) != 1 || out[0]["successful"] != true {
				t.Fatalf("disconnect: %v", out)
			}
		}},
		{"expiry", func(t *testing.T, ts *testServer, id string) {
			// The first session never connects: it expires after MaxInterval.
			waitFor(t, "the first session to expire", func() bool { return ts.Session(id) == nil })
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{MaxSessions: 2}
			if tc.name == "expiry" {
				cfg.MaxInterval = 2 * time.Second
			}
			ts := newTestServer(t, cfg)
			for i := range 3 {
				l := ts.NewLocalSession(fmt.Sprintf("local-%d", i))
				if err := l.Handshake(); err != nil {
					t.Fatal(err)
				}
			}
			// Held connects keep the second and third sessions from expiring.
			first := ts.handshake(t)
			second := ts.connected(t)
			ts.connectAsync(second)
			ts.waitHeld(t, second)
			refusedForCap(t, ts.must(t, hsBody))
			refusedForCap(t, ts.must(t, hsBody))
			if st := ts.Stats(); st.HandshakesRefused != 2 || st.Sessions != 5 {
				t.Errorf("stats after two refusals: %+v, want HandshakesRefused 2 and Sessions 5", st)
			}

			tc.free(t, ts, first)
			third := ts.connected(t)
			ts.connectAsync(third)
			ts.waitHeld(t, third)
			refusedForCap(t, ts.must(t, hsBody))
			if ts.Session(second) == nil || ts.Session(third) == nil {
				t.Error("a live session was lost")
			}
			if got := ts.Stats().HandshakesRefused; got != 3 {
				t.Errorf("HandshakesRefused = %d, want 3", got)
			}
		})
	}
}

// TestMaxSessionsFailedHandshakeFreesSlot: a handshake that takes a slot and
// is then denied by the security policy gives the slot back.
func TestMaxSessionsFailedHandshakeFreesSlot(t *testing.T) {
	var deny atomic.Bool
	deny.Store(true)
	ts := newTestServer(t, Config{MaxSessions: 1, Security: denyHandshakes{deny: &deny}})
	for range 3 {
		out := ts.must(t, hsBody)
		if len(out) != 1 || out[0]["error"] != bayeux.ErrHandshakeDenied {
			t.Fatalf("denied handshake: %v", out)
		}
	}
	deny.Store(false)
	ts.handshake(t)
	refusedForCap(t, ts.must(t, hsBody))
}

// denyHandshakes refuses every handshake while deny is set.
type denyHandshakes struct {
	DefaultSecurityPolicy
	deny *atomic.Bool
}

func (d denyHandshakes) CanHandshake(*Server, *ServerSession, *ServerMessage) bool {
	return !d.deny.Load()
}

// TestMaxSessionsConcurrent: handshakes racing for the last slots never
// admit more than MaxSessions sessions, neither in a burst (exactly the cap
// succeeds) nor while other sessions disconnect and free slots; the slots all
// come back at the end.
func TestMaxSessionsConcurrent(t *testing.T) {
	const limit, workers = 8, 32
	s, err := NewServer(Config{MaxSessions: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var peak atomic.Int64
	s.AddListener(ServerListener{SessionAdded: func(*ServerSession, *ServerMessage) {
		n := s.Stats().Sessions
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
	}})
	handshake := func() string {
		res := s.process([]*bayeux.Mutable{{Channel: bayeux.MetaHandshake, Version: "1.0",
			SupportedConnectionTypes: []string{"long-polling"}}}, reqInfo{transport: "long-polling"})
		r := res.replies[0].m
		if r.Successful == bayeux.True {
			return r.ClientID
		}
		if r.Error != errTooManySessions {
			t.Errorf("handshake failed with %q", r.Error)
		}
		return ""
	}
	run := func(body func()) {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				<-start
				body()
			})
		}
		close(start)
		wg.Wait()
	}

	// A burst: exactly limit handshakes succeed.
	var mu sync.Mutex
	var ids []string
	run(func() {
		if id := handshake(); id != "" {
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	})
	if len(ids) != limit {
		t.Fatalf("%d of %d concurrent handshakes succeeded, want %d", len(ids), workers, limit)
	}
	if st := s.Stats(); st.Sessions != limit || st.HandshakesRefused != workers-limit {
		t.Fatalf("stats after the burst: %+v", st)
	}
	for _, id := range ids {
		s.Session(id).Disconnect()
	}

	// Churn: every worker handshakes and disconnects, again and again.
	var admitted atomic.Int64
	run(func() {
		for range 50 {
			if id := handshake(); id != "" {
				admitted.Add(1)
				if ss := s.Session(id); ss != nil {
					ss.Disconnect()
				}
			}
		}
	})
	if p := peak.Load(); p > limit {
		t.Errorf("%d sessions were live at once, cap %d", p, limit)
	}
	if admitted.Load() < limit {
		t.Errorf("only %d handshakes succeeded during churn", admitted.Load())
	}
	if n, slots := s.Stats().Sessions, s.stats.slots.Load(); n != 0 || slots != 0 {
		t.Fatalf("after churn: %d sessions, %d slots taken, want 0 and 0", n, slots)
	}
	for range limit {
		if handshake() == "" {
			t.Fatal("a slot was lost during churn")
		}
	}
}

// BenchmarkHandshakeDisconnect measures a handshake and a disconnect with no
// session cap and with one (the slot's compare-and-swap), and a handshake
// refused at the cap.
func BenchmarkHandshakeDisconnect(b *testing.B) {
	hs := func() *bayeux.Mutable {
		return &bayeux.Mutable{Channel: bayeux.MetaHandshake, Version: "1.0", SupportedConnectionTypes: []string{"long-polling"}}
	}
	ri := reqInfo{transport: "long-polling"}
	for _, tc := range []struct {
		name  string
		limit int
	}{{"nolimit", 0}, {"capped", 1 << 20}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := NewServer(Config{MaxSessions: tc.limit})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ReportAllocs()
			for b.Loop() {
				r := s.process([]*bayeux.Mutable{hs()}, ri).replies[0].m
				s.Session(r.ClientID).Disconnect()
			}
		})
	}
	b.Run("refused", func(b *testing.B) {
		s, err := NewServer(Config{MaxSessions: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		s.process([]*bayeux.Mutable{hs()}, ri)
		b.ReportAllocs()
		for b.Loop() {
			if r := s.process([]*bayeux.Mutable{hs()}, ri).replies[0].m; r.Error != errTooManySessions {
				b.Fatalf("reply %+v", r)
			}
		}
	})
}
