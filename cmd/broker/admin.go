package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/policy/serverpolicy"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// admin serves the operational endpoints.
type admin struct {
	srv      *server.Server
	bb       backbone.Backbone
	started  time.Time
	draining atomic.Bool
	reg      *prometheus.Registry
	// policyVersion reports the channel policy in force; nil means none.
	policyVersion func() string
	// clientConns is the client listener, whose connections are counted;
	// nil in tests that serve none.
	clientConns *server.LimitedListener
	// denials reports the channel policy's refusals; nil means no policy.
	denials func() serverpolicy.Stats
}

func newAdmin(srv *server.Server, bb backbone.Backbone) *admin {
	a := &admin{srv: srv, bb: bb, started: time.Now(), reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func(server.Stats) float64) {
		a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(srv.Stats()) }))
	}
	counter := func(name, help string, f func(server.Stats) float64) {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return f(srv.Stats()) }))
	}
	gauge("cometd_sessions", "Live Bayeux sessions.", func(s server.Stats) float64 { return float64(s.Sessions) })
	gauge("cometd_subscriptions", "Live (session, channel) subscriptions.", func(s server.Stats) float64 { return float64(s.Subscriptions) })
	gauge("cometd_channels", "Channel objects.", func(s server.Stats) float64 { return float64(s.Channels) })
	counter("cometd_messages_in_total", "Messages received from clients.", func(s server.Stats) float64 { return float64(s.MessagesIn) })
	counter("cometd_messages_out_total", "Messages written to clients.", func(s server.Stats) float64 { return float64(s.MessagesOut) })
	counter("cometd_published_total", "Messages published, locally or from the backbone.", func(s server.Stats) float64 { return float64(s.Published) })
	counter("cometd_queue_drops_total", "Messages dropped from session queues.", func(s server.Stats) float64 { return float64(s.QueueDrops) })
	counter("cometd_slow_consumers_total", "Sessions ended because their queue overflowed.", func(s server.Stats) float64 { return float64(s.SlowConsumers) })
	counter("cometd_handshakes_refused_total", "Handshakes refused because the broker held maxSessions sessions.", func(s server.Stats) float64 { return float64(s.HandshakesRefused) })
	counter("cometd_sessions_handed_over_total", "Sessions this broker handed over to another broker (drain).", func(s server.Stats) float64 { return float64(s.HandedOver) })
	counter("cometd_handovers_failed_total", "Session handovers that failed; the drain released those sessions.", func(s server.Stats) float64 { return float64(s.HandoversFailed) })
	counter("cometd_handovers_timed_out_total", "Session handovers that did not finish in time; the drain released those sessions.", func(s server.Stats) float64 { return float64(s.HandoversTimedOut) })
	counter("cometd_sessions_adopted_total", "Sessions other brokers handed over to this one.", func(s server.Stats) float64 { return float64(s.Adopted) })
	counter("cometd_sessions_located_total", "Sessions found on another broker by asking every broker.", func(s server.Stats) float64 { return float64(s.Located) })
	counter("cometd_durable_sessions_adopted_total", "Durable sessions this broker adopted from their records after their broker died.", func(s server.Stats) float64 { return float64(s.DurableAdopted) })
	counter("cometd_durable_sessions_lost_total", "Durable sessions that could not be adopted: messages they had not received were gone from the stream.", func(s server.Stats) float64 { return float64(s.DurableGaps) })
	counter("cometd_durable_sessions_fenced_total", "Sessions this broker ended because another broker had adopted them.", func(s server.Stats) float64 { return float64(s.DurableFenced) })
	counter("cometd_durable_record_writes_total", "Durable session records written.", func(s server.Stats) float64 { return float64(s.DurableWrites) })
	counter("cometd_durable_record_errors_total", "Durable session record writes that failed (retried).", func(s server.Stats) float64 { return float64(s.DurableWriteErrors) })
	counter("cometd_durable_not_stored_total", "Publishes refused because the durable stream did not store them.", func(s server.Stats) float64 { return float64(s.DurableNotStored) })
	gauge("cometd_drain_duration_seconds", "How long the drain has taken so far, or took; 0 before a drain.", func(s server.Stats) float64 { return s.DrainDuration.Seconds() })
	counter("cometd_slow_connections_total", "Websocket connections closed because their pending output passed maxPendingBytes.", func(s server.Stats) float64 { return float64(s.SlowConnections) })
	a.reg.MustRegister(connCollector{a})
	policyCounter := func(name, help string, f func(serverpolicy.Stats) uint64) {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			if a.denials == nil {
				return 0
			}
			return float64(f(a.denials()))
		}))
	}
	policyCounter("cometd_policy_handshakes_denied_total", "Handshakes the channel policy refused.", func(s serverpolicy.Stats) uint64 { return s.HandshakesDenied })
	policyCounter("cometd_policy_operations_denied_total", "Create, subscribe and publish operations the channel policy refused.", func(s serverpolicy.Stats) uint64 { return s.OperationsDenied })
	policyCounter("cometd_policy_tokens_refreshed_total", "Fresh tokens sessions sent with a /meta/connect and the policy took.", func(s serverpolicy.Stats) uint64 { return s.TokensRefreshed })
	policyCounter("cometd_policy_token_refreshes_denied_total", "Fresh tokens sent with a /meta/connect that the policy refused (the session kept its expiry).", func(s serverpolicy.Stats) uint64 { return s.RefreshesDenied })
	policyCounter("cometd_policy_sessions_token_expired_total", "Sessions ended because their token expired.", func(s serverpolicy.Stats) uint64 { return s.TokensExpired })
	policyCounter("cometd_policy_denial_logs_suppressed_total", "Denial log lines left out by the rate limit (10 a second of each kind).", func(s serverpolicy.Stats) uint64 { return s.LogsSuppressed })
	registerBackboneMetrics(a.reg, bb)
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cometd_draining", Help: "1 while the broker drains."},
		func() float64 {
			if a.draining.Load() {
				return 1
			}
			return 0
		}))
	return a
}

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// A backbone that failed for good fails the liveness probe: only a
		// restart brings the broker back into the cluster.
		if l, ok := a.bb.(backbone.Liveness); ok {
			if err := l.Alive(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if a.draining.Load() || a.srv.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if h, ok := a.bb.(backbone.Health); ok && a.bb != nil {
			if err := h.Healthy(); err != nil {
				http.Error(w, "backbone: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /shed", a.serveShed)
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		st := a.srv.Stats()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(status{
			Node: a.srv.NodeID(), Sessions: st.Sessions, ClientSessions: st.ClientSessions,
			Subscriptions: st.Subscriptions, Channels: st.Channels, Shed: a.srv.ShedStatus(),
			Draining: a.draining.Load(), PolicyVersion: a.currentPolicyVersion(), UptimeSeconds: int64(time.Since(a.started).Seconds()),
			Backbone: a.bb != nil, BackboneConnected: a.backboneConnected(),
			Handover: handoverStatus{HandedOver: st.HandedOver, Failed: st.HandoversFailed, TimedOut: st.HandoversTimedOut,
				Adopted: st.Adopted, DrainSeconds: st.DrainDuration.Seconds(), DurableAdopted: st.DurableAdopted, DurableLost: st.DurableGaps},
		})
	})
	return mux
}

// status is the /status document.
type status struct {
	Node     string `json:"node"`
	Sessions int64  `json:"sessions"`
	// ClientSessions are the sessions of clients (sessions without the
	// broker's own in-process ones): the load the operator scales and
	// rebalances on.
	ClientSessions int64  `json:"clientSessions"`
	Subscriptions  int64  `json:"subscriptions"`
	Channels       int64  `json:"channels"`
	Draining       bool   `json:"draining"`
	PolicyVersion  string `json:"policyVersion"`
	UptimeSeconds  int64  `json:"uptimeSeconds"`
	Backbone       bool   `json:"backbone"`
	// BackboneConnected is true when messages published here can reach the
	// other brokers: the backbone reports itself healthy, or there is nothing
	// to connect to (no backbone, or one that cannot fail, like an embedded NATS
	// whose health is always good).
	BackboneConnected bool `json:"backboneConnected"`
	// Handover counts the sessions this broker moved to others and adopted
	// from them, and how long its drain has taken (0 before one).
	Handover handoverStatus `json:"handover"`
	// Shed tells whether the broker is handing sessions over to others on
	// request (POST /shed), and how many it moved so far.
	Shed server.ShedStatus `json:"shed"`
}

// maxShedBody bounds a POST /shed body.
const maxShedBody = 64 << 10

// serveShed starts or replaces a shed (server.ShedPlan as JSON): the operator
// rebalances a cluster with it. 202 when the plan is taken, 400 for a plan
// that is not one, 409 while draining or without a backbone that moves
// sessions.
func (a *admin) serveShed(w http.ResponseWriter, r *http.Request) {
	var p server.ShedPlan
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxShedBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		http.Error(w, "shed plan: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch err := a.srv.Shed(p); {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case errors.Is(err, server.ErrShedPlan):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		http.Error(w, err.Error(), http.StatusConflict)
	}
}

type handoverStatus struct {
	HandedOver   uint64  `json:"handedOver"`
	Failed       uint64  `json:"failed"`
	TimedOut     uint64  `json:"timedOut"`
	Adopted      uint64  `json:"adopted"`
	DrainSeconds float64 `json:"drainSeconds"`
	// DurableAdopted counts durable sessions adopted after their broker
	// died; DurableLost those that could not be (their messages were gone).
	DurableAdopted uint64 `json:"durableAdopted"`
	DurableLost    uint64 `json:"durableLost"`
}

// backboneConnected reports whether the backbone is healthy; a broker with no
// backbone, or with one that does not report health, is connected.
func (a *admin) backboneConnected() bool {
	if a.bb == nil {
		return true
	}
	if h, ok := a.bb.(backbone.Health); ok {
		return h.Healthy() == nil
	}
	return true
}

// currentPolicyVersion is the version of the channel policy in force, or empty
// when the broker enforces none.
func (a *admin) currentPolicyVersion() string {
	if a.policyVersion == nil {
		return ""
	}
	return a.policyVersion()
}
