package backbone

import (
	"testing"
	"time"
)

// BenchmarkMemoryOffer measures the interest check of one incoming message on
// a node whose patterns do not match it: every pattern that could match the
// channel is looked up.
func BenchmarkMemoryOffer(b *testing.B) {
	m, err := NewMemory(MemoryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, p := range []string{"/other/**", "/chat/lobby/*", "/chat/room/41"} {
		if err := m.Subscribe(p); err != nil {
			b.Fatal(err)
		}
	}
	msg := Message{Channel: "/chat/room/42/x", Data: []byte(`{}`), Origin: "x"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.offer(msg, now)
	}
	m.mu.Lock()
	queued := len(m.queue)
	m.mu.Unlock()
	if queued != 0 {
		b.Fatalf("queued %d messages that match no pattern", queued)
	}
}
