//go:build scale

// Package scale measures the operator at scale (issue 18): the manager
// command, built from cmd/manager and run as its own process under a user of
// its own, against a real kube-apiserver and etcd (envtest) holding hundreds
// of CometdClusters. Run it with `make bench-operator`; it takes minutes, so it
// is behind the scale build tag and not part of `go test ./...`.
//
// Every broker and managed NATS pod of every cluster is a Pod object marked
// ready at a loopback address of its own (127.1.x.y, 127.2.x.y), where a
// stand-in HTTP server answers the broker's admin /status and the NATS
// /routez on the real ports, so the operator probes them exactly as it probes
// pods in a cluster. A tenth of the clusters can have brokers that never
// answer. Writes are counted on the API server side, from its audit log,
// for the operator's user only.
package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
	"github.com/cometd-operator/cometd-operator/internal/testenv"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// Knobs, from the environment so that `make bench-operator` can be narrowed.
var (
	// clusters is how many CometdClusters; every managedEvery-th has a
	// managed NATS (three servers), the others one broker and no NATS.
	clusters     = envInt("SCALE_CLUSTERS", 500)
	managedEvery = envInt("SCALE_MANAGED_EVERY", 5)
	// idle is how long the quiet cluster is watched for writes.
	idle = time.Duration(envInt("SCALE_IDLE_SECONDS", 60)) * time.Second
	// managerArgs are extra flags for the manager (space-separated);
	// SCALE_MANAGER_BIN (see buildManager) replaces the manager itself.
	managerArgs = strings.Fields(os.Getenv("SCALE_MANAGER_ARGS"))
	// phaseTimeout bounds each phase (converge, roll).
	phaseTimeout = 10 * time.Minute
)

const operatorUser = "cometd-operator-scale"

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	return def
}

// BenchmarkOperatorScale runs the scenario with every broker answering, then
// with a tenth of the clusters' brokers hanging on their probes. Run it with
// -benchtime=1x: one iteration is minutes of real time.
func BenchmarkOperatorScale(b *testing.B) {
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard))) // the benchmark's own watch logs nothing
	bin := buildManager(b)
	for _, hungPercent := range []int{0, 10} {
		b.Run(fmt.Sprintf("hung=%d%%", hungPercent), func(b *testing.B) {
			for range b.N {
				runScenario(b, bin, hungPercent)
			}
		})
	}
}

// buildManager builds cmd/manager without the race detector, as it ships,
// unless SCALE_MANAGER_BIN names a manager binary to measure instead (one
// built from another commit, for a before-and-after comparison).
func buildManager(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("SCALE_MANAGER_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(b.TempDir(), "manager")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build the manager: %v\n%s", err, out)
	}
	return bin
}

// auditPolicy records every write, at metadata level.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

// plannedCluster is one cluster of the scenario.
type plannedCluster struct {
	name    string
	managed bool
	hung    bool
}

func (p plannedCluster) brokerPod() string { return p.name + "-broker" }

func plan(hungPercent int) []plannedCluster {
	out := make([]plannedCluster, clusters)
	for i := range out {
		out[i] = plannedCluster{name: fmt.Sprintf("c%04d", i), managed: managedEvery > 0 && i%managedEvery == 0}
		// Spread the hanging ones over both kinds: i%10 == (i/10)%10 is a
		// tenth of the indexes, with every residue mod 5.
		if hungPercent == 10 && i%10 == (i/10)%10 {
			out[i].hung = true
		}
	}
	return out
}

// fakePods answers the probes of every pod, by the loopback address the
// request arrived on.
type fakePods struct {
	mu      sync.Mutex
	byIP    map[string]fakePod
	version atomic.Value // string: the policy version brokers enforce
	srv     *http.Server
	hungNow atomic.Int64 // requests held by hanging brokers right now
	asked   atomic.Int64 // requests answered or held
}

type fakePod struct {
	name  string
	nats  bool
	hung  bool
	peers []string // the other NATS servers of its cluster
}

func (f *fakePods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.asked.Add(1)
	addr, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	host, _, _ := net.SplitHostPort(fmt.Sprint(addr))
	f.mu.Lock()
	p, ok := f.byIP[host]
	f.mu.Unlock()
	switch {
	case !ok:
		http.NotFound(w, r)
	case p.hung:
		f.hungNow.Add(1)
		<-r.Context().Done() // never answers; the client gives up
		f.hungNow.Add(-1)
	case p.nats && r.URL.Path == "/routez":
		var routes []map[string]string
		for _, peer := range p.peers {
			routes = append(routes, map[string]string{"remote_id": "ID-" + peer, "remote_name": peer})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"server_name": p.name, "num_routes": len(routes), "routes": routes})
	case !p.nats && r.URL.Path == "/status":
		v, _ := f.version.Load().(string)
		_ = json.NewEncoder(w).Encode(map[string]any{"node": p.name, "policyVersion": v, "draining": false, "backboneConnected": true})
	default:
		http.NotFound(w, r)
	}
}

// listen serves pod on ip:port.
func (f *fakePods) listen(b *testing.B, ip string, port int, pod fakePod) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		b.Fatalf("listen for pod %s: %v", pod.name, err)
	}
	f.mu.Lock()
	f.byIP[ip] = pod
	f.mu.Unlock()
	go func() { _ = f.srv.Serve(l) }()
}

// scenarioEnv is one scenario's control plane, fake pods and operator.
type scenarioEnv struct {
	b         *testing.B
	env       *testenv.Env
	ns        string
	auditPath string
	pods      *fakePods
	track     *tracker
	mgr       *exec.Cmd
	mgrExit   chan error
}

func runScenario(b *testing.B, bin string, hungPercent int) {
	ctx := context.Background()
	dir := b.TempDir()
	s := &scenarioEnv{b: b, auditPath: filepath.Join(dir, "audit.log")}
	policyFile := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policyFile, []byte(auditPolicy), 0o600); err != nil {
		b.Fatal(err)
	}
	var err error
	s.env, err = testenv.StartWith(testenv.Options{APIServerFlags: map[string]string{
		// envtest's default /24 holds ~250 ClusterIPs; each cluster takes one
		// or two.
		"service-cluster-ip-range": "10.0.0.0/16",
		"audit-policy-file":        policyFile,
		"audit-log-path":           s.auditPath,
		"audit-log-format":         "json",
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.env.Stop() })
	c := s.env.Client
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}
	if err := c.Create(ctx, nsObj); err != nil {
		b.Fatal(err)
	}
	s.ns = nsObj.Name
	planned := plan(hungPercent)

	// The policy version every broker enforces: the one the operator compiles
	// for a cluster with no ChannelPolicy and the default access settings.
	probe := newCluster(s.ns, "dry-run", false)
	if err := c.Create(ctx, probe, client.DryRunAll); err != nil {
		b.Fatal(err)
	}
	doc, errs := policy.Compile(nil, resources.PolicySettings(probe))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	s.pods = &fakePods{byIP: map[string]fakePod{}}
	s.pods.version.Store(doc.Version)
	s.pods.srv = &http.Server{Handler: s.pods, ReadHeaderTimeout: 10 * time.Second}
	b.Cleanup(func() { _ = s.pods.srv.Close() })
	s.createPods(ctx, planned)

	s.track = newTracker(planned)
	if err := s.track.watch(ctx, b, s.env); err != nil {
		b.Fatal(err)
	}

	s.startManager(bin, dir)
	s.warmUp(ctx)

	// Phase 1: create every cluster; wait until each has its children and a
	// settled status.
	writes0 := s.operatorWrites(0)
	cpu0 := s.cpuTimes()
	s.track.begin(false)
	start := time.Now()
	parallel(len(planned), func(i int) error {
		cc := newCluster(s.ns, planned[i].name, planned[i].managed)
		if err := c.Create(ctx, cc); err != nil {
			return err
		}
		s.track.expect(cc.Name, cc.Generation)
		return nil
	})
	created := time.Since(start)
	converge := s.waitAll()
	writesConverge := s.operatorWrites(writes0.offset)
	cpuConverge := s.cpuTimes()

	// Phase 2: change spec.broker on every cluster; wait until every
	// Deployment rolls (new config hash) and every status is settled again.
	s.track.begin(true)
	parallel(len(planned), func(i int) error {
		cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: planned[i].name}}
		patch := []byte(`{"spec":{"broker":{"maxQueue":4321}}}`)
		if err := c.Patch(ctx, cc, client.RawPatch("application/merge-patch+json", patch)); err != nil {
			return err
		}
		s.track.expect(cc.Name, cc.Generation)
		return nil
	})
	roll := s.waitAll()
	writesRoll := s.operatorWrites(writesConverge.offset)
	cpuRoll := s.cpuTimes()

	// Phase 3: nothing changes; count what the operator writes.
	idleWrites := s.idleWrites(writesRoll.offset)
	rss, hwm := s.memory()

	hungReq := s.pods.hungNow.Load()
	s.stopManager()

	report := func(name string, p phase) {
		b.ReportMetric(p.all.last.Seconds(), name+"-all-s")
		b.ReportMetric(p.healthy.last.Seconds(), name+"-healthy-s")
		b.ReportMetric(p.healthy.p50.Seconds(), name+"-healthy-p50-s")
		if p.hung.n > 0 {
			b.ReportMetric(p.hung.last.Seconds(), name+"-hung-s")
		}
	}
	report("converge", converge)
	report("roll", roll)
	b.ReportMetric(float64(idleWrites.total), "idle-writes")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-rss-MiB")
	b.Logf("%d clusters (%d with managed NATS, %d with hanging brokers), manager flags %q", len(planned),
		countIf(planned, func(p plannedCluster) bool { return p.managed }), countIf(planned, func(p plannedCluster) bool { return p.hung }), managerArgs)
	b.Logf("created in %.1fs; converged: %s", created.Seconds(), converge)
	b.Logf("operator writes while converging: %s", writesConverge)
	b.Logf("CPU while converging: %s", cpuConverge.since(cpu0))
	b.Logf("rolled: %s", roll)
	b.Logf("operator writes while rolling: %s", writesRoll)
	b.Logf("CPU while rolling: %s", cpuRoll.since(cpuConverge))
	b.Logf("operator writes in %s idle: %s", idle, idleWrites)
	b.Logf("operator memory: RSS %.1f MiB, peak %.1f MiB; probes answered or held: %d; held by hanging brokers at the end: %d",
		float64(rss)/(1<<20), float64(hwm)/(1<<20), s.pods.asked.Load(), hungReq)
	if idleWrites.total != 0 {
		b.Errorf("the operator wrote %d times in %s with nothing changing: %s", idleWrites.total, idle, idleWrites)
	}
}

func countIf[T any](s []T, f func(T) bool) int {
	n := 0
	for _, x := range s {
		if f(x) {
			n++
		}
	}
	return n
}

func newCluster(ns, name string, managed bool) *v1.CometdCluster {
	cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.CometdClusterSpec{Replicas: ptr.To[int32](1)}}
	if managed {
		cc.Spec.NATS = &v1.NATSSpec{Managed: &v1.ManagedNATS{}}
	}
	return cc
}

// parallel runs f for 0..n-1 on 16 goroutines and fails on the first error.
func parallel(n int, f func(i int) error) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		panic(err)
	}
}

// loopback is the i-th address of 127.<net>.0.0/16, never .0 or .255.
func loopback(net, i int) string {
	return fmt.Sprintf("127.%d.%d.%d", net, i/250, i%250+1)
}

// createPods creates every cluster's broker pod and managed NATS pods, ready,
// at their own loopback addresses, before the clusters exist.
func (s *scenarioEnv) createPods(ctx context.Context, planned []plannedCluster) {
	type podPlan struct {
		pod *corev1.Pod
		ip  string
	}
	var all []podPlan
	natsIndex := 0
	for i, p := range planned {
		cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: p.name}}
		ip := loopback(1, i)
		s.pods.listen(s.b, ip, resources.AdminPort, fakePod{name: p.brokerPod(), hung: p.hung})
		all = append(all, podPlan{pod: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: p.brokerPod(), Labels: resources.BrokerLabels(cc)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "broker", Image: "example.com/broker:scale"}}},
		}, ip: ip})
		if !p.managed {
			continue
		}
		var names []string
		for j := range int(resources.NATSReplicas(newCluster(s.ns, p.name, true))) {
			names = append(names, fmt.Sprintf("%s-nats-%d", p.name, j))
		}
		for _, name := range names {
			ip := loopback(2, natsIndex)
			natsIndex++
			s.pods.listen(s.b, ip, resources.NATSMonitorPort, fakePod{name: name, nats: true,
				peers: slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name })})
			all = append(all, podPlan{pod: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name, Labels: resources.NATSLabels(cc)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nats", Image: "example.com/nats:scale"}}},
			}, ip: ip})
		}
	}
	c := s.env.Client
	parallel(len(all), func(i int) error {
		p := all[i]
		if err := c.Create(ctx, p.pod); err != nil {
			return err
		}
		p.pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}}
		return c.Status().Update(ctx, p.pod)
	})
}

func (s *scenarioEnv) startManager(bin, dir string) {
	kubeconfig, err := s.env.KubeConfigFor(operatorUser, "system:masters")
	if err != nil {
		s.b.Fatal(err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		s.b.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		s.b.Fatal(err)
	}
	args := append([]string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--watch-namespaces=" + s.ns}, managerArgs...)
	s.mgr = exec.Command(bin, args...)
	s.mgr.Env = append(os.Environ(), "KUBECONFIG="+kc)
	s.mgr.Stdout, s.mgr.Stderr = logs, logs
	if err := s.mgr.Start(); err != nil {
		s.b.Fatal(err)
	}
	s.mgrExit = make(chan error, 1)
	go func() { s.mgrExit <- s.mgr.Wait(); logs.Close() }()
	s.b.Cleanup(func() {
		if s.mgr.ProcessState == nil {
			_ = s.mgr.Process.Kill()
			<-s.mgrExit
		}
		if s.b.Failed() {
			out, _ := os.ReadFile(logs.Name())
			if len(out) > 20000 {
				out = out[len(out)-20000:]
			}
			s.b.Logf("manager log (tail):\n%s", out)
		}
	})
}

// warmUp waits until the manager reconciles a cluster outside the plan, so
// that its start (cache sync, leader-less start-up) is not measured.
func (s *scenarioEnv) warmUp(ctx context.Context) {
	cc := newCluster(s.ns, "warm-up", false)
	if err := s.env.Client.Create(ctx, cc); err != nil {
		s.b.Fatal(err)
	}
	testutil.Eventually(s.b, phaseTimeout, "the manager to reconcile a first cluster", func(ctx context.Context) (bool, string) {
		s.managerAlive()
		got := &v1.CometdCluster{}
		if err := s.env.Client.Get(ctx, client.ObjectKeyFromObject(cc), got); err != nil {
			return false, err.Error()
		}
		return got.Status.ObservedGeneration == got.Generation, fmt.Sprintf("observed generation %d", got.Status.ObservedGeneration)
	})
}

func (s *scenarioEnv) stopManager() {
	_ = s.mgr.Process.Signal(os.Interrupt)
	select {
	case <-s.mgrExit:
	case <-time.After(30 * time.Second):
		s.b.Error("the manager did not stop within 30 s of SIGINT")
	}
}

// memory is the manager's resident set size now and at its peak, in bytes.
func (s *scenarioEnv) memory() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.mgr.Process.Pid))
	if err != nil {
		s.b.Logf("read the manager's memory: %v", err)
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// cpuSample is the CPU time (user + system) each process of the scenario
// has used so far: the manager, kube-apiserver, etcd and the benchmark itself
// (its watches and the stand-in pods), to show where the two cores went.
type cpuSample struct {
	at    time.Time
	procs map[string]time.Duration
}

// cpuTimes reads the CPU time of the manager, of the control plane's
// processes (the benchmark's children named kube-apiserver and etcd) and of
// the benchmark, from /proc.
func (s *scenarioEnv) cpuTimes() cpuSample {
	out := cpuSample{at: time.Now(), procs: map[string]time.Duration{}}
	self := os.Getpid()
	out.procs["benchmark"] = procCPU(self)
	out.procs["manager"] = procCPU(s.mgr.Process.Pid)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, _, ok := procStat(pid)
		if ok && ppid == self && (comm == "kube-apiserver" || comm == "etcd") {
			out.procs[comm] += procCPU(pid)
		}
	}
	return out
}

// since is the CPU each process used between base and c, in seconds and as
// cores busy on average.
func (c cpuSample) since(base cpuSample) string {
	wall := c.at.Sub(base.at)
	var parts []string
	for _, name := range []string{"kube-apiserver", "etcd", "manager", "benchmark"} {
		d := c.procs[name] - base.procs[name]
		parts = append(parts, fmt.Sprintf("%s %.1fs (%.2f cores)", name, d.Seconds(), d.Seconds()/wall.Seconds()))
	}
	return fmt.Sprintf("%s over %.1fs", strings.Join(parts, ", "), wall.Seconds())
}

// procStat reads a process's name, parent and CPU time (utime + stime) from
// /proc/<pid>/stat.
func procStat(pid int) (comm string, ppid int, cpu time.Duration, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, false
	}
	open, closing := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
	if open < 0 || closing < open {
		return "", 0, 0, false
	}
	comm = string(b[open+1 : closing])
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 13 {
		return "", 0, 0, false
	}
	// After the name: state, ppid, ..., utime (14th field of the line, 12th
	// here) and stime, in clock ticks (100 a second on Linux).
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return comm, ppid, time.Duration(utime+stime) * 10 * time.Millisecond, true
}

func procCPU(pid int) time.Duration {
	_, _, cpu, _ := procStat(pid)
	return cpu
}

// tracker records when each cluster gets done in the current phase, from
// the benchmark's own watch of the clusters and their Deployments, as the
// events arrive.
type tracker struct {
	mu      sync.Mutex
	planned map[string]plannedCluster
	start   time.Time
	rolling bool
	// clusters and hashes are the latest objects seen; oldHash the config
	// hashes when the phase began; wantGen the generation each cluster's
	// spec has in this phase (0: not written yet).
	clusters        map[string]*v1.CometdCluster
	hashes, oldHash map[string]string
	wantGen         map[string]int64
	doneAt          map[string]time.Duration
}

func newTracker(planned []plannedCluster) *tracker {
	t := &tracker{planned: map[string]plannedCluster{}, clusters: map[string]*v1.CometdCluster{}, hashes: map[string]string{}}
	for _, p := range planned {
		t.planned[p.name] = p
	}
	return t
}

// watch feeds the tracker from informers on env's clusters and Deployments.
func (t *tracker) watch(ctx context.Context, b *testing.B, env *testenv.Env) error {
	view, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	b.Cleanup(cancel)
	for _, obj := range []client.Object{&v1.CometdCluster{}, &appsv1.Deployment{}} {
		inf, err := view.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		on := func(o any) { t.seen(o) }
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: on, UpdateFunc: func(_, o any) { on(o) }}); err != nil {
			return err
		}
	}
	go func() { _ = view.Start(ctx) }()
	if !view.WaitForCacheSync(ctx) {
		return fmt.Errorf("the benchmark's cache did not sync")
	}
	return nil
}

func (t *tracker) seen(o any) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch o := o.(type) {
	case *v1.CometdCluster:
		t.clusters[o.Name] = o
		t.check(o.Name, now)
	case *appsv1.Deployment:
		t.hashes[o.Name] = o.Spec.Template.Annotations[resources.AnnotationConfigHash]
		t.check(o.Name, now)
	}
}

// begin starts a phase: creating the clusters, or (rolling) changing them.
func (t *tracker) begin(rolling bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start, t.rolling, t.doneAt, t.wantGen = time.Now(), rolling, map[string]time.Duration{}, map[string]int64{}
	t.oldHash = maps.Clone(t.hashes)
}

// expect says which generation the cluster's spec reached in this phase.
func (t *tracker) expect(name string, gen int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wantGen[name] = gen
	t.check(name, time.Now())
}

// check records the cluster done when it is. Lock must be held.
func (t *tracker) check(name string, now time.Time) {
	p, planned := t.planned[name]
	cc := t.clusters[name]
	if _, done := t.doneAt[name]; done || !planned || cc == nil || t.wantGen == nil || t.wantGen[name] == 0 || cc.Generation < t.wantGen[name] {
		return
	}
	h, exists := t.hashes[name]
	if !exists || (t.rolling && h == t.oldHash[name]) {
		return
	}
	if ok, _ := done(cc, p); ok {
		t.doneAt[name] = now.Sub(t.start)
	}
}

// progress is how many clusters are done, and why one that is not is not.
func (t *tracker) progress() (int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, p := range t.planned {
		if _, ok := t.doneAt[name]; ok {
			continue
		}
		cc := t.clusters[name]
		switch {
		case cc == nil || t.wantGen[name] == 0:
			return len(t.doneAt), name + ": not written yet"
		case t.hashes[name] == "" || (t.rolling && t.hashes[name] == t.oldHash[name]):
			return len(t.doneAt), name + ": Deployment not there or not rolled"
		}
		_, why := done(cc, p)
		return len(t.doneAt), name + ": " + why
	}
	return len(t.doneAt), ""
}

// phase summarizes the current phase.
func (t *tracker) phase() phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all, healthy, hung []time.Duration
	for name, d := range t.doneAt {
		all = append(all, d)
		if t.planned[name].hung {
			hung = append(hung, d)
		} else {
			healthy = append(healthy, d)
		}
	}
	return phase{all: spreadOf(all), healthy: spreadOf(healthy), hung: spreadOf(hung)}
}

// spread summarizes when the clusters of a group got done.
type spread struct {
	n         int
	p50, last time.Duration
}

func spreadOf(ds []time.Duration) spread {
	if len(ds) == 0 {
		return spread{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return spread{n: len(ds), p50: ds[len(ds)/2], last: ds[len(ds)-1]}
}

func (s spread) String() string {
	return fmt.Sprintf("%d in %.2fs (median %.2fs)", s.n, s.last.Seconds(), s.p50.Seconds())
}

type phase struct{ all, healthy, hung spread }

func (p phase) String() string {
	out := fmt.Sprintf("all %s; healthy %s", p.all, p.healthy)
	if p.hung.n > 0 {
		out += fmt.Sprintf("; hanging %s", p.hung)
	}
	return out
}

// managerAlive fails the benchmark when the manager has exited.
func (s *scenarioEnv) managerAlive() {
	select {
	case err := <-s.mgrExit:
		s.b.Fatalf("the manager exited: %v", err)
	default:
	}
}

// waitAll waits until every planned cluster is done in this phase (the
// times are the tracker's, not this wait's).
func (s *scenarioEnv) waitAll() phase {
	want := len(s.track.planned)
	testutil.Eventually(s.b, phaseTimeout, fmt.Sprintf("all %d clusters done", want), func(context.Context) (bool, string) {
		s.managerAlive()
		n, why := s.track.progress()
		return n == want, fmt.Sprintf("%d done; not done: %s", n, why)
	})
	return s.track.phase()
}

// done reports whether the cluster's status is settled for this spec: it
// observed the latest generation, every child applied, and PolicyApplied
// and FanoutReady say what its pods' answers imply (a hanging broker is
// named in both once its probe timed out).
func done(cc *v1.CometdCluster, p plannedCluster) (bool, string) {
	if cc.Status.ObservedGeneration != cc.Generation {
		return false, fmt.Sprintf("observed generation %d of %d", cc.Status.ObservedGeneration, cc.Generation)
	}
	if d := meta.FindStatusCondition(cc.Status.Conditions, v1.ConditionDegraded); d == nil || d.Reason == "ApplyFailed" {
		return false, fmt.Sprintf("Degraded %+v", d)
	}
	pa := meta.FindStatusCondition(cc.Status.Conditions, v1.ConditionPolicyApplied)
	fo := meta.FindStatusCondition(cc.Status.Conditions, v1.ConditionFanoutReady)
	if pa == nil || fo == nil {
		return false, "no PolicyApplied or FanoutReady yet"
	}
	if p.hung {
		timedOut := func(c *metav1.Condition) bool {
			return strings.Contains(c.Message, p.brokerPod()) &&
				(strings.Contains(c.Message, "deadline exceeded") || strings.Contains(c.Message, "did not answer"))
		}
		if pa.Status != metav1.ConditionFalse || !timedOut(pa) {
			return false, "PolicyApplied does not report the hanging broker: " + pa.Message
		}
		if p.managed && (fo.Status != metav1.ConditionFalse || !timedOut(fo)) {
			return false, "FanoutReady does not report the hanging broker: " + fo.Message
		}
		return true, ""
	}
	if pa.Status != metav1.ConditionTrue {
		return false, "PolicyApplied: " + pa.Message
	}
	if fo.Status != metav1.ConditionTrue {
		return false, "FanoutReady: " + fo.Message
	}
	return true, ""
}

// writeCount is the operator's writes, by verb and resource, read from the
// audit log from an offset.
type writeCount struct {
	offset int64
	total  int
	by     map[string]int
}

func (w writeCount) String() string {
	keys := make([]string, 0, len(w.by))
	for k := range w.by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{fmt.Sprint(w.total)}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, w.by[k]))
	}
	return strings.Join(parts, ", ")
}

// operatorWrites counts the operator's writes logged after offset.
func (s *scenarioEnv) operatorWrites(offset int64) writeCount {
	f, err := os.Open(s.auditPath)
	if err != nil {
		s.b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		s.b.Fatal(err)
	}
	w := writeCount{offset: offset, by: map[string]int{}}
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // a partial last line is read next time
		}
		w.offset += int64(len(line))
		var ev struct {
			Verb string `json:"verb"`
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
		}
		if json.Unmarshal(line, &ev) != nil || ev.User.Username != operatorUser {
			continue
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		w.total++
		w.by[ev.Verb+" "+res]++
	}
	return w
}

// idleWrites waits until the operator has written nothing for quiet (events
// are sent asynchronously, so the last ones can follow the status that ended
// the roll), then counts its writes during idle. The audit log records a
// request when it completes.
func (s *scenarioEnv) idleWrites(offset int64) writeCount {
	const quiet = 3 * time.Second
	lastWrite := time.Now()
	settled := testutil.Eventually(s.b, phaseTimeout, "the operator to stop writing", func(context.Context) (bool, string) {
		s.managerAlive()
		w := s.operatorWrites(offset)
		if w.total > 0 {
			lastWrite = time.Now()
		}
		offset = w.offset
		return time.Since(lastWrite) >= quiet, fmt.Sprintf("last write %s ago", time.Since(lastWrite).Round(time.Millisecond))
	})
	s.b.Logf("the operator's writes stopped %.1fs after the roll was seen done", max(0, settled-quiet).Seconds())
	select {
	case err := <-s.mgrExit:
		s.b.Fatalf("the manager exited: %v", err)
	case <-time.After(idle):
	}
	return s.operatorWrites(offset)
}
