// Command bayeux-bench drives load against any Bayeux server: N subscriber
// clients on M channels, publishers at a set rate or back-to-back, over
// websocket or long-polling. With -server-pid it also reads the server's CPU
// time and resident set from /proc; with -idle it measures the memory an idle
// session costs instead. It prints a progress line each second to stderr
// and a JSON summary to stdout: delivered messages per second,
// publish-to-receive latency (p50, p90, p99, max), losses and duplicates.
//
// It only ever connects to the -url it is given, and every run is bounded by
// -duration (and optionally -messages).
//
//	bayeux-bench -url http://127.0.0.1:8080/cometd -subscribers 200 -channels 10 -publishers 4 -duration 10s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain is the whole command: it parses args, runs the benchmark, writes
// progress to stderr and the JSON summary to stdout, and returns the exit
// status: 0, 1 on an error, 2 on bad flags, 3 when messages were lost or
// duplicated.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bayeux-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.URL, "url", "", "Bayeux server endpoint, e.g. http://127.0.0.1:8080/cometd (required)")
	fs.StringVar(&o.Transport, "transport", "websocket", "websocket or long-polling")
	fs.IntVar(&o.Subscribers, "subscribers", 100, "number of subscriber clients")
	fs.IntVar(&o.Channels, "channels", 1, "number of channels; subscriber i listens on channel i mod channels")
	fs.IntVar(&o.Publishers, "publishers", 1, "number of publisher clients")
	fs.Float64Var(&o.Rate, "rate", 0, "total publishes per second across publishers; 0 = back-to-back")
	fs.IntVar(&o.Inflight, "inflight", 1, "concurrent unacknowledged publishes per publisher")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "publishing phase length (max 1h)")
	fs.Int64Var(&o.Messages, "messages", 0, "stop after this many publishes; 0 = duration only")
	fs.IntVar(&o.Payload, "payload", 0, "padding bytes added to each message")
	fs.DurationVar(&o.Drain, "drain", 5*time.Second, "how long to wait for in-flight deliveries after publishing stops")
	fs.StringVar(&o.Prefix, "prefix", "/bench", "channel prefix")
	fs.DurationVar(&o.Progress, "progress", time.Second, "progress line period on stderr; 0 disables")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "the server's process id on this machine: report its CPU per delivery and its RSS from /proc")
	fs.DurationVar(&o.Idle, "idle", 0, "idle run: connect and subscribe, publish nothing, and after this long report the server's RSS per session (needs -server-pid)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the bench process to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "bayeux-bench:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			fmt.Fprintln(stderr, "bayeux-bench:", err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if os.Getenv("GOGC") == "" {
		// The load generator allocates per delivered message; trading memory
		// for fewer GC cycles leaves more CPU for the server under test.
		debug.SetGCPercent(400)
	}
	sum, err := run(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bayeux-bench:", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		fmt.Fprintln(stderr, "bayeux-bench: writing the summary:", err)
		return 1
	}
	if sum.Losses > 0 || sum.Duplicates > 0 {
		return 3
	}
	return 0
}
