package main

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/client"
)

func wireMsg(o *options, channel, p, s int) *client.Message {
	return &client.Message{Channel: o.channel(channel), Data: encodeData(p, s, time.Now().UnixNano(), "")}
}

// TestTallyCountsLossesDuplicatesUnexpected feeds one subscriber a duplicate,
// a gap and messages that are not its own, and checks each count.
func TestTallyCountsLossesDuplicatesUnexpected(t *testing.T) {
	o := &options{Channels: 2, Publishers: 2, Prefix: "/bench"}
	s := &subscriber{channel: 1, seen: make([]bitset, o.Publishers)}
	for _, m := range []*client.Message{
		wireMsg(o, 1, 0, 1),
		wireMsg(o, 1, 0, 3),
		wireMsg(o, 1, 0, 3), // duplicate
		wireMsg(o, 1, 0, 7), // 5 is missing: a loss
		wireMsg(o, 1, 1, 1), // publisher 1's 3 never comes: a loss
		wireMsg(o, 1, 0, 2), // sequence of channel 0: unexpected
		wireMsg(o, 1, 2, 1), // no publisher 2: unexpected
		wireMsg(o, 0, 0, 9), // another channel's name: unexpected
		{Channel: o.channel(1), Data: json.RawMessage(`"hello"`)}, // not bench data
	} {
		s.receive(m, o)
	}
	var acked0, acked1 bitset
	for _, seq := range []int{0, 1, 2, 3, 4, 5, 7} { // 0, 2, 4 are channel 0's
		acked0.set(seq)
	}
	acked1.set(1)
	acked1.set(3)
	var h histogram
	got := s.tally([]bitset{acked0, acked1}, o.Channels, &h)
	want := subTally{delivered: 4, dups: 1, unexpected: 4, losses: 2}
	if got != want {
		t.Fatalf("tally = %+v, want %+v", got, want)
	}
	if h.quantile(1) <= 0 {
		t.Fatalf("no latency merged: max %v", h.quantile(1))
	}
	// Sealed: a late delivery changes nothing.
	s.receive(wireMsg(o, 1, 0, 5), o)
	if d := s.delivered.Load(); d != 4 {
		t.Fatalf("delivered %d after tally, want 4", d)
	}
	if s.seen[0].has(5 / o.Channels) {
		t.Fatal("a delivery after tally was recorded")
	}
}

// TestTallyWhileHandlerRuns takes the tally while the delivery goroutine is
// still receiving, as happens when Disconnect times out; the race detector
// checks the two are synchronised.
func TestTallyWhileHandlerRuns(t *testing.T) {
	o := &options{Channels: 1, Publishers: 1, Prefix: "/bench"}
	s := &subscriber{channel: 0, seen: make([]bitset, 1)}
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20000 {
			s.receive(wireMsg(o, 0, 0, i%500), o) // duplicates after the first 500
			if i == 0 {
				close(started)
			}
		}
	}()
	<-started
	var acked bitset
	for i := range 500 {
		acked.set(i)
	}
	var h histogram
	got := s.tally([]bitset{acked}, o.Channels, &h)
	wg.Wait()
	if got.delivered+got.losses != 500 || got.delivered < 1 {
		t.Fatalf("tally %+v: delivered + losses must be the 500 acknowledged", got)
	}
}
