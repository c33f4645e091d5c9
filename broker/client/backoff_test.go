package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// TestBackoffGrowsWithJitter draws many delays for each failure count and
// checks each lies in [d/2, d], where d doubles per failure from BackoffBase
// up to BackoffMax, and that the draws spread over that range.
func TestBackoffGrowsWithJitter(t *testing.T) {
	const ms = time.Millisecond
	c, err := NewClient(Config{URL: "http://127.0.0.1:1/cometd", BackoffBase: 100 * ms, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dflt, err := NewClient(Config{URL: "http://127.0.0.1:1/cometd"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c      *Client
		n      int
		lo, hi time.Duration
	}{
		{c, 1, 50 * ms, 100 * ms},
		{c, 2, 100 * ms, 200 * ms},
		{c, 3, 200 * ms, 400 * ms},
		{c, 4, 400 * ms, 800 * ms},
		{c, 5, 500 * ms, 1000 * ms}, // capped
		{c, 6, 500 * ms, 1000 * ms},
		{c, 1 << 30, 500 * ms, 1000 * ms},
		{dflt, 1, 125 * ms, 250 * ms},            // documented defaults: 250 ms …
		{dflt, 100, 7500 * ms, 15 * time.Second}, // … up to 15 s
	} {
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 2000 {
			d := tc.c.backoff(tc.n)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tc.n, d, tc.lo, tc.hi)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Jitter: 2000 uniform draws all missing a quarter of the range
		// has probability (3/4)^2000.
		quarter := (tc.hi - tc.lo) / 4
		if lo > tc.lo+quarter || hi < tc.hi-quarter {
			t.Errorf("backoff(%d) draws span only [%v, %v] of [%v, %v]: no jitter", tc.n, lo, hi, tc.lo, tc.hi)
		}
	}
}

// TestBackoffResetsAfterSuccess drives the connect loop through three failed
// connects, a successful one, and one more failure, and records each pause:
// the backoff grows over the first three and starts again from BackoffBase
// after the success.
func TestBackoffResetsAfterSuccess(t *testing.T) {
	var (
		mu       sync.Mutex
		connects int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []*Message
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil || len(batch) == 0 {
			http.Error(w, "bad batch", http.StatusBadRequest)
			return
		}
		m := batch[0]
		w.Header().Set("Content-Type", "application/json")
		switch m.Channel {
		case ChannelHandshake:
			fmt.Fprintf(w, `[{"channel":"/meta/handshake","id":%q,"successful":true,"clientId":"c1","version":"1.0",`+
				`"supportedConnectionTypes":["long-polling"],"advice":{"reconnect":"retry","interval":0,"timeout":0}}]`, m.ID)
		case ChannelConnect:
			mu.Lock()
			connects++
			n := connects
			mu.Unlock()
			switch n {
			case 1, 2, 3, 5:
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
			case 4:
				fmt.Fprintf(w, `[{"channel":"/meta/connect","id":%q,"clientId":"c1","successful":true}]`, m.ID)
			default:
				fmt.Fprintf(w, `[{"channel":"/meta/connect","id":%q,"clientId":"c1","successful":false,`+
					`"error":"403::done","advice":{"reconnect":"none"}}]`, m.ID)
			}
		default:
			fmt.Fprintf(w, `[{"channel":%q,"id":%q,"successful":true}]`, m.Channel, m.ID)
		}
	}))
	defer srv.Close()

	const base = 40 * time.Millisecond
	c, err := NewClient(Config{
		URL: srv.URL + "/cometd", Transports: []string{bayeux.TransportLongPolling},
		BackoffBase: base, BackoffMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	c.onWait = func(d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connect loop did not reach the final reconnect none")
	}
	mu.Lock()
	defer mu.Unlock()
	want := [][2]time.Duration{
		{base / 2, base},     // failure 1
		{base, 2 * base},     // failure 2
		{2 * base, 4 * base}, // failure 3
		{0, 0},               // success: advised interval 0
		{base / 2, base},     // failure 1 again: reset
	}
	if len(waits) != len(want) {
		t.Fatalf("connect loop paused %v, want %d pauses", waits, len(want))
	}
	for i, w := range want {
		if waits[i] < w[0] || waits[i] > w[1] {
			t.Errorf("pause %d = %v, want in [%v, %v] (all: %v)", i+1, waits[i], w[0], w[1], waits)
		}
	}
}
