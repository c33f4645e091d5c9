package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// /status says whether the backbone is connected: always without a backbone,
// and as the backbone's health says with one.
func TestStatusReportsBackboneConnected(t *testing.T) {
	for _, tc := range []struct {
		name         string
		withBackbone bool
		health       error
		want         bool
	}{
		{name: "standalone", want: true},
		{name: "healthy backbone", withBackbone: true, want: true},
		{name: "backbone down", withBackbone: true, health: errors.New("no NATS connection"), want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bb backbone.Backbone
			cfg := server.Config{NodeID: "n1"}
			if tc.withBackbone {
				m, err := backbone.NewMemory(backbone.MemoryConfig{NodeID: "n1"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = m.Close() })
				m.SetHealth(tc.health)
				bb, cfg.Backbone = m, m
			}
			srv, err := server.NewServer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			hs := httptest.NewServer(newAdmin(srv, bb).handler())
			t.Cleanup(hs.Close)
			resp, err := http.Get(hs.URL + "/status")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var st map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				t.Fatal(err)
			}
			if got, ok := st["backboneConnected"].(bool); !ok || got != tc.want {
				t.Errorf("backboneConnected = %v, want %v (document %v)", st["backboneConnected"], tc.want, st)
			}
			if got := st["backbone"]; got != tc.withBackbone {
				t.Errorf("backbone = %v, want %v", got, tc.withBackbone)
			}
		})
	}
}

// TestHealthzFailsWhenBackboneDead: /healthz stays ok through a NATS outage
// the client recovers from, but fails once the client has closed the
// connection for good (here a server with a short max_control_line ends it),
// so that Kubernetes restarts the broker.
func TestHealthzFailsWhenBackboneDead(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT,
		NoLog: true, NoSigs: true, MaxControlLine: 256})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	bb, closeBB, err := openBackbone(&config.File{Cluster: "c1", NATS: config.NATS{URL: ns.ClientURL()}}, "n1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeBB)
	srv, err := server.NewServer(server.Config{NodeID: "n1", Backbone: bb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	hs := httptest.NewServer(newAdmin(srv, bb).handler())
	t.Cleanup(hs.Close)
	probe := func(path string) (int, string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := probe("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %q on a connected broker", code, body)
	}
	_ = bb.Publish("/"+strings.Repeat("x", 400), []byte(`{}`))
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		code, body := probe("/healthz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "closed for good") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz = %d %q, want 503 once NATS closed the connection", code, body)
		}
		<-tick.C
	}
	if code, _ := probe("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with the backbone closed, want 503", code)
	}
}
