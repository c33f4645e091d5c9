package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
	"github.com/cometd-operator/cometd-operator/internal/testenv"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// runMainEnv makes the test binary run the manager's main instead of the
// tests, so that the test can start the real command as a child process.
const runMainEnv = "COMETD_MANAGER_TEST_RUN_MAIN"

var env *testenv.Env

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	os.Exit(code)
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loadRBAC reads one object of config/rbac.
func loadRBAC(t *testing.T, file string, obj client.Object) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// grantOperatorRBAC binds the rules of config/rbac to a user of its own: the
// generated ClusterRole, and the leader-election Role in leaseNS when it is
// not empty. It returns the path of a kubeconfig for that user.
func grantOperatorRBAC(t *testing.T, tag, leaseNS string) string {
	t.Helper()
	ctx := context.Background()
	c := env.Client
	user := "cometd-operator-under-test-" + tag
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	role := &rbacv1.ClusterRole{}
	loadRBAC(t, "role.yaml", role)
	role.Name = "manager-test-" + tag
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}}
	objs := []client.Object{role, binding}
	if leaseNS != "" {
		leRole := &rbacv1.Role{}
		loadRBAC(t, "leader_election_role.yaml", leRole)
		leRole.Namespace = leaseNS
		objs = append(objs, leRole,
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "leader-election", Namespace: leaseNS}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: leRole.Name}})
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
	t.Cleanup(func() { _ = c.Delete(ctx, role); _ = c.Delete(ctx, binding) })

	kubeconfig, err := env.KubeConfigFor(user)
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return kcPath
}

// newNamespace creates a namespace named after prefix, deleted at test end.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// create creates obj and deletes it at test end: envtest runs no namespace
// controller, so a deleted namespace keeps its objects, and a later test's
// manager would otherwise reconcile them.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
}

// managerProc is the manager command running as a child process.
type managerProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	logs    *lockedBuffer
	exited  chan error
	stopped bool
}

// startManager runs the manager command with args as the user of kcPath; it
// is killed at test end if it is still running.
func startManager(t *testing.T, kcPath string, args ...string) *managerProc {
	t.Helper()
	cmdCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(cmdCtx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "KUBECONFIG="+kcPath)
	m := &managerProc{t: t, cmd: cmd, logs: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if !m.stopped {
			_ = cmd.Process.Kill()
			<-m.exited
		}
		if t.Failed() {
			t.Logf("manager output:\n%s", m.logs.String())
		}
	})
	return m
}

// wait waits (testutil.Eventually) until cond holds, failing the test after
// 30 s or as soon as the manager exits.
func (m *managerProc) wait(what string, cond func() (bool, string)) {
	m.t.Helper()
	testutil.Eventually(m.t, 30*time.Second, what, func(context.Context) (bool, string) {
		select {
		case err := <-m.exited:
			m.stopped = true
			m.t.Fatalf("manager exited while waiting for %s: %v", what, err)
		default:
		}
		return cond()
	})
}

// waitHTTP waits until GET url answers 200.
func (m *managerProc) waitHTTP(url string) {
	m.t.Helper()
	m.wait(url, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// stop sends SIGTERM and expects a clean exit.
func (m *managerProc) stop() {
	m.t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		m.t.Fatal(err)
	}
	select {
	case err := <-m.exited:
		m.stopped = true
		if err != nil {
			m.t.Fatalf("manager exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		m.t.Fatal("manager did not exit within 20 s of SIGTERM")
	}
}

// metricValue returns the sum of the samples of metric whose labels include
// every one of labels (each as name="value"), and whether there was any.
func metricValue(exposition, metric string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		lbls := line[len(metric)+1 : end]
		match := true
		for _, l := range labels {
			if !strings.Contains(","+lbls+",", ","+l+",") {
				match = false
			}
		}
		if !match {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(strings.TrimSpace(line[end+1:]), &v); err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// The manager command, run as its own process with only the RBAC rules of
// config/rbac (the generated role and the leader-election role), elects
// itself leader, serves its probes and its Prometheus metrics, reconciles,
// logs JSON, and exits cleanly on SIGTERM.
func TestManagerRunsWithItsOwnRBAC(t *testing.T) {
	ctx := context.Background()
	c := env.Client
	// The operator's own namespace (its Lease, and the leader-election
	// Role, which also allows events there) apart from the cluster's, as
	// in a real install.
	leaseNS, ns := newNamespace(t, "manager-lease-"), newNamespace(t, "manager-test-")
	kcPath := grantOperatorRBAC(t, ns, leaseNS)

	probes, metrics, pprof := freeAddr(t), freeAddr(t), freeAddr(t)
	m := startManager(t, kcPath,
		"--leader-elect", "--leader-election-namespace="+leaseNS,
		"--metrics-bind-address="+metrics, "--health-probe-bind-address="+probes,
		"--pprof-bind-address="+pprof,
		"--broker-image=example.com/broker:under-test")
	m.waitHTTP("http://" + probes + "/readyz")
	// Profiling: a heap profile from --pprof-bind-address, in pprof's
	// format (gzip-compressed protobuf).
	m.wait("a heap profile", func() (bool, string) {
		resp, body, err := getBody("http://" + pprof + "/debug/pprof/heap")
		if err != nil {
			return false, err.Error()
		}
		return resp.StatusCode == http.StatusOK && len(body) > 2 && body[0] == 0x1f && body[1] == 0x8b,
			fmt.Sprintf("%s, %d bytes", resp.Status, len(body))
	})

	cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns},
		Spec: v1.CometdClusterSpec{Replicas: ptr.To[int32](2), NATS: &v1.NATSSpec{Managed: &v1.ManagedNATS{}}}}
	create(t, cc)
	pol := &v1.ChannelPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec: v1.ChannelPolicySpec{ClusterName: "chat", Rules: []v1.ChannelRule{{Name: "r", Effect: v1.EffectAllow,
			Actions: []v1.PolicyAction{v1.ActionSubscribe}, Channels: []v1.ChannelPattern{"/chat/*"}, Principals: []v1.Principal{"*"}}}}}
	create(t, pol)
	m.wait("the broker Deployment", func() (bool, string) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat"}, d); err != nil {
			return false, err.Error()
		}
		img := d.Spec.Template.Spec.Containers[0].Image
		return img == "example.com/broker:under-test", "image " + img
	})
	m.wait("the managed NATS StatefulSet", func() (bool, string) {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat-nats"}, &appsv1.StatefulSet{})
		return err == nil, fmt.Sprint(err)
	})
	m.wait("status with a policy version", func() (bool, string) {
		got := &v1.CometdCluster{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(cc), got); err != nil {
			return false, err.Error()
		}
		return got.Status.PolicyVersion != "" && meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAvailable) != nil,
			fmt.Sprintf("%+v", got.Status)
	})
	m.wait("the policy Accepted", func() (bool, string) {
		got := &v1.ChannelPolicy{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pol), got); err != nil {
			return false, err.Error()
		}
		return meta.IsStatusConditionTrue(got.Status.Conditions, v1.ConditionAccepted), fmt.Sprintf("%+v", got.Status)
	})
	m.wait("a held leader-election Lease", func() (bool, string) {
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: leaseNS, Name: "cometd-operator.cometd.bayeux.dev"}, lease); err != nil {
			return false, err.Error()
		}
		return ptr.Deref(lease.Spec.HolderIdentity, "") != "", "no holder"
	})

	// Events: recorded through events.k8s.io, which the ClusterRole must
	// allow in the cluster's namespace.
	m.wait("an Event about the cluster", func() (bool, string) {
		var evs eventsv1.EventList
		if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Regarding.Kind == "CometdCluster" && e.Regarding.Name == "chat" && e.ReportingController != "" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events, none about CometdCluster chat", len(evs.Items))
	})

	// Metrics: plain HTTP on --metrics-bind-address, as a Prometheus
	// scrape config pointed at that port gets them, with the reconciles
	// just done counted.
	m.wait("reconcile metrics", func() (bool, string) {
		resp, body, err := getBody("http://" + metrics + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			return false, fmt.Sprintf("%s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
		}
		text := string(body)
		for _, want := range []struct {
			metric string
			labels []string
		}{
			// All results: a cluster whose brokers never become ready
			// (envtest runs no pods) is requeued rather than "success".
			{"controller_runtime_reconcile_total", []string{`controller="cometdcluster"`}},
			{"controller_runtime_reconcile_total", []string{`controller="channelpolicy"`}},
			{"workqueue_adds_total", []string{`name="cometdcluster"`}},
		} {
			if v, ok := metricValue(text, want.metric, want.labels...); !ok || v < 1 {
				return false, fmt.Sprintf("%s%v = %v (present %v)", want.metric, want.labels, v, ok)
			}
		}
		return true, ""
	})

	m.stop()

	// Structured logs: every line is a JSON object with a message, and no
	// line reports a permission error.
	sc := bufio.NewScanner(strings.NewReader(m.logs.String()))
	lines := 0
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		if _, ok := rec["msg"]; !ok {
			t.Errorf("log line without msg: %q", sc.Text())
		}
		// An RBAC denial reads `… is forbidden: User "…" cannot …`; other
		// "forbidden" errors (a namespace being deleted) are not about
		// permissions.
		if strings.Contains(sc.Text(), `is forbidden: User \"`) {
			t.Errorf("the manager lacks a permission: %s", sc.Text())
		}
		lines++
	}
	if lines == 0 {
		t.Error("the manager logged nothing")
	}
}

// With --watch-namespaces the manager reconciles CometdClusters in the listed
// namespaces only: a cluster in another namespace gets no children and no
// status, even after the watched cluster has been created, reconciled,
// changed and reconciled again.
func TestManagerWatchNamespaces(t *testing.T) {
	ctx := context.Background()
	c := env.Client
	watched, other := newNamespace(t, "watched-"), newNamespace(t, "unwatched-")
	kcPath := grantOperatorRBAC(t, watched, "")
	probes := freeAddr(t)
	m := startManager(t, kcPath, "--watch-namespaces= "+watched+" ,",
		"--metrics-bind-address=0", "--health-probe-bind-address="+probes)
	m.waitHTTP("http://" + probes + "/readyz")

	// The unwatched cluster first, so that a manager watching everything
	// would have met it before the watched one.
	spec := v1.CometdClusterSpec{Replicas: ptr.To[int32](1), Image: "example.com/broker:v1"}
	ignored := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: other}, Spec: spec}
	create(t, ignored)
	served := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: watched}, Spec: spec}
	create(t, served)
	image := func(want string) func() (bool, string) {
		return func() (bool, string) {
			d := &appsv1.Deployment{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: watched, Name: "chat"}, d); err != nil {
				return false, err.Error()
			}
			got := d.Spec.Template.Spec.Containers[0].Image
			return got == want, "image " + got
		}
	}
	m.wait("the watched cluster's Deployment", image("example.com/broker:v1"))
	// A later change to the watched cluster, processed after everything
	// the manager had queued before it.
	before := served.DeepCopy()
	served.Spec.Image = "example.com/broker:v2"
	if err := c.Patch(ctx, served, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	m.wait("the watched cluster's Deployment on the new image", image("example.com/broker:v2"))

	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.InNamespace(other)); err != nil {
		t.Fatal(err)
	}
	var cms corev1.ConfigMapList
	if err := c.List(ctx, &cms, client.InNamespace(other), client.HasLabels{resources.LabelManagedBy}); err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) != 0 || len(cms.Items) != 0 {
		t.Fatalf("the unwatched namespace got %d Deployments and %d managed ConfigMaps", len(deps.Items), len(cms.Items))
	}
	got := &v1.CometdCluster{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(ignored), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.ObservedGeneration != 0 || len(got.Status.Conditions) != 0 || len(got.Finalizers) != 0 {
		t.Fatalf("the unwatched cluster was touched: finalizers %v, status %+v", got.Finalizers, got.Status)
	}
	m.stop()
}

// getBody GETs url and reads the whole answer.
func getBody(url string) (*http.Response, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}
