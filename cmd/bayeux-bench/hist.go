package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram records durations in log-linear buckets of microseconds: 16
// sub-buckets per power of two, so a reported quantile is within ~6% of the
// true value. It is not safe for concurrent use; merge per-goroutine
// histograms instead.
type histogram struct {
	counts [64 * histSub]uint64
	n      uint64
	max    time.Duration
}

const histSubBits = 4
const histSub = 1 << histSubBits

func histBucket(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 - histSubBits // shift that keeps histSubBits+1 bits
	sub := (us >> uint(e)) & (histSub - 1)
	return (e+1)*histSub + int(sub)
}

// histLower returns the smallest value in microseconds that falls in bucket b.
func histLower(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	e := b/histSub - 1
	sub := uint64(b % histSub)
	return (histSub | sub) << uint(e)
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histBucket(uint64(d/time.Microsecond))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the q-quantile (0 < q <= 1), as the midpoint of its bucket.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLower(b), histLower(b+1)
			d := time.Duration((lo+hi)/2) * time.Microsecond
			if d > h.max {
				d = h.max
			}
			return d
		}
	}
	return h.max
}
