package main

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/config"
)

func TestOpenBackboneEmbedded(t *testing.T) {
	bb, closeFn, err := openBackbone(&config.File{}, "solo")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if bb.NodeID() != "solo" {
		t.Errorf("NodeID = %q", bb.NodeID())
	}
	if err := bb.(backbone.Health).Healthy(); err != nil {
		t.Errorf("embedded backbone unhealthy: %v", err)
	}
	if err := bb.Subscribe("/a/**"); err != nil {
		t.Fatal(err)
	}
	if err := bb.Publish("/a/b", []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
}

// TestEmbeddedNATSHasNoListener: the embedded NATS accepts in-process
// connections only, so nothing outside the broker reaches the backbone.
func TestEmbeddedNATSHasNoListener(t *testing.T) {
	s, err := startEmbeddedNATS("solo", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if a := s.Addr(); a != nil {
		t.Fatalf("embedded NATS listens on %v", a)
	}
}

// TestOpenBackboneCluster joins two brokers' backbones over a real NATS server and
// checks that traffic flows and shows in the metrics.
func TestOpenBackboneCluster(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	cfg := &config.File{Cluster: "c1", NATS: config.NATS{URL: ns.ClientURL(), SubjectPrefix: "test"}}
	a, closeA, err := openBackbone(cfg, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer closeA()
	b, closeB, err := openBackbone(cfg, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer closeB()
	got := make(chan backbone.Message, 1)
	b.SetHandler(func(m backbone.Message) { got <- m })
	if err := b.Subscribe("/x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("/x", []byte(`{"n":1}`), ""); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Origin != "a" || string(m.Data) != `{"n":1}` {
			t.Errorf("got %+v", m)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("message not received")
	}
	reg := prometheus.NewRegistry()
	registerBackboneMetrics(reg, b)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			values[mf.GetName()] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			values[mf.GetName()] = m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			values[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	for name, want := range map[string]float64{
		"cometd_backbone_messages_in_total": 1,
		"cometd_backbone_bytes_in_total":    7,
		"cometd_backbone_connected":         1,
		"cometd_backbone_lag_seconds":       1,
		"cometd_backbone_dropped_total":     0,
	} {
		if got, ok := values[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
}
