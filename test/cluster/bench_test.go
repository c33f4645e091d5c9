package cluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	benchDuration    = flag.Duration("cluster.duration", 8*time.Second, "publishing phase of each BenchmarkClusterFanout run")
	benchSubscribers = flag.Int("cluster.subscribers", 60, "subscriber clients in BenchmarkClusterFanout")
	benchPublishers  = flag.Int("cluster.publishers", 3, "publisher clients in BenchmarkClusterFanout")
	benchRate        = flag.Float64("cluster.rate", 200, "publishes per second of the latency run (0 skips it)")
)

// tcpBalancer accepts connections and splices each to the next backend in turn,
// as a Kubernetes Service does: a websocket client stays on the broker its
// connection landed on.
type tcpBalancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Int64
	wg       sync.WaitGroup
}

func startBalancer(t testing.TB, backends []string) *tcpBalancer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &tcpBalancer{ln: ln, backends: backends}
	lb.wg.Add(1)
	go lb.serve()
	t.Cleanup(func() {
		ln.Close()
		lb.wg.Wait()
	})
	return lb
}

func (lb *tcpBalancer) serve() {
	defer lb.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := lb.ln.Accept()
		if err != nil {
			return
		}
		backend := lb.backends[int(lb.next.Add(1)-1)%len(lb.backends)]
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			s, err := net.DialTimeout("tcp", backend, 5*time.Second)
			if err != nil {
				return
			}
			defer s.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(s, c)
				_ = s.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, s)
			_ = c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// benchSummary holds the fields of bayeux-bench's JSON summary used here.
type benchSummary struct {
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	PublishedPerSec float64 `json:"published_per_sec"`
	Losses          int64   `json:"losses"`
	Duplicates      int64   `json:"duplicates"`
	LatencyMs       struct {
		P50, P90, P99, Max float64
	} `json:"latency_ms"`
}

func runBench(b *testing.B, bench, url string, rate float64) benchSummary {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), *benchDuration+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bench, "-url", url, "-transport", "websocket",
		"-subscribers", fmt.Sprint(*benchSubscribers), "-channels", "1",
		"-publishers", fmt.Sprint(*benchPublishers), "-inflight", "4", "-rate", fmt.Sprint(rate),
		"-duration", benchDuration.String(), "-progress", "0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bayeux-bench: %v\n%s\n%s", err, out, stderr.String())
	}
	var s benchSummary
	if err := json.Unmarshal(out, &s); err != nil {
		b.Fatalf("bayeux-bench summary %q: %v", out, err)
	}
	return s
}

// BenchmarkClusterFanout is issue 5's measurement: one channel with subscribers
// spread over all brokers (websocket clients through a per-connection round-robin
// balancer, like a Service), publishers likewise, with one broker and with three
// on one NATS. It reports the saturated delivery rate and the p99 latency at a
// fixed moderate publish rate. Run it alone, once per configuration:
//
//	go test -run XXX -bench ClusterFanout -benchtime 1x ./test/cluster
func BenchmarkClusterFanout(b *testing.B) {
	brokerBin := binary(b, "./cmd/broker", false)
	bench := binary(b, "./cmd/bayeux-bench", false)
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("brokers=%d", n), func(b *testing.B) {
			nats := startNATS(b)
			var addrs []string
			for i := range n {
				br := startBrokerBin(b, brokerBin, "bench", fmt.Sprintf("b%d", i), nats.url())
				addrs = append(addrs, strings.TrimSuffix(strings.TrimPrefix(br.URL, "http://"), "/cometd"))
			}
			lb := startBalancer(b, addrs)
			url := "http://" + lb.ln.Addr().String() + "/cometd"
			b.ResetTimer()
			for range b.N {
				sat := runBench(b, bench, url, 0)
				b.ReportMetric(sat.DeliveredPerSec, "deliveries/s")
				b.ReportMetric(sat.LatencyMs.P99, "sat-p99-ms")
				if sat.Losses != 0 || sat.Duplicates != 0 {
					b.Errorf("saturated run: %d losses, %d duplicates", sat.Losses, sat.Duplicates)
				}
				if *benchRate > 0 {
					lat := runBench(b, bench, url, *benchRate)
					b.ReportMetric(lat.LatencyMs.P50, "p50-ms")
					b.ReportMetric(lat.LatencyMs.P99, "p99-ms")
					if lat.Losses != 0 || lat.Duplicates != 0 {
						b.Errorf("rate run: %d losses, %d duplicates", lat.Losses, lat.Duplicates)
					}
				}
			}
		})
	}
}
