package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// embeddedNATSReady bounds the embedded NATS server's start.
const embeddedNATSReady = 10 * time.Second

// openBackbone builds the cross-node backbone described by cfg for the node
// nodeID. It returns the backbone (nil means a single node with no fan-out) and a
// function that releases it.
//
// With no NATS URL it starts an embedded NATS server with no network listener
// at all and connects to it in-process, so one broker runs alone with the same
// code path as a cluster, and nothing outside the process can reach its
// backbone. With a URL it joins that NATS (credentials, token and TLS from
// cfg.NATS), and keeps reconnecting if NATS is or becomes unreachable; /readyz
// reports the outage.
func openBackbone(cfg *config.File, nodeID string) (backbone.Backbone, func(), error) {
	log := slog.Default()
	nc := backbone.NATSConfig{
		URL:           cfg.NATS.URL,
		CredsFile:     cfg.NATS.CredsFile,
		TokenFile:     cfg.NATS.TokenFile,
		CAFile:        cfg.NATS.CAFile,
		CertFile:      cfg.NATS.CertFile,
		KeyFile:       cfg.NATS.KeyFile,
		SubjectPrefix: cfg.NATS.SubjectPrefix,
		Cluster:       cfg.Cluster,
		NodeID:        nodeID,
		Logger:        log,
	}
	var embedded *natsserver.Server
	var storeDir string
	if nc.URL == "" {
		if cfg.Durability != nil {
			dir, err := os.MkdirTemp("", "cometd-jetstream-")
			if err != nil {
				return nil, nil, fmt.Errorf("embedded NATS: %w", err)
			}
			storeDir = dir
		}
		s, err := startEmbeddedNATS(nodeID, storeDir)
		if err != nil {
			return nil, nil, err
		}
		log.Info("embedded NATS started", "listen", "in-process only (no TCP port)")
		embedded = s
		nc.InProcess = s
		nc.FailFast = true
	}
	bb, err := backbone.NewNATS(nc)
	if err != nil {
		if embedded != nil {
			embedded.Shutdown()
		}
		if storeDir != "" {
			_ = os.RemoveAll(storeDir)
		}
		return nil, nil, err
	}
	return bb, func() {
		_ = bb.Close()
		if embedded != nil {
			embedded.Shutdown()
			embedded.WaitForShutdown()
		}
		if storeDir != "" {
			_ = os.RemoveAll(storeDir)
		}
	}, nil
}

// durableSetup bounds creating the durable stream and bucket.
const durableSetup = 30 * time.Second

// enableDurability creates the cluster's durable stream and session bucket
// on the backbone's NATS (which must have JetStream).
func enableDurability(ctx context.Context, bb backbone.Backbone, d *config.Durability) (server.DurableStore, error) {
	n, ok := bb.(*backbone.NATS)
	if !ok {
		return nil, errors.New("durable sessions need a NATS backbone")
	}
	ctx, cancel := context.WithTimeout(ctx, durableSetup)
	defer cancel()
	for {
		ds, err := n.EnableDurability(ctx, backbone.DurableConfig{Settings: *d})
		if err == nil {
			return ds, nil
		}
		// NATS may still be starting, or electing its JetStream leader.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("durable sessions: %w (does the NATS server have JetStream enabled?)", err)
		case <-time.After(time.Second):
			slog.Default().Warn("durable sessions: JetStream not ready; retrying", "err", err)
		}
	}
}

// startEmbeddedNATS starts a NATS server that accepts in-process connections
// only: with no TCP listener, nothing outside the broker can read or inject
// backbone traffic, and it needs no credential.
//
// With storeDir, JetStream is on (durable sessions), storing there.
func startEmbeddedNATS(nodeID, storeDir string) (*natsserver.Server, error) {
	s, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "cometd-embedded-" + nodeID,
		DontListen: true,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  storeDir != "",
		StoreDir:   storeDir,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(embeddedNATSReady) {
		s.Shutdown()
		return nil, errors.New("embedded NATS did not start")
	}
	return s, nil
}

// registerBackboneMetrics exposes the backbone's traffic counters, lag and
// connection state, when it reports them.
func registerBackboneMetrics(reg prometheus.Registerer, bb backbone.Backbone) {
	if src, ok := bb.(backbone.StatsSource); ok {
		reg.MustRegister(backboneCollector{src})
	}
	if h, ok := bb.(backbone.Health); ok {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cometd_backbone_connected", Help: "1 while the backbone can carry traffic.",
		}, func() float64 {
			if h.Healthy() != nil {
				return 0
			}
			return 1
		}))
	}
}

var (
	bbMsgsOut   = prometheus.NewDesc("cometd_backbone_messages_out_total", "Messages this broker published to the backbone.", nil, nil)
	bbBytesOut  = prometheus.NewDesc("cometd_backbone_bytes_out_total", "Bytes of message data this broker published to the backbone.", nil, nil)
	bbMsgsIn    = prometheus.NewDesc("cometd_backbone_messages_in_total", "Messages received from other brokers.", nil, nil)
	bbBytesIn   = prometheus.NewDesc("cometd_backbone_bytes_in_total", "Bytes of message data received from other brokers.", nil, nil)
	bbDups      = prometheus.NewDesc("cometd_backbone_duplicates_total", "Second copies dropped when several subscriptions matched.", nil, nil)
	bbDropped   = prometheus.NewDesc("cometd_backbone_dropped_total", "Received messages lost: malformed, or over the delivery buffer.", nil, nil)
	bbReconn    = prometheus.NewDesc("cometd_backbone_reconnects_total", "Reconnections to NATS.", nil, nil)
	bbLastLag   = prometheus.NewDesc("cometd_backbone_last_lag_seconds", "Publish-to-receipt delay of the last message received.", nil, nil)
	bbLagHisto  = prometheus.NewDesc("cometd_backbone_lag_seconds", "Publish-to-receipt delay of messages received from other brokers.", nil, nil)
	bbCollected = []*prometheus.Desc{bbMsgsOut, bbBytesOut, bbMsgsIn, bbBytesIn, bbDups, bbDropped, bbReconn, bbLastLag, bbLagHisto}
)

// backboneCollector turns backbone.Stats into Prometheus metrics at scrape time.
type backboneCollector struct{ src backbone.StatsSource }

func (c backboneCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range bbCollected {
		ch <- d
	}
}

func (c backboneCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(bbMsgsOut, s.MessagesOut)
	counter(bbBytesOut, s.BytesOut)
	counter(bbMsgsIn, s.MessagesIn)
	counter(bbBytesIn, s.BytesIn)
	counter(bbDups, s.Duplicates)
	counter(bbDropped, s.Dropped)
	counter(bbReconn, s.Reconnects)
	ch <- prometheus.MustNewConstMetric(bbLastLag, prometheus.GaugeValue, s.LastLag.Seconds())
	buckets := make(map[float64]uint64, len(backbone.LagBuckets))
	var cum uint64
	for i, ub := range backbone.LagBuckets {
		if i < len(s.LagCounts) {
			cum += s.LagCounts[i]
		}
		buckets[ub] = cum
	}
	var total uint64
	for _, n := range s.LagCounts {
		total += n
	}
	ch <- prometheus.MustNewConstHistogram(bbLagHisto, total, s.LagSum.Seconds(), buckets)
}
