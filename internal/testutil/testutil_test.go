package testutil

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeT records a failure instead of ending the test.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestEventuallyReturnsOnceDone(t *testing.T) {
	calls := 0
	ft := &fakeT{TB: t}
	Eventually(ft, time.Minute, "three calls", func(context.Context) (bool, string) {
		calls++
		return calls == 3, fmt.Sprintf("%d calls", calls)
	})
	if ft.failed != "" || calls != 3 {
		t.Fatalf("calls %d, failure %q; want 3 calls and no failure", calls, ft.failed)
	}
}

func TestEventuallyFailsWithTheLastState(t *testing.T) {
	calls := 0
	ft := &fakeT{TB: t}
	Eventually(ft, 50*time.Millisecond, "the impossible", func(ctx context.Context) (bool, string) {
		calls++
		if ctx.Err() != nil {
			return false, "cut short"
		}
		return false, fmt.Sprintf("call %d", calls)
	})
	if !strings.Contains(ft.failed, "the impossible") || !strings.Contains(ft.failed, "last state: call ") {
		t.Fatalf("failure %q: want what was awaited and the last state described before the deadline", ft.failed)
	}
	if calls < 2 {
		t.Fatalf("cond called %d times in 50ms, want it polled", calls)
	}
}

func TestInterval(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{time.Second, 10 * time.Millisecond},
		{20 * time.Second, 50 * time.Millisecond},
		{time.Hour, time.Second},
	} {
		if got := Interval(tc.timeout); got != tc.want {
			t.Errorf("Interval(%s) = %s, want %s", tc.timeout, got, tc.want)
		}
	}
}
