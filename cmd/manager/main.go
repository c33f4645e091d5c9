// Command manager runs the cometd-operator: the CometdCluster controller, with
// leader election, Prometheus metrics and health probes.
package main

import (
	"flag"
	"os"
	"strings"

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
		leaderElect    bool
		leaderElectNS  string
		brokerImage    string
		natsImage      string
		watchNS        string
		controllerName = "cometd-operator"
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to (0 disables it)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz probes bind to")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, so that only one of several replicas reconciles")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "namespace of the leader-election Lease (empty: the pod's namespace)")
	flag.StringVar(&brokerImage, "broker-image", resources.DefaultBrokerImage, "broker image for CometdClusters that do not set spec.image")
	flag.StringVar(&natsImage, "nats-image", resources.DefaultNATSImage, "NATS image for managed NATS that does not set spec.nats.managed.image")
	flag.StringVar(&watchNS, "watch-namespaces", "", "comma-separated namespaces to watch (empty: all namespaces)")
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
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
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
	if err := controllers.IndexChannelPolicies(ctx, mgr); err != nil {
		log.Error(err, "index ChannelPolicies")
		os.Exit(1)
	}
	if err := (&controllers.CometdClusterReconciler{
		Client:       mgr.GetClient(),
		Scheme:       mgr.GetScheme(),
		Recorder:     mgr.GetEventRecorder(controllerName),
		Options:      resources.Options{BrokerImage: brokerImage, NATSImage: natsImage},
		BrokerStatus: &controllers.HTTPBrokerStatusClient{},
		NATSMonitor:  &controllers.HTTPNATSMonitorClient{},
	}).SetupWithManager(mgr); err != nil {
		log.Error(err, "set up controller", "controller", "CometdCluster")
		os.Exit(1)
	}
	if err := (&controllers.ChannelPolicyReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
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
		"watchNamespaces", watchNS)
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
