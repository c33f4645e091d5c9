package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/broker/server"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
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
			ho, _ := st["handover"].(map[string]any)
			for _, k := range []string{"handedOver", "failed", "timedOut", "adopted", "drainSeconds"} {
				if v, ok := ho[k].(float64); !ok || v != 0 {
					t.Errorf("handover.%s = %v, want 0 before any drain (document %v)", k, ho[k], st)
				}
			}
		})
	}
}

// TestHealthzFailsWhenBackboneDead: /healthz stays ok through a NATS outage
// the client recovers from (only /readyz fails), but fails once the client has
// closed the connection for good (here a server with a short max_control_line
// ends it), so that Kubernetes restarts the broker.
func TestHealthzFailsWhenBackboneDead(t *testing.T) {
	opts := &natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true, MaxControlLine: 256}
	startNATS := func() *natsserver.Server {
		ns, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("NATS not ready")
		}
		return ns
	}
	ns := startNATS()
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
	waitProbe := func(path string, want int, body string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s = %d with %q", path, want, body), func(context.Context) (bool, string) {
			code, got := probe(path)
			return code == want && strings.Contains(got, body), fmt.Sprintf("%s = %d %q", path, code, got)
		})
	}
	if code, body := probe("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %q on a connected broker", code, body)
	}

	// An outage the client recovers from: not ready, but alive throughout.
	opts.Port = ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	waitProbe("/readyz", http.StatusServiceUnavailable, "backbone")
	if code, body := probe("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %q while NATS is only down", code, body)
	}
	startNATS()
	waitProbe("/readyz", http.StatusOK, "ok")
	if code, body := probe("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %q after NATS came back", code, body)
	}

	// The server closes the connection for good over a subject longer than
	// its max_control_line.
	_ = bb.Publish("/"+strings.Repeat("x", 400), []byte(`{}`), "")
	waitProbe("/healthz", http.StatusServiceUnavailable, "closed for good")
	if code, _ := probe("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with the backbone closed, want 503", code)
	}
}

// POST /shed takes a plan (202) and /status then reports the shed; a body
// that is not a plan is a 400, and a broker that cannot move sessions
// answers 409.
func TestAdminShed(t *testing.T) {
	hub := backbone.NewMemoryHub()
	newNode := func(id string) (*server.Server, backbone.Backbone) {
		m, err := backbone.NewMemory(backbone.MemoryConfig{NodeID: id, Hub: hub})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		srv, err := server.NewServer(server.Config{NodeID: id, Backbone: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		return srv, m
	}
	a, bb := newNode("node-a")
	b, _ := newNode("node-b")
	if err := a.NewLocalSession("local").Handshake(); err != nil {
		t.Fatal(err)
	}
	clients := httptest.NewServer(a.Handler())
	t.Cleanup(clients.Close)
	for range 6 {
		resp, err := http.Post(clients.URL, "application/json",
			strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	hs := httptest.NewServer(newAdmin(a, bb).handler())
	t.Cleanup(hs.Close)
	post := func(body string) int {
		resp, err := http.Post(hs.URL+"/shed", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tooLong := `{"keep":1,"to":{` + strings.Repeat(`"n":1,`, maxShedBody/6) + `"m":1}}`
	for _, body := range []string{`{"keep":-1}`, `{"keep":1,"extra":2}`, `not json`, `{"to":{"no spaces":1}}`, tooLong} {
		if code := post(body); code != http.StatusBadRequest {
			t.Errorf("POST /shed %s: %d, want 400", body, code)
		}
	}
	if code := post(`{"keep":2,"to":{"node-b":10}}`); code != http.StatusAccepted {
		t.Fatalf("POST /shed: %d, want 202", code)
	}
	// The LocalSession is no client session: it stays, and is not counted.
	testutil.Eventually(t, 10*time.Second, "the shed to end", func(context.Context) (bool, string) {
		return !a.ShedStatus().Active, fmt.Sprintf("%+v", a.ShedStatus())
	})
	if b.Stats().ClientSessions != 4 {
		t.Fatalf("node-b holds %d client sessions, want 4", b.Stats().ClientSessions)
	}
	resp, err := http.Get(hs.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Sessions != 3 || st.ClientSessions != 2 || st.Shed.Active || st.Shed.Moved != 4 {
		t.Fatalf("/status after the shed: %+v", st)
	}
	a.Drain()
	if code := post(`{"keep":0,"to":{"node-b":3}}`); code != http.StatusConflict {
		t.Fatalf("POST /shed while draining: %d, want 409", code)
	}
}
