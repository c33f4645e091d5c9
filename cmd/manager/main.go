// Command manager runs the cometd-operator: the CometdCluster controller, with
// leader election, Prometheus metrics and health probes.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

func main() {
	var (
		metricsAddr    string
		probeAddr      string
		pprofAddr      string
		leaderElect    bool
		leaderElectNS  string
		brokerImage    string
		natsImage      string
		watchNS        string
		clusterWorkers int
		policyWorkers  int
		qps            float64
		burst          int
		probeTimeout   time.Duration
		probeParallel  int
		controllerName = "cometd-operator"
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to (0 disables it)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz probes bind to")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "address Go's /debug/pprof endpoints bind to, for profiling the operator (0 disables them)")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, so that only one of several replicas reconciles")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "namespace of the leader-election Lease (empty: the pod's namespace)")
	flag.StringVar(&brokerImage, "broker-image", resources.DefaultBrokerImage, "broker image for CometdClusters that do not set spec.image")
	flag.StringVar(&natsImage, "nats-image", resources.DefaultNATSImage, "NATS image for managed NATS that does not set spec.nats.managed.image")
	flag.StringVar(&watchNS, "watch-namespaces", "", "comma-separated namespaces to watch (empty: all namespaces)")
	flag.IntVar(&clusterWorkers, "cluster-workers", defaultClusterWorkers, "CometdClusters reconciled at once")
	flag.IntVar(&policyWorkers, "policy-workers", defaultPolicyWorkers, "ChannelPolicies reconciled at once")
	flag.Float64Var(&qps, "kube-api-qps", defaultQPS, "requests per second the operator sends the Kubernetes API at most, on average (a negative value disables the client-side limit)")
	flag.IntVar(&burst, "kube-api-burst", defaultBurst, "requests the operator may send the Kubernetes API at once above --kube-api-qps")
	flag.DurationVar(&probeTimeout, "probe-timeout", controllers.DefaultProbeTimeout, "how long a broker's admin /status or a NATS server's /routez may take to answer")
	flag.IntVar(&probeParallel, "probe-concurrency", controllers.DefaultProbeConcurrency, "broker and NATS pods asked at once, across all clusters")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		log.Error(err, "build scheme")
		os.Exit(1)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		log.Error(err, "build scheme")
		os.Exit(1)
	}

	cacheOpts := controllers.CacheOptions()
	if namespaces := splitNamespaces(watchNS); len(namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if err := checkWorkers(clusterWorkers, policyWorkers, probeParallel, burst, qps); err != nil {
		log.Error(err, "bad flags")
		os.Exit(2)
	}
	cfg := ctrl.GetConfigOrDie()
	// Without an explicit QPS, controller-runtime turns the client-side rate
	// limiter off; say what the operator may send.
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "cometd-operator.cometd.bayeux.dev",
		LeaderElectionNamespace: leaderElectNS,
		// Step down quickly on SIGTERM so that a new leader takes over at once.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "create manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.IndexFields(ctx, mgr); err != nil {
		log.Error(err, "register the cache indexes")
		os.Exit(1)
	}
	if err := (&controllers.CometdClusterReconciler{
		Client:                  mgr.GetClient(),
		Scheme:                  mgr.GetScheme(),
		Recorder:                mgr.GetEventRecorder(controllerName),
		Options:                 resources.Options{BrokerImage: brokerImage, NATSImage: natsImage},
		BrokerStatus:            &controllers.HTTPBrokerStatusClient{},
		NATSMonitor:             &controllers.HTTPNATSMonitorClient{},
		Shedder:                 &controllers.HTTPBrokerStatusClient{},
		ProbeTimeout:            probeTimeout,
		ProbeConcurrency:        probeParallel,
		MaxConcurrentReconciles: clusterWorkers,
	}).SetupWithManager(mgr); err != nil {
		log.Error(err, "set up controller", "controller", "CometdCluster")
		os.Exit(1)
	}
	if err := (&controllers.ChannelPolicyReconciler{Client: mgr.GetClient(), MaxConcurrentReconciles: policyWorkers}).SetupWithManager(mgr); err != nil {
		log.Error(err, "set up controller", "controller", "ChannelPolicy")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "add health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "add readiness check")
		os.Exit(1)
	}
	log.Info("starting manager", "brokerImage", brokerImage, "natsImage", natsImage, "leaderElection", leaderElect,
		"watchNamespaces", watchNS, "clusterWorkers", clusterWorkers, "policyWorkers", policyWorkers,
		"kubeAPIQPS", qps, "kubeAPIBurst", burst, "probeTimeout", probeTimeout, "probeConcurrency", probeParallel)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// splitNamespaces parses --watch-namespaces: comma-separated, blanks ignored.
func splitNamespaces(s string) []string {
	var out []string
	for _, ns := range strings.Split(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

// Defaults of the scale flags, measured with `make bench-operator` (see
// docs/operations.md).
const (
	defaultClusterWorkers = 4
	defaultPolicyWorkers  = 2
	defaultQPS            = 200
	defaultBurst          = 400
)

// checkWorkers refuses scale flags that cannot work.
func checkWorkers(clusterWorkers, policyWorkers, probeConcurrency, burst int, qps float64) error {
	switch {
	case clusterWorkers < 1 || policyWorkers < 1:
		return fmt.Errorf("--cluster-workers and --policy-workers must be at least 1 (got %d and %d)", clusterWorkers, policyWorkers)
	case probeConcurrency < 1:
		return fmt.Errorf("--probe-concurrency must be at least 1 (got %d)", probeConcurrency)
	case qps == 0:
		return fmt.Errorf("--kube-api-qps must not be 0 (a negative value disables the limit)")
	case qps > 0 && burst < 1:
		return fmt.Errorf("--kube-api-burst must be at least 1 (got %d)", burst)
	}
	return nil
}
