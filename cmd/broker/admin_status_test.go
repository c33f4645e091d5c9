package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
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
