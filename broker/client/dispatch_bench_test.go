package client

import "testing"

// BenchmarkDispatchWildcard measures handing one message to the handles of a
// client that holds wildcard subscriptions, none of which match: every
// wildcard pattern of the channel is looked up.
func BenchmarkDispatchWildcard(b *testing.B) {
	c := &Client{subs: map[string][]*Subscription{}}
	n := 0
	s := &Subscription{c: c, channel: "/chat/room/42/x", h: func(*Message) { n++ }}
	s.active.Store(true)
	c.subs[s.channel] = []*Subscription{s}
	c.subs["/other/**"] = nil
	c.wild = 1
	m := &Message{Channel: "/chat/room/42/x"}
	b.ReportAllocs()
	for b.Loop() {
		c.dispatch(m)
	}
	if n == 0 {
		b.Fatal("not dispatched")
	}
}
