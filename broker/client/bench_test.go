package client_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/broker/client/clienttest"
)

// benchRoundTrip measures publish → acknowledgement → delivery back to a
// subscriber on the same server, one message at a time.
func benchRoundTrip(b *testing.B, url, transport string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sub, _ := newTestClient(b, url, transport)
	pub, _ := newTestClient(b, url, transport)
	got := make(chan struct{}, 1)
	if _, err := sub.Subscribe(ctx, "/bench/rt", func(*client.Message) { got <- struct{}{} }); err != nil {
		b.Fatal(err)
	}
	data := json.RawMessage(`{"n":1,"text":"hello, bayeux"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := pub.Publish(ctx, "/bench/rt", data); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
		case <-ctx.Done():
			b.Fatal("message not delivered")
		}
	}
}

func BenchmarkRoundTripFaye(b *testing.B) {
	f := clienttest.StartFaye(b, 0)
	for _, tr := range transports {
		b.Run(tr, func(b *testing.B) { benchRoundTrip(b, f.URL, tr) })
	}
}

func BenchmarkRoundTripBroker(b *testing.B) {
	br := startBroker(b, "127.0.0.1:0", false)
	for _, tr := range transports {
		b.Run(tr, func(b *testing.B) { benchRoundTrip(b, br.URL, tr) })
	}
}
