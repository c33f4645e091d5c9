package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
	"github.com/cometd-operator/cometd-operator/internal/testenv"
)

var (
	// env is the real API server the manager runs against.
	env *testenv.Env
	// reconciler is the running manager's CometdCluster reconciler.
	reconciler *CometdClusterReconciler
)

const testBrokerImage = "example.com/cometd-broker:test"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
		}
	}()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptrTrue()},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "create manager:", err)
		return 1
	}
	reconciler = &CometdClusterReconciler{
		Client:                mgr.GetClient(),
		Scheme:                mgr.GetScheme(),
		Recorder:              mgr.GetEventRecorder("cometd-operator"),
		Options:               resources.Options{BrokerImage: testBrokerImage},
		BrokerStatus:          &HTTPBrokerStatusClient{Address: fakePodAddress},
		NATSMonitor:           &HTTPNATSMonitorClient{Address: fakePodAddress},
		Shedder:               &HTTPBrokerStatusClient{Address: fakePodAddress},
		AutoscaleInterval:     200 * time.Millisecond,
		PolicyRecheckInterval: 100 * time.Millisecond,
		FanoutRecheckInterval: 300 * time.Millisecond,
		// Several workers, so that every test here runs concurrent
		// reconciles under the race detector.
		MaxConcurrentReconciles: 4,
		ProbeInterval:           50 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := IndexFields(ctx, mgr); err != nil {
		fmt.Fprintln(os.Stderr, "index:", err)
		cancel()
		return 1
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, "set up reconciler:", err)
		cancel()
		return 1
	}
	if err := (&ChannelPolicyReconciler{Client: mgr.GetClient(), MaxConcurrentReconciles: 2}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, "set up policy reconciler:", err)
		cancel()
		return 1
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		fmt.Fprintln(os.Stderr, "manager cache did not sync")
		return 1
	}
	return m.Run()
}

func ptrTrue() *bool { t := true; return &t }

// newNamespace creates a fresh namespace so tests do not see each other's objects.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ctrl-test-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// waitTimeout bounds every wait: generous for a loaded 2-core machine.
const waitTimeout = 20 * time.Second

var fakePodServers sync.Map // "namespace/pod" -> *httptest.Server

// fakePodAddress is the suite's address function for pod endpoints (broker
// /status, NATS /routez): the fake server registered for the pod, or a closed port.
func fakePodAddress(pod *corev1.Pod) string {
	if srv, ok := fakePodServers.Load(pod.Namespace + "/" + pod.Name); ok {
		return srv.(*httptest.Server).Listener.Addr().String()
	}
	return "127.0.0.1:1"
}

// startReadyPod serves h as the pod's endpoint, then creates the pod with the
// given labels and container and marks it running and ready at ip.
func startReadyPod(t *testing.T, cc *v1.CometdCluster, name string, labels map[string]string,
	container corev1.Container, ip string, h http.Handler) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	key := cc.Namespace + "/" + name
	fakePodServers.Store(key, srv)
	t.Cleanup(func() { fakePodServers.Delete(key) })

	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cc.Namespace, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{container}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}},
	}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatalf("set pod ready: %v", err)
	}
}
