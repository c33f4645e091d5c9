package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
)

// BenchmarkDurabilityCost is issue 19's measurement of what durable sessions
// cost: one broker (not race-built) with its embedded NATS, without and then
// with durability (JetStream memory storage in the same process, so the
// broker's CPU includes the stream's), in one run, in two regimes over
// websocket: sparse (200 subscribers, one publisher waiting for each
// acknowledgement) and batched (4 publishers with 8 publishes in flight
// each). It reports delivered messages a second and the process's CPU per
// delivery (from /proc, through bayeux-bench -server-pid), and fails on any
// lost or duplicated message. Run it alone:
//
//	go test -run XXX -bench DurabilityCost -benchtime 1x ./test/cluster
func BenchmarkDurabilityCost(b *testing.B) {
	brokerBin := binary(b, "./cmd/broker", false)
	bench := binary(b, "./cmd/bayeux-bench", false)
	regimes := []struct {
		name string
		args []string
	}{
		{"sparse", []string{"-subscribers", "200", "-publishers", "1", "-inflight", "1", "-messages", "2000"}},
		{"batched", []string{"-subscribers", "200", "-publishers", "4", "-inflight", "8", "-duration", "5s"}},
	}
	for _, durable := range []bool{false, true} {
		env := []string{"COMETD_CLUSTER=bench"}
		if durable {
			env = append(env, "COMETD_DURABLE=true")
		}
		for _, rg := range regimes {
			b.Run(fmt.Sprintf("durable=%v/%s", durable, rg.name), func(b *testing.B) {
				br := brokertest.Start(b, brokerBin, fmt.Sprintf("bench-durable-%v", durable), []string{"--node", "b0"}, env...)
				(&broker{br}).waitReady(b, true)
				for range b.N {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					args := append([]string{"-url", br.URL, "-transport", "websocket", "-channels", "1", "-progress", "0",
						"-server-pid", fmt.Sprint(br.Cmd.Process.Pid)}, rg.args...)
					cmd := exec.CommandContext(ctx, bench, args...)
					var stderr strings.Builder
					cmd.Stderr = &stderr
					out, err := cmd.Output()
					cancel()
					if err != nil {
						b.Fatalf("bayeux-bench: %v\n%s\n%s", err, out, stderr.String())
					}
					var s struct {
						DeliveredPerSec float64                    `json:"delivered_per_sec"`
						Losses          int64                      `json:"losses"`
						Duplicates      int64                      `json:"duplicates"`
						CPUPerDelivery  float64                    `json:"server_cpu_us_per_delivery"`
						LatencyMs       struct{ P50, P99 float64 } `json:"latency_ms"`
					}
					if err := json.Unmarshal(out, &s); err != nil {
						b.Fatalf("bayeux-bench summary %q: %v", out, err)
					}
					if s.Losses != 0 || s.Duplicates != 0 {
						b.Errorf("%d lost, %d duplicated", s.Losses, s.Duplicates)
					}
					b.ReportMetric(s.DeliveredPerSec, "deliveries/s")
					b.ReportMetric(s.CPUPerDelivery, "server-µs/delivery")
					b.ReportMetric(s.LatencyMs.P50, "p50-ms")
					b.ReportMetric(s.LatencyMs.P99, "p99-ms")
				}
			})
		}
	}
}
