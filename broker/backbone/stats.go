package backbone

import (
	"sync/atomic"
	"time"
)

// LagBuckets are the upper bounds of the lag histogram in Stats, in seconds, in the
// Prometheus convention (each bucket counts observations ≤ its bound; the implicit
// last bucket is +Inf).
var LagBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// Stats is a snapshot of a backbone's traffic counters.
type Stats struct {
	// MessagesOut and BytesOut count what this node published (once per Publish).
	MessagesOut, BytesOut uint64
	// MessagesIn and BytesIn count what this node received and handed to its Handler.
	MessagesIn, BytesIn uint64
	// Duplicates counts received messages dropped because they were already
	// delivered through another matching subscription.
	Duplicates uint64
	// Dropped counts received messages lost before the Handler: malformed
	// envelopes, and messages dropped because the delivery buffer was full.
	Dropped uint64
	// Reconnects counts reconnections to the backbone (always 0 for Memory).
	Reconnects uint64
	// LastLag is the publish-to-delivery delay of the last received message.
	LastLag time.Duration
	// LagCounts[i] counts received messages whose lag was ≤ LagBuckets[i] (not
	// cumulative: each message is counted in its first bucket only); the extra last
	// element counts those above every bound.
	LagCounts []uint64
	// LagSum is the total lag of all received messages, for a histogram's _sum.
	LagSum time.Duration
}

// StatsSource is an optional ability: backbones that count their traffic report it
// through Stats, for /metrics.
type StatsSource interface {
	Stats() Stats
}

// counters holds the live values behind Stats; every field is updated atomically.
type counters struct {
	msgsOut, bytesOut atomic.Uint64
	msgsIn, bytesIn   atomic.Uint64
	dups, reconnects  atomic.Uint64
	invalid           atomic.Uint64
	lastLag, lagSumNs atomic.Int64
	lagCounts         [16]atomic.Uint64 // len(LagBuckets)+1
}

func (c *counters) published(n int) {
	c.msgsOut.Add(1)
	c.bytesOut.Add(uint64(n))
}

// received records one delivered message of n bytes with the given lag.
func (c *counters) received(n int, lag time.Duration) {
	c.msgsIn.Add(1)
	c.bytesIn.Add(uint64(n))
	if lag < 0 {
		lag = 0 // clocks of two nodes may disagree slightly
	}
	c.lastLag.Store(int64(lag))
	c.lagSumNs.Add(int64(lag))
	s := lag.Seconds()
	i := 0
	for i < len(LagBuckets) && s > LagBuckets[i] {
		i++
	}
	c.lagCounts[i].Add(1)
}

func (c *counters) snapshot() Stats {
	s := Stats{
		MessagesOut: c.msgsOut.Load(),
		BytesOut:    c.bytesOut.Load(),
		MessagesIn:  c.msgsIn.Load(),
		BytesIn:     c.bytesIn.Load(),
		Duplicates:  c.dups.Load(),
		Reconnects:  c.reconnects.Load(),
		Dropped:     c.invalid.Load(),
		LastLag:     time.Duration(c.lastLag.Load()),
		LagSum:      time.Duration(c.lagSumNs.Load()),
		LagCounts:   make([]uint64, len(LagBuckets)+1),
	}
	for i := range s.LagCounts {
		s.LagCounts[i] = c.lagCounts[i].Load()
	}
	return s
}
