// Command broker serves the Bayeux protocol (CometD) on one port and its admin
// endpoints (/healthz, /readyz, /metrics, /status) on another.
//
// Configuration comes from a broker config file (--config, the format of
// broker/config, as the operator renders it), overridden by COMETD_* environment
// variables, overridden by flags. The node name comes from --node, COMETD_NODE,
// POD_NAME or the hostname, in that order.
//
// On SIGTERM or SIGINT the broker drains: /readyz fails, new handshakes are
// refused, held connects are answered with advice to retry, and the process exits
// when no session is left or the drain grace period ends. A second signal exits at
// once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/broker/demo"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

// options are the command line's settings after env and flags are merged.
type options struct {
	file      *config.File
	node      string
	logFormat string
	// pprofListen is where net/http/pprof is served; empty means nowhere.
	pprofListen string
}

// envInt64 reads an integer environment variable into dst when set.
func envInt64(getenv func(string) string, name string, dst *int64) error {
	if v := getenv(name); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*dst = n
	}
	return nil
}

func parseOptions(args []string, getenv func(string) string) (*options, error) {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	cfgPath := fs.String("config", getenv("COMETD_CONFIG"), "broker config file (YAML or JSON); env COMETD_CONFIG")
	listen := fs.String("listen", "", "client (Bayeux) listen address; env COMETD_LISTEN (default "+config.DefaultListen+")")
	admin := fs.String("admin-listen", "", "admin listen address; env COMETD_ADMIN_LISTEN (default "+config.DefaultAdminListen+")")
	mount := fs.String("mount-path", "", "Bayeux mount path; env COMETD_MOUNT_PATH (default "+config.DefaultMountPath+")")
	node := fs.String("node", "", "node name; env COMETD_NODE, then POD_NAME, then the hostname")
	origins := fs.String("allowed-origins", "", "comma-separated CORS origins; env COMETD_ALLOWED_ORIGINS")
	natsURL := fs.String("nats-url", "", "NATS URL(s) for the backbone; env COMETD_NATS_URL")
	logFormat := fs.String("log-format", "text", "log format: text or json; env COMETD_LOG_FORMAT")
	demoPage := fs.Bool("demo", false, "serve a demo page (chat, latency, transport) at /demo/ on the client port; env COMETD_DEMO=true")
	durable := fs.Bool("durable", false, "keep sessions in NATS JetStream so that another broker adopts them when this one dies (the config file's durability block, with its defaults); env COMETD_DURABLE=true")
	pprofListen := fs.String("pprof-listen", "", "serve net/http/pprof on this address (for example 127.0.0.1:6060); env COMETD_PPROF_LISTEN (default: not served)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f := &config.File{}
	if *cfgPath != "" {
		var err error
		if f, err = config.Load(*cfgPath); err != nil {
			return nil, err
		}
	}
	// Environment overrides the file.
	for name, dst := range map[string]*string{
		"COMETD_LISTEN": &f.Listen, "COMETD_ADMIN_LISTEN": &f.AdminListen,
		"COMETD_MOUNT_PATH": &f.MountPath, "COMETD_CLUSTER": &f.Cluster, "COMETD_NATS_URL": &f.NATS.URL,
		"COMETD_POLICY_FILE":     &f.PolicyFile,
		"COMETD_NATS_CREDS_FILE": &f.NATS.CredsFile, "COMETD_NATS_TOKEN_FILE": &f.NATS.TokenFile,
		"COMETD_NATS_CA_FILE": &f.NATS.CAFile, "COMETD_NATS_CERT_FILE": &f.NATS.CertFile,
		"COMETD_NATS_KEY_FILE": &f.NATS.KeyFile, "COMETD_NATS_SUBJECT_PREFIX": &f.NATS.SubjectPrefix,
	} {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	ints := map[string]*int{
		"COMETD_MAX_SESSIONS": &f.MaxSessions, "COMETD_MAX_HEADER_BYTES": &f.MaxHeaderBytes,
		"COMETD_MAX_CONNECTIONS": &f.MaxConnections, "COMETD_MAX_CONNECTIONS_PER_IP": &f.MaxConnectionsPerIP,
	}
	wide := map[string]int64{}
	for name, dst := range ints {
		wide[name] = int64(*dst)
	}
	for name, dst := range map[string]*int64{
		"COMETD_TIMEOUT_MS": &f.TimeoutMs, "COMETD_INTERVAL_MS": &f.IntervalMs,
		"COMETD_MAX_INTERVAL_MS": &f.MaxIntervalMs, "COMETD_MAX_QUEUE_BYTES": &f.MaxQueueBytes,
		"COMETD_MAX_MESSAGE_SIZE": &f.MaxMessageSize, "COMETD_DRAIN_GRACE_PERIOD_MS": &f.DrainGracePeriodMs,
		"COMETD_DRAIN_LINGER_MS":   &f.DrainLingerMs,
		"COMETD_MAX_PENDING_BYTES": &f.MaxPendingBytes, "COMETD_READ_TIMEOUT_MS": &f.ReadTimeoutMs,
		"COMETD_WRITE_TIMEOUT_MS": &f.WriteTimeoutMs, "COMETD_IDLE_TIMEOUT_MS": &f.IdleTimeoutMs,
	} {
		if err := envInt64(getenv, name, dst); err != nil {
			return nil, err
		}
	}
	for name := range ints {
		v := wide[name]
		if err := envInt64(getenv, name, &v); err != nil {
			return nil, err
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, fmt.Errorf("%s: %d is out of range", name, v)
		}
		*ints[name] = int(v)
	}
	if v := getenv("COMETD_ALLOWED_ORIGINS"); v != "" {
		f.AllowedOrigins = strings.Split(v, ",")
	}
	if v := getenv("COMETD_TRANSPORTS"); v != "" {
		f.Transports = strings.Split(v, ",")
	}
	// Flags override the environment.
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if set["listen"] {
		f.Listen = *listen
	}
	if set["admin-listen"] {
		f.AdminListen = *admin
	}
	if set["mount-path"] {
		f.MountPath = *mount
	}
	if set["allowed-origins"] {
		f.AllowedOrigins = strings.Split(*origins, ",")
	}
	if set["nats-url"] {
		f.NATS.URL = *natsURL
	}
	if v := getenv("COMETD_DEMO"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("COMETD_DEMO: %w", err)
		}
		f.Demo = b
	}
	if set["demo"] {
		f.Demo = *demoPage
	}
	if v := getenv("COMETD_DURABLE"); v != "" && !set["durable"] {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("COMETD_DURABLE: %w", err)
		}
		*durable = b
	}
	if *durable && f.Durability == nil {
		f.Durability = &config.Durability{}
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	o := &options{file: f, logFormat: *logFormat, pprofListen: *pprofListen}
	if v := getenv("COMETD_LOG_FORMAT"); v != "" && !set["log-format"] {
		o.logFormat = v
	}
	if v := getenv("COMETD_PPROF_LISTEN"); v != "" && !set["pprof-listen"] {
		o.pprofListen = v
	}
	o.node = *node
	for _, v := range []string{getenv("COMETD_NODE"), getenv("POD_NAME")} {
		if o.node == "" {
			o.node = v
		}
	}
	if o.node == "" {
		o.node, _ = os.Hostname()
	}
	o.node = server.SanitizeNodeID(o.node)
	return o, nil
}

// demoURL is the demo page's address on the client listener, with
// "localhost" for an unspecified (any) address.
func demoURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + demo.Path
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + demo.Path
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func run(args []string, getenv func(string) string) error {
	o, err := parseOptions(args, getenv)
	if err != nil {
		return err
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if o.logFormat == "json" {
		handler = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(handler)
	f := o.file

	bb, closeBackbone, err := openBackbone(f, o.node)
	if err != nil {
		return fmt.Errorf("backbone: %w", err)
	}
	defer closeBackbone()
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()

	cfg := server.ConfigFromFile(f)
	cfg.NodeID = o.node
	cfg.Backbone = bb
	if f.Durability != nil {
		if cfg.Durable, err = enableDurability(runCtx, bb, f.Durability); err != nil {
			return err
		}
		// A session's unacknowledged messages are bounded by maxSessionBytes.
		cfg.MaxQueueBytes = min(cfg.MaxQueueBytes, f.Durability.MaxSessionBytesOrDefault())
		log.Info("durable sessions", "storage", f.Durability.StorageOrDefault(), "replicas", f.Durability.ReplicasOrDefault(),
			"maxAge", f.Durability.MaxAge(), "maxBytes", f.Durability.MaxBytesOrDefault(), "maxSessionBytes", f.Durability.MaxSessionBytesOrDefault())
	}
	cfg.Logger = log
	watcher, sec, err := openPolicy(f.PolicyFile, log)
	if err != nil {
		return err
	}
	if sec != nil {
		cfg.Security = sec
	}
	srv, err := server.NewServer(cfg)
	if err != nil {
		return err
	}
	if watcher != nil {
		sec.Attach(watcher, srv, nil)
		go watcher.Run(runCtx)
		log.Info("enforcing channel policy", "file", f.PolicyFile, "version", watcher.Version())
	}
	srv.AddExtension(server.AckExtension{})
	srv.AddExtension(server.TimesyncExtension{})

	mount := strings.TrimSuffix(orDefault(f.MountPath, config.DefaultMountPath), "/")
	mux := http.NewServeMux()
	mux.Handle(mount, srv.Handler())
	mux.Handle(mount+"/", srv.Handler())
	if f.Demo {
		page, err := demo.Handler(mount)
		if err != nil {
			return err
		}
		mux.Handle(demo.Path, page)
		mux.Handle(strings.TrimSuffix(demo.Path, "/"), page)
	}
	limits := connLimits(f)
	ln, err := net.Listen("tcp", orDefault(f.Listen, config.DefaultListen))
	if err != nil {
		return err
	}
	clientLn := server.LimitListener(ln, limits)
	ln, err = net.Listen("tcp", orDefault(f.AdminListen, config.DefaultAdminListen))
	if err != nil {
		clientLn.Close()
		return err
	}
	adminLn := server.LimitListener(ln, server.ConnLimits{MaxConns: adminMaxConns})
	admin := newAdmin(srv, bb)
	admin.clientConns = clientLn
	if watcher != nil {
		admin.policyVersion = watcher.Version
		admin.denials = sec.Stats
	}
	clientSrv := srv.HTTPServer(mux)
	adminSrv := adminHTTPServer(admin.handler())
	errc := make(chan error, 3)
	go func() { errc <- clientSrv.Serve(clientLn) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	log.Info("serving bayeux", "addr", clientLn.Addr().String(), "mount", mount, "node", srv.NodeID(),
		"transports", strings.Join(cfg.Transports, ","), "maxConnections", limits.MaxConns, "maxConnectionsPerIP", limits.MaxConnsPerIP)
	log.Info("serving admin", "addr", adminLn.Addr().String())
	if f.Demo {
		log.Info("serving the demo page", "url", demoURL(clientLn.Addr()))
	}
	var pprofSrv *http.Server
	if o.pprofListen != "" {
		pln, err := net.Listen("tcp", o.pprofListen)
		if err != nil {
			clientLn.Close()
			adminLn.Close()
			return fmt.Errorf("pprof: %w", err)
		}
		pprofSrv = &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: adminReadTimeout}
		go func() { errc <- pprofSrv.Serve(server.LimitListener(pln, server.ConnLimits{MaxConns: adminMaxConns})) }()
		log.Warn("serving pprof: profiles reveal memory contents; keep this address private", "addr", pln.Addr().String())
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	var signalled time.Time
	select {
	case s := <-sig:
		signalled = time.Now()
		log.Info("draining", "signal", s.String(), "grace", f.DrainGracePeriod(), "linger", f.DrainLinger())
	case err := <-errc:
		srv.Close()
		return err
	}
	admin.draining.Store(true)
	// From here on every reply closes its connection (the server's handlers
	// say Connection: close while draining): a client's next request opens a
	// new one, which the Service sends to a broker that stays. Idle
	// connections are not cut now: a client may be writing on one this very
	// moment, and would see its request fail.
	ctx, cancel := context.WithTimeout(context.Background(), f.DrainGracePeriod())
	defer cancel()
	go func() {
		select {
		case <-sig:
			log.Warn("second signal: exiting now")
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = srv.Shutdown(ctx)
	// Keep accepting (and forwarding) until the Service has stopped sending
	// connections here: a client that reaches a closed port sees its request
	// refused.
	if wait := f.DrainLinger() - time.Since(signalled); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	log.Info("drained", "node", srv.NodeID(), "took", time.Since(signalled).Round(time.Millisecond), "handedOver", srv.Stats().HandedOver)
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shutCancel()
	if err := clientSrv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("client server shutdown", "err", err)
	}
	_ = adminSrv.Shutdown(shutCtx)
	if pprofSrv != nil {
		_ = pprofSrv.Close()
	}
	log.Info("stopped", "node", srv.NodeID())
	return nil
}
