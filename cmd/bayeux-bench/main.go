// Command bayeux-bench drives load against any Bayeux server: N subscriber
// clients on M channels, publishers at a set rate or back-to-back, over
// websocket or long-polling. It prints a progress line each second to stderr
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
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	exit := 0
	defer func() {
		if exit != 0 {
			os.Exit(exit)
		}
	}()
	var o options
	flag.StringVar(&o.URL, "url", "", "Bayeux server endpoint, e.g. http://127.0.0.1:8080/cometd (required)")
	flag.StringVar(&o.Transport, "transport", "websocket", "websocket or long-polling")
	flag.IntVar(&o.Subscribers, "subscribers", 100, "number of subscriber clients")
	flag.IntVar(&o.Channels, "channels", 1, "number of channels; subscriber i listens on channel i mod channels")
	flag.IntVar(&o.Publishers, "publishers", 1, "number of publisher clients")
	flag.Float64Var(&o.Rate, "rate", 0, "total publishes per second across publishers; 0 = back-to-back")
	flag.IntVar(&o.Inflight, "inflight", 1, "concurrent unacknowledged publishes per publisher")
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "publishing phase length (max 1h)")
	flag.Int64Var(&o.Messages, "messages", 0, "stop after this many publishes; 0 = duration only")
	flag.IntVar(&o.Payload, "payload", 0, "padding bytes added to each message")
	flag.DurationVar(&o.Drain, "drain", 5*time.Second, "how long to wait for in-flight deliveries after publishing stops")
	flag.StringVar(&o.Prefix, "prefix", "/bench", "channel prefix")
	flag.DurationVar(&o.Progress, "progress", time.Second, "progress line period on stderr; 0 disables")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the bench process to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bayeux-bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if os.Getenv("GOGC") == "" {
		// The load generator allocates per delivered message; trading memory
		// for fewer GC cycles leaves more CPU for the server under test.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bayeux-bench:", err)
		exit = 1
		return
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(sum)
	if sum.Losses > 0 || sum.Duplicates > 0 {
		exit = 3
	}
}
