// Package testutil holds what the tests of several packages share: one way
// to wait for a condition.
package testutil

import (
	"context"
	"testing"
	"time"
)

// Eventually calls cond until it reports done and returns how long that
// took. When timeout passes first it fails t with what and the state cond
// last described. cond gets a context that ends at the deadline, for the
// calls it makes; a state it describes after the deadline cut it short is
// not kept. It is called again every Interval(timeout); it runs on the test's
// goroutine, so it may itself call t.Fatal.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (done bool, state string)) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(Interval(timeout))
	defer tick.Stop()
	last := "(nothing described)"
	for {
		done, state := cond(ctx)
		if done {
			return time.Since(start)
		}
		if ctx.Err() == nil || last == "(nothing described)" {
			if state != "" {
				last = state
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
			return time.Since(start)
		case <-tick.C:
		}
	}
}

// Interval is how often Eventually asks: a 400th of the timeout, between
// 10 ms and 1 s.
func Interval(timeout time.Duration) time.Duration {
	return min(max(timeout/400, 10*time.Millisecond), time.Second)
}
