// Command bench-peers runs cmd/bayeux-bench against the project's broker,
// Faye's Node server and the CometD project's Node server, side by side in
// one run, and writes the results: a Markdown table (docs/performance.md) and
// an SVG chart of server CPU per delivery (docs/performance.svg).
//
// Every server runs on loopback as a child of this command, which reads its
// CPU time and RSS from /proc (through bayeux-bench -server-pid). The regimes:
//
//   - sparse: one publisher, each publish awaiting its ack before the next,
//     200 subscribers on one channel; every message goes out on its own.
//   - batched: 4 publishers with 8 publishes in flight each; messages that
//     arrive together go out together.
//   - half: the batched load paced at half the rate the broker reached in the
//     batched regime on that transport, for the latency at half saturation.
//
// each over websocket and long-polling (the CometD Node server has no
// websocket). Then an idle run measures the broker's RSS per idle websocket
// session with one subscription. A run that loses or duplicates a message
// makes the command fail, after the results are written.
//
//	go run ./hack/bench-peers -md docs/performance.md -svg docs/performance.svg
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server names, as they appear in the table.
const (
	ours   = "cometd-operator"
	faye   = "faye"
	cometd = "cometd-nodejs-server"
)

const (
	wsTransport = "websocket"
	lpTransport = "long-polling"
)

// serverTimeout is the /meta/connect hold of every server, in seconds.
const serverTimeout = 10

type config struct {
	md, svg, jsonOut string
	root             string
	subscribers      int
	sparseMessages   int
	batchedDuration  time.Duration
	halfDuration     time.Duration
	idleSessions     int
	idleSettle       time.Duration
	servers          map[string]bool
	regimes          map[string]bool
	transports       map[string]bool
	brokerPprof      string
}

// result is one bayeux-bench run.
type result struct {
	Server    string  `json:"server"`
	Transport string  `json:"transport"`
	Regime    string  `json:"regime"`
	Rate      float64 `json:"rate,omitempty"`
	Summary   summary `json:"summary"`
	ExitCode  int     `json:"exit_code"`
	Err       string  `json:"error,omitempty"`
}

// summary is the part of bayeux-bench's JSON summary this command reads.
type summary struct {
	Published              int64                                `json:"published"`
	PublishedPerSec        float64                              `json:"published_per_sec"`
	PublishErrors          int64                                `json:"publish_errors"`
	Expected               int64                                `json:"expected"`
	Delivered              int64                                `json:"delivered"`
	DeliveredPerSec        float64                              `json:"delivered_per_sec"`
	Losses                 int64                                `json:"losses"`
	Duplicates             int64                                `json:"duplicates"`
	Unexpected             int64                                `json:"unexpected"`
	LatencyMs              struct{ P50, P90, P99, Max float64 } `json:"latency_ms"`
	BenchCPUSeconds        float64                              `json:"bench_cpu_seconds"`
	ServerCPUSeconds       float64                              `json:"server_cpu_seconds"`
	ServerCPUPerDeliveryUs float64                              `json:"server_cpu_us_per_delivery"`
	ServerRSSBytes         int64                                `json:"server_rss_bytes"`
	IdleSessions           int                                  `json:"idle_sessions"`
	ServerRSSBeforeBytes   int64                                `json:"server_rss_before_bytes"`
	BytesPerIdleSession    int64                                `json:"bytes_per_idle_session"`
	FirstError             string                               `json:"first_error"`
}

// report is everything one run of this command measured.
type report struct {
	Started   time.Time `json:"started"`
	Machine   string    `json:"machine"`
	Versions  string    `json:"versions"`
	Results   []result  `json:"results"`
	Idle      *result   `json:"idle,omitempty"`
	IdleLimit string    `json:"idle_limit,omitempty"`
	IdleFor   string    `json:"idle_for,omitempty"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers:", err)
		os.Exit(1)
	}
}

func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-peers", flag.ContinueOnError)
	var c config
	var servers, regimes, transports string
	fs.StringVar(&c.md, "md", "docs/performance.md", "Markdown report to write")
	fs.StringVar(&c.svg, "svg", "docs/performance.svg", "SVG chart to write")
	fs.StringVar(&c.jsonOut, "json", "", "also write every result as JSON here")
	fs.StringVar(&c.root, "root", ".", "repository root")
	fs.IntVar(&c.subscribers, "subscribers", 200, "subscribers on the one channel")
	fs.IntVar(&c.sparseMessages, "sparse-messages", 2000, "publishes of the sparse regime")
	fs.DurationVar(&c.batchedDuration, "batched-duration", 5*time.Second, "publishing phase of the batched regime")
	fs.DurationVar(&c.halfDuration, "half-duration", 5*time.Second, "publishing phase of the half-saturation regime")
	fs.IntVar(&c.idleSessions, "idle-sessions", 19000, "idle websocket sessions held on the broker; 0 skips the idle run")
	fs.DurationVar(&c.idleSettle, "idle-settle", 5*time.Second, "how long the idle sessions stay idle before the broker's RSS is read")
	fs.StringVar(&servers, "servers", ours+","+faye+","+cometd, "servers to run")
	fs.StringVar(&regimes, "regimes", "sparse,batched,half", "regimes to run")
	fs.StringVar(&transports, "transports", wsTransport+","+lpTransport, "transports to run")
	fs.StringVar(&c.brokerPprof, "broker-pprof", "", "serve the broker's pprof here (for profiling a run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.servers, c.regimes, c.transports = set(servers), set(regimes), set(transports)
	if c.subscribers < 1 || c.sparseMessages < 1 || c.idleSessions < 0 || c.idleSessions > 19500 {
		return errors.New("-subscribers and -sparse-messages must be positive, -idle-sessions in [0, 19500]")
	}
	root, err := filepath.Abs(c.root)
	if err != nil {
		return err
	}
	c.root = root

	work, err := os.MkdirTemp("", "bench-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Fprintln(os.Stderr, "building cmd/broker and cmd/bayeux-bench")
	bench := filepath.Join(work, "bayeux-bench")
	broker := filepath.Join(work, "broker")
	for pkg, out := range map[string]string{"./cmd/bayeux-bench": bench, "./cmd/broker": broker} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = c.root, os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", pkg, err)
		}
	}

	rep := &report{Started: time.Now().UTC(), Machine: machine(), Versions: versions(c.root)}
	var procs []*server
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	start := func(name string) (*server, error) {
		var s *server
		var err error
		switch name {
		case ours:
			s, err = startBroker(ctx, broker, work, c.brokerPprof)
		case faye:
			s, err = startNode(ctx, name, filepath.Join(c.root, "test/conformance"), "/faye",
				"client-faye-server.cjs", "0", strconv.Itoa(serverTimeout), "86400")
		case cometd:
			s, err = startNode(ctx, name, filepath.Join(c.root, "test/conformance"), "/cometd",
				"cometd-node-server.cjs", "0", strconv.Itoa(serverTimeout*1000))
		default:
			return nil, fmt.Errorf("unknown server %q", name)
		}
		if err == nil {
			procs = append(procs, s)
		}
		return s, err
	}
	running := map[string]*server{}
	var order []string
	for _, name := range []string{ours, faye, cometd} {
		if !c.servers[name] {
			continue
		}
		s, err := start(name)
		if err != nil {
			return err
		}
		running[name] = s
		order = append(order, name)
	}

	supports := func(server, transport string) bool { return server != cometd || transport == lpTransport }
	saturation := map[string]float64{} // transport → our published/s in the batched regime
	for _, regime := range []string{"sparse", "batched", "half"} {
		if !c.regimes[regime] {
			continue
		}
		for _, tr := range []string{wsTransport, lpTransport} {
			if !c.transports[tr] {
				continue
			}
			for _, name := range order {
				if !supports(name, tr) {
					continue
				}
				var flags []string
				rate := 0.0
				switch regime {
				case "sparse":
					flags = []string{"-publishers", "1", "-inflight", "1", "-messages", strconv.Itoa(c.sparseMessages), "-duration", "5m"}
				case "batched":
					flags = []string{"-publishers", "4", "-inflight", "8", "-duration", c.batchedDuration.String()}
				case "half":
					rate = saturation[tr] / 2
					if rate <= 0 {
						rate = 500 // no batched run of ours to take it from
					}
					flags = []string{"-publishers", "4", "-inflight", "8", "-duration", c.halfDuration.String(),
						"-rate", strconv.FormatFloat(rate, 'f', 0, 64)}
				}
				s := running[name]
				fmt.Fprintf(os.Stderr, "%s %s %s\n", regime, tr, name)
				r := runBench(ctx, bench, s, tr, c.subscribers, flags)
				r.Regime, r.Rate = regime, rate
				if regime == "batched" && name == ours {
					saturation[tr] = r.Summary.PublishedPerSec
				}
				rep.Results = append(rep.Results, r)
				fmt.Fprintln(os.Stderr, "  "+line(r))
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	for _, p := range procs {
		p.stop()
	}
	procs = nil

	if c.idleSessions > 0 && c.servers[ours] {
		// A broker of its own, so that the sessions of the runs above do not
		// count.
		s, err := start(ours)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "idle %s %d sessions\n", wsTransport, c.idleSessions)
		r := runBench(ctx, bench, s, wsTransport, c.idleSessions, []string{"-idle", c.idleSettle.String()})
		r.Regime = "idle"
		rep.Idle = &r
		rep.IdleLimit = fileLimit()
		rep.IdleFor = c.idleSettle.String()
		fmt.Fprintf(os.Stderr, "  %d sessions: RSS %.1f → %.1f MiB, %d bytes each %s\n", r.Summary.IdleSessions,
			mib(r.Summary.ServerRSSBeforeBytes), mib(r.Summary.ServerRSSBytes), r.Summary.BytesPerIdleSession, r.Err)
	}

	if err := writeFile(filepath.Join(c.root, c.md), markdown(rep, filepath.Base(c.svg))); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(c.root, c.svg), chart(rep)); err != nil {
		return err
	}
	if c.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := writeFile(c.jsonOut, b); err != nil {
			return err
		}
	}
	fmt.Print(string(table(rep)))
	var failed []string
	for _, r := range append(rep.Results, idleResults(rep)...) {
		if r.ExitCode != 0 || r.Err != "" {
			failed = append(failed, fmt.Sprintf("%s %s %s: exit %d %s", r.Regime, r.Transport, r.Server, r.ExitCode, r.Err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("runs failed (exit 3: messages lost or duplicated):\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}

func idleResults(rep *report) []result {
	if rep.Idle == nil {
		return nil
	}
	return []result{*rep.Idle}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func line(r result) string {
	s := r.Summary
	return fmt.Sprintf("delivered %d/%d (%.0f/s) lost %d dup %d p50 %.2fms p99 %.2fms server %.2f µs/delivery rss %.0f MiB bench cpu %.1fs %s",
		s.Delivered, s.Expected, s.DeliveredPerSec, s.Losses, s.Duplicates, s.LatencyMs.P50, s.LatencyMs.P99,
		s.ServerCPUPerDeliveryUs, mib(s.ServerRSSBytes), s.BenchCPUSeconds, r.Err)
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// runBench runs bayeux-bench once against s and decodes its summary.
func runBench(ctx context.Context, bench string, s *server, transport string, subscribers int, flags []string) result {
	r := result{Server: s.name, Transport: transport}
	args := append([]string{"-url", s.url, "-transport", transport, "-subscribers", strconv.Itoa(subscribers),
		"-channels", "1", "-progress", "0", "-drain", "30s", "-server-pid", strconv.Itoa(s.cmd.Process.Pid)}, flags...)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, bench, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
	case err != nil:
		r.ExitCode, r.Err = -1, err.Error()
		return r
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &r.Summary); jerr != nil {
		r.Err = strings.TrimSpace(lastLine(stderr.String()))
		if r.Err == "" {
			r.Err = jerr.Error()
		}
	}
	if r.Summary.PublishErrors > 0 && r.Err == "" {
		r.Err = fmt.Sprintf("%d publish errors, first: %s", r.Summary.PublishErrors, r.Summary.FirstError)
	}
	return r
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// server is one server process under test.
type server struct {
	name  string
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func (s *server) stop() {
	if s.stdin != nil {
		s.stdin.Close() // the Node servers exit when stdin closes
	}
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// firstLine starts cmd and returns the first line of r that match accepts,
// within a minute.
func firstLine(ctx context.Context, r io.Reader, match func(string) (string, bool)) (string, error) {
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			if v, ok := match(sc.Text()); ok && !sent {
				found <- v
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case v, ok := <-found:
		if !ok {
			return "", errors.New("exited before it was ready")
		}
		return v, nil
	case <-t.C:
		return "", errors.New("not ready within a minute")
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// startBroker starts cmd/broker (embedded NATS) on a free loopback port.
func startBroker(ctx context.Context, bin, work, pprofAddr string) (*server, error) {
	args := []string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json", "--node", "bench"}
	if pprofAddr != "" {
		args = append(args, "--pprof-listen", pprofAddr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "COMETD_MAX_CONNECTIONS_PER_IP=-1",
		"COMETD_TIMEOUT_MS="+strconv.Itoa(serverTimeout*1000))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: ours, cmd: cmd}
	addr, err := firstLine(ctx, stderr, func(l string) (string, bool) {
		var e struct{ Msg, Addr string }
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "serving bayeux" {
			return e.Addr, true
		}
		return "", false
	})
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("broker: %w", err)
	}
	s.url = "http://" + addr + "/cometd"
	return s, nil
}

// startNode starts one of the Node servers of test/conformance, which print
// {"port": N} when they listen.
func startNode(ctx context.Context, name, dir, mount, script string, args ...string) (*server, error) {
	cmd := exec.Command("node", append([]string{script}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w (run make npm-deps)", name, err)
	}
	s := &server{name: name, cmd: cmd, stdin: stdin}
	port, err := firstLine(ctx, stdout, func(l string) (string, bool) {
		var p struct{ Port int }
		if json.Unmarshal([]byte(l), &p) == nil && p.Port > 0 {
			return strconv.Itoa(p.Port), true
		}
		return "", false
	})
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s.url = "http://127.0.0.1:" + port + mount
	return s, nil
}

// machine describes where the figures come from.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("%d CPUs (%s), load average at start %s, %s/%s", runtime.NumCPU(), model, load, runtime.GOOS, runtime.GOARCH)
}

// versions names the software under test.
func versions(root string) string {
	node := "node ?"
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		node = "node " + strings.TrimSpace(string(out))
	}
	goVer := "go ?"
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVer = strings.TrimSpace(string(out))
	}
	pins := ""
	var pkg struct{ Dependencies map[string]string }
	if b, err := os.ReadFile(filepath.Join(root, "test/conformance/package.json")); err == nil && json.Unmarshal(b, &pkg) == nil {
		pins = fmt.Sprintf(", faye %s, cometd-nodejs-server %s", pkg.Dependencies["faye"], pkg.Dependencies["cometd-nodejs-server"])
	}
	return goVer + ", " + node + pins
}

func fileLimit() string {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return "?"
	}
	return strconv.FormatUint(rl.Cur, 10)
}
