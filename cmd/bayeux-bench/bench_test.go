package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/client/clienttest"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// checkCoherent asserts the summary adds up: every acknowledged publish
// reached every subscriber of its channel exactly once.
func checkCoherent(t *testing.T, s *Summary, subsPerChannel int64) {
	t.Helper()
	if s.Published == 0 {
		t.Fatalf("nothing published: %+v", s)
	}
	if s.PublishErrors != 0 {
		t.Fatalf("%d publish errors, first: %s", s.PublishErrors, s.FirstError)
	}
	if s.Expected != s.Published*subsPerChannel {
		t.Fatalf("expected %d deliveries, want published %d × %d", s.Expected, s.Published, subsPerChannel)
	}
	if s.Delivered != s.Expected || s.Losses != 0 || s.Duplicates != 0 || s.Unexpected != 0 {
		t.Fatalf("delivered %d of %d, losses %d, dups %d, unexpected %d", s.Delivered, s.Expected, s.Losses, s.Duplicates, s.Unexpected)
	}
	if s.DeliveredPerSec <= 0 || s.BenchCPUSeconds <= 0 {
		t.Fatalf("delivered_per_sec %v, bench_cpu_seconds %v", s.DeliveredPerSec, s.BenchCPUSeconds)
	}
	l := s.LatencyMs
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Fatalf("incoherent latencies %+v", l)
	}
}

func benchOptions(url, transport string) options {
	return options{
		URL: url, Transport: transport,
		Subscribers: 10, Channels: 2, Publishers: 2, Rate: 200, Inflight: 2,
		Duration: 1500 * time.Millisecond, Drain: 15 * time.Second,
		Prefix: "/bench", Progress: 500 * time.Millisecond,
	}
}

func TestRunAgainstFaye(t *testing.T) {
	f := clienttest.StartFaye(t, 0)
	for _, tr := range []string{bayeux.TransportWebSocket, bayeux.TransportLongPolling} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var progress bytes.Buffer
			s, err := run(ctx, benchOptions(f.URL, tr), &progress)
			if err != nil {
				t.Fatal(err)
			}
			checkCoherent(t, s, 5)
			if !strings.Contains(progress.String(), "delivered") {
				t.Fatalf("no progress line: %q", progress.String())
			}
		})
	}
}

func TestRunMessageLimit(t *testing.T) {
	f := clienttest.StartFaye(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := benchOptions(f.URL, bayeux.TransportWebSocket)
	o.Rate, o.Messages, o.Duration = 0, 300, 30*time.Second
	s, err := run(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Published != 300 {
		t.Fatalf("published %d, want exactly 300", s.Published)
	}
	checkCoherent(t, s, 5)
}

func TestOptionsValidate(t *testing.T) {
	good := benchOptions("http://127.0.0.1:1/x", bayeux.TransportWebSocket)
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*options){
		"no url":        func(o *options) { o.URL = "" },
		"bad transport": func(o *options) { o.Transport = "smoke-signals" },
		"zero channels": func(o *options) { o.Channels = 0 },
		"no publishers": func(o *options) { o.Publishers = 0 },
		"zero duration": func(o *options) { o.Duration = 0 },
		"huge duration": func(o *options) { o.Duration = 2 * maxDuration },
		"too many msgs": func(o *options) { o.Messages = maxMessages + 1 },
		"negative rate": func(o *options) { o.Rate = -1 },
		"wildcard pfx":  func(o *options) { o.Prefix = "/a/*" },
		"huge payload":  func(o *options) { o.Payload = maxPayload + 1 },
		"zero inflight": func(o *options) { o.Inflight = 0 },
		"too many subs": func(o *options) { o.Subscribers = maxSubscribers + 1 },
		"negative pid":  func(o *options) { o.ServerPID = -1 },
		"idle, no pid":  func(o *options) { o.Idle = time.Second },
	} {
		o := good
		mut(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// startBroker serves the project's broker/server on a loopback port.
func startBroker(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(server.Config{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/cometd", srv.Handler())
	mux.Handle("/cometd/", srv.Handler())
	hs := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return hs.URL + "/cometd"
}

func TestRunAgainstBroker(t *testing.T) {
	url := startBroker(t)
	for _, tr := range []string{bayeux.TransportWebSocket, bayeux.TransportLongPolling} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := run(ctx, benchOptions(url, tr), nil)
			if err != nil {
				t.Fatal(err)
			}
			checkCoherent(t, s, 5)
		})
	}
}

// TestRunServerAccounting: with -server-pid (here the test process, which
// serves the broker), the summary carries the server's CPU per delivery and
// its RSS; an idle run reports the RSS per session and publishes nothing.
func TestRunServerAccounting(t *testing.T) {
	url := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := benchOptions(url, bayeux.TransportWebSocket)
	o.ServerPID = os.Getpid()
	s, err := run(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkCoherent(t, s, 5)
	if s.ServerRSSBytes <= 0 || s.ServerCPUSeconds < 0 || s.ServerCPUPerDeliveryUs != s.ServerCPUSeconds*1e6/float64(s.Delivered) {
		t.Fatalf("server accounting: cpu %v s, %v us/delivery, rss %d", s.ServerCPUSeconds, s.ServerCPUPerDeliveryUs, s.ServerRSSBytes)
	}

	o.Idle = time.Millisecond
	s, err = run(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Published != 0 || s.IdleSessions != o.Subscribers || s.ServerRSSBeforeBytes <= 0 || s.ServerRSSBytes <= 0 ||
		s.BytesPerIdleSession != (s.ServerRSSBytes-s.ServerRSSBeforeBytes)/int64(o.Subscribers) {
		t.Fatalf("idle run: %+v", s)
	}
}

func TestParseWire(t *testing.T) {
	for _, pad := range []string{"", "xxxx"} {
		b := encodeData(3, 123456, 1763900000123456789, pad)
		d, ok := parseWire(b)
		if !ok || d.P != 3 || d.S != 123456 || d.T != 1763900000123456789 {
			t.Fatalf("parseWire(%s) = %+v, %v", b, d, ok)
		}
	}
	for _, bad := range []string{`{}`, `{"p":1}`, `{"p":1,"s":2,"t":x}`, `[1]`, `{"p":1,"s":2,"t":3,"q":1}`} {
		if _, ok := parseWire([]byte(bad)); ok {
			t.Errorf("parseWire accepted %s", bad)
		}
	}
}
