package server

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestDrainPace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n          int
		rate       float64
		left       time.Duration
		wantPeriod time.Duration
		wantBatch  int
	}{
		{"all at once", 50, -1, 0, 0, 50},
		{"nothing to release", 0, 10, 0, 0, 0},
		{"slow rate, no deadline", 100, 10, 0, 100 * time.Millisecond, 1},
		{"fast rate batches per 10ms tick", 1000, 1000, 0, 10 * time.Millisecond, 10},
		{"rate already fast enough for the deadline", 10, 10, 25 * time.Second, 100 * time.Millisecond, 1},
		// 100 sessions within 80% of 10s: 12.5/s, faster than the 1/s asked.
		{"deadline raises the rate", 100, 1, 10 * time.Second, 80 * time.Millisecond, 1},
		{"deadline raises the rate into batches", 10000, 1, 10 * time.Second, 10 * time.Millisecond, 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, b := drainPace(tc.n, tc.rate, tc.left)
			if p != tc.wantPeriod || b != tc.wantBatch {
				t.Fatalf("drainPace(%d, %v, %v) = %v, %d; want %v, %d", tc.n, tc.rate, tc.left, p, b, tc.wantPeriod, tc.wantBatch)
			}
		})
	}
}

// drainedCount is how many of ids the drain has released so far.
func (ts *testServer) drainedCount(ids []string) int {
	n := 0
	for _, id := range ids {
		if ss := ts.Session(id); ss != nil {
			ss.mu.Lock()
			if ss.drained {
				n++
			}
			ss.mu.Unlock()
		}
	}
	return n
}

func TestDrainReleasesHeldConnectsAtThePacedRate(t *testing.T) {
	ts := newTestServer(t, Config{DrainRate: 10})
	ticks := make(chan time.Time) // unbuffered: each send is one tick taken by the pacer
	periods := make(chan time.Duration, 4)
	ts.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		periods <- d
		return ticks, func() {}
	}
	const n = 4
	ids := make([]string, n)
	held := make([]<-chan result, n)
	for i := range ids {
		ids[i] = ts.connected(t)
		held[i] = ts.connectAsync(ids[i])
		ts.waitHeld(t, ids[i])
	}
	ts.Drain()
	select {
	case d := <-periods:
		if d != 100*time.Millisecond {
			t.Fatalf("drain ticker period %v, want 100ms (10 sessions/s)", d)
		}
	case <-time.After(testWait):
		t.Fatal("the drain started no ticker")
	}
	if r := ts.must(t, `[{"channel":"/meta/handshake"}]`)[0]; r["successful"] != false {
		t.Fatalf("handshake accepted while draining: %v", r)
	}
	answered := map[int]bool{}
	for k := 1; k <= n; k++ {
		// Nothing is released between ticks.
		if got := ts.drainedCount(ids); got != k-1 {
			t.Fatalf("before tick %d: %d sessions released, want %d", k, got, k-1)
		}
		for i := range held {
			if answered[i] {
				continue
			}
			select {
			case r := <-held[i]:
				t.Fatalf("connect %d answered before its tick %d: %v", i, k, r)
			default:
			}
		}
		select {
		case ticks <- time.Now():
		case <-time.After(testWait):
			t.Fatalf("the pacer did not take tick %d", k)
		}
		// Exactly one held connect is answered, with advice to retry elsewhere.
		got := -1
		deadline := time.After(testWait)
		for got < 0 {
			for i := range held {
				if answered[i] {
					continue
				}
				select {
				case r := <-held[i]:
					if r.err != nil || last(r.out)["successful"] != true || last(r.out)["advice"].(msg)["reconnect"] != "retry" {
						t.Fatalf("connect released at tick %d: %v %v", k, r.out, r.err)
					}
					got = i
				default:
				}
				if got >= 0 {
					break
				}
			}
			if got < 0 {
				select {
				case <-deadline:
					t.Fatalf("no connect answered after tick %d", k)
				case <-time.After(time.Millisecond):
				}
			}
		}
		answered[got] = true
		if c := ts.drainedCount(ids); c != k {
			t.Fatalf("after tick %d: %d sessions released, want %d", k, c, k)
		}
	}
	// A released session's next connect is answered at once.
	if out := ts.connect(t, ids[0]); last(out)["successful"] != true {
		t.Fatalf("connect after release: %v", out)
	}

	// Shutdown returns as soon as the last session is gone, well before its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	done := make(chan struct{})
	for _, id := range ids[1:] {
		ts.must(t, fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, id))
	}
	go func() {
		_ = ts.Shutdown(ctx)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Shutdown returned while a session was left")
	default:
	}
	ts.must(t, fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, ids[0]))
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatal("Shutdown did not return once the sessions were gone")
	}
}

func TestShutdownPacesWithinItsDeadline(t *testing.T) {
	ts := newTestServer(t, Config{DrainRate: 0.001})
	periods := make(chan time.Duration, 1)
	ts.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		periods <- d
		return nil, func() {} // never ticks: Shutdown ends at its deadline
	}
	for range 2 {
		ts.connected(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		_ = ts.Shutdown(ctx)
		close(done)
	}()
	select {
	case d := <-periods:
		// 2 sessions within 80% of at most 10s: one every 4s at the latest.
		if d > 4*time.Second || d < 3*time.Second {
			t.Fatalf("drain period %v under a 10s deadline, want about 4s", d)
		}
	case <-time.After(testWait):
		t.Fatal("no drain ticker")
	}
	cancel() // the grace period ends
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatal("Shutdown did not return at its deadline")
	}
	if n := ts.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions left after Shutdown", n)
	}
}
