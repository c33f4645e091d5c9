// Package attack runs the real broker binary (cmd/broker, built without the
// race detector so that its memory is what production sees) against hostile
// clients on loopback, one test per attack: each asserts that the bound
// holds (memory growth under a stated figure, connections closed within the
// stated timeout), that /healthz stays green, and that a well-behaved client
// keeps working meanwhile.
//
// Attackers connect from 127.0.0.2 and up, the well-behaved client from
// 127.0.0.1, so that the per-address connection limit tells them apart as it
// would distinct clients on a network.
package attack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// waitTimeout bounds every wait for a condition.
const waitTimeout = 30 * time.Second

// startBroker runs cmd/broker (no race detector) with env.
func startBroker(t *testing.T, env ...string) *brokertest.Broker {
	t.Helper()
	bin := brokertest.Binary(t, "./cmd/broker", false)
	return brokertest.Start(t, bin, t.Name(), nil, append([]string{"COMETD_NODE=attack"}, env...)...)
}

// rss is the broker's resident set size in bytes.
func rss(t *testing.T, b *brokertest.Broker) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.Cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the broker's memory: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// peakRSS samples the broker's RSS every 50 ms until stop is closed, and
// returns the highest sample.
func peakRSS(t *testing.T, b *brokertest.Broker, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		peak := int64(0)
		for {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.Cmd.Process.Pid))
			if err == nil {
				for _, line := range strings.Split(string(data), "\n") {
					if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
						kb, _ := strconv.ParseInt(f[1], 10, 64)
						peak = max(peak, kb<<10)
					}
				}
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// dialer returns a dialer whose connections come from the loopback address src.
func dialer(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
}

// httpClient is an HTTP client whose connections come from src.
func httpClient(src string) *http.Client {
	return &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{DialContext: dialer(src).DialContext, MaxIdleConnsPerHost: 16},
	}
}

// metric reads one sample of the broker's /metrics (the first line whose
// name and labels start with name).
func metric(t *testing.T, b *brokertest.Broker, name string) float64 {
	t.Helper()
	resp, err := httpClient("127.0.0.1").Get(b.Admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, name)), 64)
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// waitFor waits, through testutil.Eventually, until cond holds, or fails the
// test after d; it returns how long that took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return testutil.Eventually(t, d, what, func(context.Context) (bool, string) { return cond(), "" })
}

type msg = map[string]any

// goodClient is a well-behaved long-polling client from 127.0.0.1.
type goodClient struct {
	b  *brokertest.Broker
	hc *http.Client
}

func (g *goodClient) post(body string) ([]msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.b.URL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	var out []msg
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("reply %s: %v", data, err)
	}
	return out, nil
}

// roundTrip handshakes, subscribes, publishes and receives its own message,
// then disconnects.
func (g *goodClient) roundTrip() error {
	out, err := g.post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	id, _ := out[0]["clientId"].(string)
	if out[0]["successful"] != true || id == "" {
		return fmt.Errorf("handshake: %v", out)
	}
	defer func() { _, _ = g.post(fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, id)) }()
	connect := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id)
	if _, err := g.post(connect); err != nil {
		return fmt.Errorf("first connect: %w", err)
	}
	out, err = g.post(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/good"},{"channel":"/good","clientId":%q,"data":"hello"}]`, id, id))
	if err != nil || len(out) != 2 || out[0]["successful"] != true || out[1]["successful"] != true {
		return fmt.Errorf("subscribe and publish: %v %v", out, err)
	}
	out, err = g.post(connect)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	for _, m := range out {
		if m["channel"] == "/good" && m["data"] == "hello" {
			return nil
		}
	}
	return fmt.Errorf("own message not delivered: %v", out)
}

// watch checks /healthz and the well-behaved client's round trip every
// 250 ms until stop is closed; it returns how many checks ran and every
// failure.
func watch(b *brokertest.Broker, stop <-chan struct{}) <-chan watchResult {
	out := make(chan watchResult, 1)
	go func() {
		g := &goodClient{b: b, hc: httpClient("127.0.0.1")}
		admin := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dialer("127.0.0.1").DialContext}}
		var r watchResult
		// Often enough that an attack the broker cuts short within a
		// quarter of a second still sees several checks.
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			r.checks++
			if resp, err := admin.Get(b.Admin + "/healthz"); err != nil {
				r.failures = append(r.failures, "healthz: "+err.Error())
			} else {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					r.failures = append(r.failures, "healthz: "+resp.Status)
				}
			}
			if err := g.roundTrip(); err != nil {
				r.failures = append(r.failures, "client: "+err.Error())
			}
			select {
			case <-stop:
				out <- r
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

type watchResult struct {
	checks   int
	failures []string
}

// check fails the test if the watch saw a failure or did not run.
func (r watchResult) check(t *testing.T) {
	t.Helper()
	if r.checks < 2 {
		t.Errorf("only %d health checks ran during the attack", r.checks)
	}
	if len(r.failures) > 0 {
		t.Errorf("%d of %d checks failed during the attack, first: %s", len(r.failures), r.checks, r.failures[0])
	}
}

// parallel runs f(i) for i in [0, n) on n goroutines and waits.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}

const mib = 1 << 20

// brokerConnsFrom counts the client-port sockets the broker process holds
// open with a peer at address ip (read from /proc: the kernel's TCP table
// and the broker's file descriptors), so a test sees the moment the broker
// closes a connection, whatever the client has read.
func brokerConnsFrom(t *testing.T, b *brokertest.Broker, ip string) int {
	t.Helper()
	_, portStr, _ := net.SplitHostPort(b.Addr)
	port, _ := strconv.Atoi(portStr)
	p := net.ParseIP(ip).To4()
	remote := fmt.Sprintf("%02X%02X%02X%02X:", p[3], p[2], p[1], p[0])
	local := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], local) && strings.HasPrefix(f[2], remote) {
			inodes["socket:["+f[9]+"]"] = true
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", b.Cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && inodes[l] {
			n++
		}
	}
	return n
}
