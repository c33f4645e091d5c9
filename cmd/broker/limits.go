package main

import (
	"net/http"
	"net/http/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// The admin port has a listener and limits of its own, so that a flood of
// client connections never keeps a probe from /healthz.
const (
	// adminMaxConns caps the admin port's connections (probes, scrapes, the
	// operator); a scraper or probe needs one or two.
	adminMaxConns = 64
	// adminReadTimeout, adminWriteTimeout and adminIdleTimeout bound an admin
	// request; none is held.
	adminReadTimeout  = 5 * time.Second
	adminWriteTimeout = 30 * time.Second
	adminIdleTimeout  = 60 * time.Second
	adminHeaderBytes  = 8 << 10
	// fdReserve is the file descriptors kept out of the client connection
	// limit: the admin port's, NATS's, the policy file's, the runtime's.
	fdReserve = adminMaxConns + 192
)

func adminHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: adminReadTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminHeaderBytes,
	}
}

// pprofHandler serves net/http/pprof (only with --pprof-listen).
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// connLimits is the client listener's limits from f: maxConnections, or the
// process's file limit (which the Go runtime raises to the hard limit at
// start) less fdReserve; maxConnectionsPerIP, or its default.
func connLimits(f *config.File) server.ConnLimits {
	lim := server.ConnLimits{MaxConns: f.MaxConnections, MaxConnsPerIP: f.MaxConnectionsPerIP}
	if lim.MaxConns == 0 {
		lim.MaxConns = fdConnLimit()
	}
	if lim.MaxConnsPerIP == 0 {
		lim.MaxConnsPerIP = config.DefaultMaxConnectionsPerIP
	}
	return lim
}

// fdConnLimit is the connection limit the file limit allows: all but
// fdReserve descriptors, and at least half of them on a small limit.
func fdConnLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<30 {
		return 0 // unknown or unlimited: no cap
	}
	n := int(rl.Cur)
	return max(n-fdReserve, n/2)
}

var (
	connOpen    = prometheus.NewDesc("cometd_connections", "Open client connections.", nil, nil)
	connRefused = prometheus.NewDesc("cometd_connections_refused_total", "Client connections closed on accept: the broker's (max_connections) or the address's (max_connections_per_ip) limit was reached.", []string{"reason"}, nil)
)

// connCollector reports the client listener's connection counts.
type connCollector struct{ a *admin }

func (c connCollector) Describe(ch chan<- *prometheus.Desc) { ch <- connOpen; ch <- connRefused }

func (c connCollector) Collect(ch chan<- prometheus.Metric) {
	var st server.ConnStats
	if l := c.a.clientConns; l != nil {
		st = l.Stats()
	}
	ch <- prometheus.MustNewConstMetric(connOpen, prometheus.GaugeValue, float64(st.Open))
	ch <- prometheus.MustNewConstMetric(connRefused, prometheus.CounterValue, float64(st.RefusedMax), "max_connections")
	ch <- prometheus.MustNewConstMetric(connRefused, prometheus.CounterValue, float64(st.RefusedPerIP), "max_connections_per_ip")
}
