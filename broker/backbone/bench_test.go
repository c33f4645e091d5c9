package backbone

import (
	"sync/atomic"
	"testing"
	"time"
)

// benchFanout measures one publisher feeding one subscribing node: b.N publishes,
// timed until the last one has been delivered.
func benchFanout(b *testing.B, pub, sub Backbone, settleFn func()) {
	var got atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	sub.SetHandler(func(m Message) {
		if string(m.Data) == "probe" {
			return
		}
		if got.Add(1) == target {
			close(done)
		}
	})
	if err := sub.Subscribe("/bench/*"); err != nil {
		b.Fatal(err)
	}
	settleFn()
	data := []byte(`{"channel":"/bench/x","data":{"text":"hello, world"},"id":"123"}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := pub.Publish("/bench/x", data, ""); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("delivered %d of %d", got.Load(), b.N)
	}
	b.StopTimer()
}

func BenchmarkMemoryPublishDeliver(b *testing.B) {
	hub := NewMemoryHub()
	pub, _ := NewMemory(MemoryConfig{Hub: hub})
	sub, _ := NewMemory(MemoryConfig{Hub: hub})
	defer pub.Close()
	defer sub.Close()
	benchFanout(b, pub, sub, func() {})
}

func BenchmarkNATSPublishDeliver(b *testing.B) {
	s := startNATS(b, 0, nil)
	pub, err := NewNATS(NATSConfig{URL: s.ClientURL(), FailFast: true})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sub, err := NewNATS(NATSConfig{URL: s.ClientURL(), FailFast: true})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	benchFanout(b, pub, sub, func() {
		if err := sub.flush(); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkEncodeChannel(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		_ = channelSubject("cometd.c.ch.", "/chat/room-42/with space")
	}
}
