package main

import (
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<22; us += 1 + us/50 {
		b := histBucket(us)
		if b < prev {
			t.Fatalf("bucket(%d)=%d decreases (prev %d)", us, b, prev)
		}
		prev = b
		if lo, hi := histLower(b), histLower(b+1); us < lo || us >= hi {
			t.Fatalf("%dµs in bucket %d = [%d,%d)", us, b, lo, hi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}} {
		got := h.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.07 || diff > 0.07 {
			t.Errorf("q%.2f = %v, want %v ±7%%", c.q, got, c.want)
		}
	}
	if h.max != time.Second {
		t.Errorf("max %v", h.max)
	}
}
