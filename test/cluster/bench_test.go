package cluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
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

var benchDrainSessions = flag.String("cluster.drain-sessions", "1000,10000", "comma-separated session counts of BenchmarkDrainHandover")

// BenchmarkDrainHandover is issue 13's drain measurement: three brokers (not
// race-built) on one NATS; N sessions, each subscribed to one of 10 channels,
// on the first broker; SIGTERM to it. It reports the time from the signal to
// the process's exit, which it reaches when every session has moved, and
// checks that the other two brokers hold all N sessions. Run it alone:
//
//	go test -run XXX -bench DrainHandover -benchtime 1x ./test/cluster
func BenchmarkDrainHandover(b *testing.B) {
	brokerBin := binary(b, "./cmd/broker", false)
	for _, f := range strings.Split(*benchDrainSessions, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n <= 0 {
			b.Fatalf("bad -cluster.drain-sessions entry %q", f)
		}
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				nats := startNATS(b)
				var bs []*broker
				for i := range 3 {
					bs = append(bs, &broker{brokertest.Start(b, brokerBin, fmt.Sprintf("drain/d%d", i),
						[]string{"--node", fmt.Sprintf("d%d", i), "--nats-url", nats.url()},
						"COMETD_CLUSTER=drain", "COMETD_DRAIN_GRACE_PERIOD_MS=60000", "COMETD_MAX_INTERVAL_MS=600000")})
				}
				for _, br := range bs {
					br.waitReady(b, true)
				}
				openSessions(b, bs[0].URL, n)
				if got := brokerSessions(b, bs[0]); got != int64(n) {
					b.Fatalf("the first broker holds %d sessions, want %d", got, n)
				}
				b.StartTimer()
				start := time.Now()
				bs[0].Stop(b)
				took := time.Since(start)
				b.StopTimer()
				moved := brokerSessions(b, bs[1]) + brokerSessions(b, bs[2])
				if moved != int64(n) {
					b.Fatalf("after the drain the other brokers hold %d sessions, want %d", moved, n)
				}
				if adopted := brokerStatus(b, bs[1]).Handover.Adopted + brokerStatus(b, bs[2]).Handover.Adopted; adopted != int64(n) {
					b.Fatalf("the other brokers report %d sessions adopted, want %d", adopted, n)
				}
				b.ReportMetric(took.Seconds(), "drain-s")
				b.ReportMetric(float64(n)/took.Seconds(), "sessions/s")
				for _, br := range bs[1:] {
					br.Kill(b) // their sessions have no client to move for
				}
				nats.stop()
			}
		})
	}
}

// openSessions handshakes n long-polling sessions on the broker at url and
// subscribes each to one of ten channels, 16 requests at a time.
func openSessions(b *testing.B, url string, n int) {
	b.Helper()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	post := func(body string) ([]map[string]any, error) {
		resp, err := hc.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out []map[string]any
		return out, json.NewDecoder(resp.Body).Decode(&out)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := atomic.Int64{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				out, err := post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`)
				if err != nil || len(out) != 1 || out[0]["successful"] != true {
					errs <- fmt.Errorf("handshake %d: %v %v", i, out, err)
					return
				}
				id := out[0]["clientId"].(string)
				out, err = post(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"},{"channel":"/meta/subscribe","clientId":%q,"subscription":"/drain/%d"}]`, id, id, i%10))
				if err != nil || len(out) != 2 || out[0]["successful"] != true || out[1]["successful"] != true {
					errs <- fmt.Errorf("connect and subscribe %d: %v %v", i, out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// adminStatus is the part of a broker's /status the benchmarks read.
type adminStatus struct {
	Sessions int64 `json:"sessions"`
	Handover struct {
		Adopted int64 `json:"adopted"`
	} `json:"handover"`
}

// brokerStatus reads a broker's /status.
func brokerStatus(b *testing.B, br *broker) adminStatus {
	b.Helper()
	resp, err := http.Get(br.Admin + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var st adminStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		b.Fatal(err)
	}
	return st
}

// brokerSessions reads the session count from a broker's /status.
func brokerSessions(b *testing.B, br *broker) int64 { return brokerStatus(b, br).Sessions }
