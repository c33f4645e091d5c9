package client_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/broker/server"
	"github.com/cometd-operator/cometd-operator/internal/brokertest"
)

// projectBroker is the project's Bayeux server (broker/server) on a real
// loopback listener.
type projectBroker struct {
	t    testing.TB
	addr string
	URL  string
	srv  *server.Server
	hs   *http.Server
	done chan struct{}
}

// startBroker serves broker/server at http://addr/cometd; addr
// "127.0.0.1:0" picks a free port. It is stopped when the test ends.
func startBroker(t testing.TB, addr string, ack bool) *projectBroker {
	return startBrokerConfig(t, addr, server.Config{Timeout: 5 * time.Second}, ack)
}

func startBrokerConfig(t testing.TB, addr string, cfg server.Config, ack bool) *projectBroker {
	t.Helper()
	srv, err := server.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ack {
		srv.AddExtension(server.AckExtension{})
	}
	// Go listeners set SO_REUSEADDR, so a restart can bind the port that
	// the previous instance just released.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		srv.Close()
		t.Fatalf("listen %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/cometd", srv.Handler())
	mux.Handle("/cometd/", srv.Handler())
	b := &projectBroker{t: t, addr: ln.Addr().String(), srv: srv, hs: &http.Server{Handler: mux}, done: make(chan struct{})}
	b.URL = "http://" + b.addr + "/cometd"
	go func() { defer close(b.done); b.hs.Serve(ln) }()
	t.Cleanup(b.stop)
	return b
}

// stop closes the server and its connections, as a crash would.
func (b *projectBroker) stop() {
	b.hs.Close() // no new connections first
	b.srv.Close()
	<-b.done
}

func TestBroker(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", false)
	runPeerSuite(t, b.URL)
}

func TestBrokerReconnectAfterRestart(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			b := startBroker(t, "127.0.0.1:0", false)
			testReconnectAfterRestart(t, b.URL, tr, func() {
				b.stop()
				startBroker(t, b.addr, false)
			})
		})
	}
}

// ackRecorder records the batch ids the server sends and the ones the
// client acknowledges.
type ackRecorder struct {
	mu        sync.Mutex
	lastBatch float64
	mismatch  error
	connects  int
}

func (a *ackRecorder) Outgoing(m *client.Message) bool {
	if m.Channel == client.ChannelConnect {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.connects++
		got, _ := m.Ext["ack"].(int64)
		if float64(got) != a.lastBatch && a.mismatch == nil {
			a.mismatch = errors.New("connect acknowledged a batch other than the last one received")
		}
	}
	return true
}

func (a *ackRecorder) Incoming(m *client.Message) bool {
	if m.Channel == client.ChannelConnect {
		if n, ok := m.Ext["ack"].(float64); ok {
			a.mu.Lock()
			a.lastBatch = n
			a.mu.Unlock()
		}
	}
	return true
}

// TestBrokerAckExtension: with the ack extension on, every connect
// acknowledges the last batch received, so the server never redelivers and
// each message arrives exactly once, in order.
func TestBrokerAckExtension(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", true)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := ctxT(t)
			rec := &ackRecorder{lastBatch: -1}
			sub, _ := newTestClient(t, b.URL, tr, func(c *client.Config) {
				c.AckExtension = true
				c.Extensions = []client.Extension{rec}
			})
			pub, _ := newTestClient(t, b.URL, tr)
			box := newInbox("acked")
			if _, err := sub.Subscribe(ctx, "/acked", box.handler); err != nil {
				t.Fatal(err)
			}
			const n = 50
			for i := range n {
				if err := pub.Publish(ctx, "/acked", payload{i}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				if got := decodeN(t, box.next(t, ctx)); got != i {
					t.Fatalf("message %d arrived as %d", i, got)
				}
			}
			// One more round trip: by the time it is delivered, any
			// redelivery of the first n would have been delivered first.
			if err := pub.Publish(ctx, "/acked", payload{n}); err != nil {
				t.Fatal(err)
			}
			if got := decodeN(t, box.next(t, ctx)); got != n {
				t.Fatalf("after the batch got n=%d, want %d (redelivery?)", got, n)
			}
			box.empty(t)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.mismatch != nil {
				t.Fatal(rec.mismatch)
			}
			if rec.lastBatch < 1 || rec.connects < 2 {
				t.Fatalf("ack extension not exercised: last batch %v, %d connects", rec.lastBatch, rec.connects)
			}
		})
	}
}

// TestNegotiation checks transport selection with the default preference
// (websocket, then long-polling) and explicit restrictions.
func TestNegotiation(t *testing.T) {
	full := startBroker(t, "127.0.0.1:0", false)
	lpOnly := startBrokerConfig(t, "127.0.0.1:0", server.Config{Timeout: 5 * time.Second, Transports: []string{"long-polling"}}, false)
	// Offers websocket in the handshake but refuses the upgrade.
	noUpgrade := newScripted(t, func(_ *http.Request, batch []*client.Message) (int, any) {
		m := batch[0]
		if m.Channel == client.ChannelHandshake {
			return 200, []reply{handshakeOK(m, "c1", nil)}
		}
		return 200, []reply{ok(m, nil)}
	})
	noUpgrade.refuseUpgrade.Store(true)
	cases := []struct {
		name       string
		url        string
		transports []string
		want       string // negotiated transport, or an error substring
		wantErr    bool
	}{
		{"default prefers websocket", full.URL, nil, bayeux.TransportWebSocket, false},
		{"long-polling only server", lpOnly.URL, nil, bayeux.TransportLongPolling, false},
		{"upgrade refused falls back", noUpgrade.url(), nil, bayeux.TransportLongPolling, false},
		{"explicit long-polling", full.URL, []string{bayeux.TransportLongPolling}, bayeux.TransportLongPolling, false},
		{"websocket only, server without it", lpOnly.URL, []string{bayeux.TransportWebSocket}, "websocket", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			c, err := client.NewClient(client.Config{URL: tc.url, Transports: tc.transports})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Disconnect(ctx)
			err = c.Handshake(ctx)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("handshake: %v, want an error mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Transport(); got != tc.want {
				t.Fatalf("negotiated %q, want %q", got, tc.want)
			}
			if err := c.Publish(ctx, "/neg", 1); err != nil {
				t.Fatalf("publish over %s: %v", tc.want, err)
			}
		})
	}
}

// TestBrokerBinary runs the peer suite and the restart test against the
// cmd/broker binary itself (with its embedded NATS backbone).
func TestBrokerBinary(t *testing.T) {
	bin := brokertest.Binary(t, "./cmd/broker", false)
	args := []string{"--node", "clienttest"}
	b := brokertest.Start(t, bin, "broker", args)
	runPeerSuite(t, b.URL)
	t.Run("ReconnectAfterRestart", func(t *testing.T) {
		for _, tr := range transports {
			t.Run(tr, func(t *testing.T) {
				b := brokertest.Start(t, bin, "broker", args)
				testReconnectAfterRestart(t, b.URL, tr, func() {
					b.Kill(t)
					brokertest.Start(t, bin, "broker (restarted)", append([]string{"--listen", b.Addr}, args...))
				})
			})
		}
	})
}

// TestConcurrentUse drives one client from many goroutines at once
// (publishing, subscribing and unsubscribing) under the race detector: every
// publish is acknowledged and the steady subscription gets every message
// exactly once.
func TestConcurrentUse(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", false)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := ctxT(t)
			c, _ := newTestClient(t, b.URL, tr)
			const workers, each = 8, 25
			var mu sync.Mutex
			seen := map[int]int{}
			done := make(chan struct{})
			if _, err := c.Subscribe(ctx, "/load/**", func(m *client.Message) {
				mu.Lock()
				defer mu.Unlock()
				seen[decodeN(t, m)]++
				if len(seen) == workers*each {
					close(done)
				}
			}); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, workers*2)
			for w := range workers {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := range each {
						if err := c.Publish(ctx, "/load/w", payload{w*each + i}); err != nil {
							errs <- err
							return
						}
					}
				}()
				go func() { // churn other subscriptions meanwhile
					defer wg.Done()
					for range 5 {
						s, err := c.Subscribe(ctx, "/churn/*", func(*client.Message) {})
						if err != nil {
							errs <- err
							return
						}
						if err := s.Unsubscribe(ctx); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-ctx.Done():
				mu.Lock()
				t.Fatalf("received %d of %d distinct messages", len(seen), workers*each)
			}
			mu.Lock()
			defer mu.Unlock()
			for n, k := range seen {
				if k != 1 {
					t.Fatalf("message %d delivered %d times", n, k)
				}
			}
		})
	}
}
