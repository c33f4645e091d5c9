package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// Probing defaults: how long one pod may take to answer, how many pods are
// asked at once across all clusters, and how old an answer may get before a
// reconcile asks again.
const (
	DefaultProbeTimeout     = 3 * time.Second
	DefaultProbeConcurrency = 64
	defaultProbeInterval    = time.Second
)

// errNoAnswerYet is the report of a pod that has been asked and has not
// answered yet.
var errNoAnswerYet = errors.New("no answer yet")

// brokerReport is one ready broker's answer about the policy it enforces and
// its backbone connection.
type brokerReport struct {
	Pod     string
	Version string
	// Node is the broker's node name; Sessions its client sessions;
	// Draining and Shedding what it is doing with them.
	Node               string
	Sessions           int64
	Draining, Shedding bool
	// BackboneConnected is the broker's backboneConnected; BackboneUnreported
	// is true when its /status has no such field.
	BackboneConnected, BackboneUnreported bool
	Err                                   error
}

// natsReport is one ready managed NATS pod's answer about its routes.
type natsReport struct {
	Pod string
	// Peers is the number of distinct other servers it routes to.
	Peers int
	Err   error
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// prober asks the brokers (admin /status) and the managed NATS servers
// (/routez) off the reconcile workers. A reconcile hands it the ready pods
// of a cluster and gets the latest answers at once: the cached ones, or
// errNoAnswerYet for a pod never heard from. Answers older than interval are
// asked for again in the background, at most concurrency at a time across
// all clusters, each bounded by timeout. When an answer changes what the
// cluster's status would say, the cluster is queued for a reconcile. A pod
// whose last answer was an error (one that hangs) is asked in a lane of its
// own, a quarter the size, so that hanging pods hold up neither the
// reconciles nor the probes of healthy pods.
type prober struct {
	brokers  *podProbes[brokerReport]
	nats     *podProbes[natsReport]
	timeout  time.Duration
	interval time.Duration
	// healthy and suspect are the two lanes' semaphores.
	healthy, suspect chan struct{}

	mu sync.Mutex
	// ctx bounds every probe; queue takes the clusters to reconcile. Both
	// come from the controller when it starts (see source).
	ctx   context.Context
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
}

func newProber(bs BrokerStatusClient, nm NATSMonitorClient, timeout time.Duration, concurrency int, interval time.Duration) *prober {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	if concurrency <= 0 {
		concurrency = DefaultProbeConcurrency
	}
	if interval <= 0 {
		interval = defaultProbeInterval
	}
	p := &prober{timeout: timeout, interval: interval, ctx: context.Background(),
		healthy: make(chan struct{}, concurrency), suspect: make(chan struct{}, max(1, concurrency/4))}
	if bs != nil {
		p.brokers = &podProbes[brokerReport]{p: p, what: "broker",
			ask: func(ctx context.Context, pod *corev1.Pod) brokerReport {
				st, err := bs.Status(ctx, pod)
				return brokerReport{Pod: pod.Name, Version: st.PolicyVersion, Err: err,
					Node: st.Node, Sessions: st.Load(), Draining: st.Draining, Shedding: st.Shed.Active,
					BackboneConnected: st.BackboneConnected != nil && *st.BackboneConnected, BackboneUnreported: st.BackboneConnected == nil}
			},
			failed:  func(r brokerReport) error { return r.Err },
			pending: func(pod string) brokerReport { return brokerReport{Pod: pod, Err: errNoAnswerYet} },
			same: func(a, b brokerReport) bool {
				return a.Pod == b.Pod && a.Version == b.Version && a.BackboneConnected == b.BackboneConnected &&
					a.Node == b.Node && a.Sessions == b.Sessions && a.Draining == b.Draining && a.Shedding == b.Shedding &&
					a.BackboneUnreported == b.BackboneUnreported && sameError(a.Err, b.Err)
			},
			withErr: func(r brokerReport, err error) brokerReport { r.Err = err; return r },
		}
	}
	if nm != nil {
		p.nats = &podProbes[natsReport]{p: p, what: "NATS",
			ask: func(ctx context.Context, pod *corev1.Pod) natsReport {
				rt, err := nm.Routes(ctx, pod)
				return natsReport{Pod: pod.Name, Peers: rt.Peers(), Err: err}
			},
			failed:  func(r natsReport) error { return r.Err },
			pending: func(pod string) natsReport { return natsReport{Pod: pod, Err: errNoAnswerYet} },
			same: func(a, b natsReport) bool {
				return a.Pod == b.Pod && a.Peers == b.Peers && sameError(a.Err, b.Err)
			},
			withErr: func(r natsReport, err error) natsReport { r.Err = err; return r },
		}
	}
	return p
}

// source is the controller's source of the clusters whose answers changed.
func (p *prober) source() source.Source {
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		p.mu.Lock()
		p.ctx, p.queue = ctx, q
		p.mu.Unlock()
		return nil
	})
}

func (p *prober) notify(cluster types.NamespacedName) {
	p.mu.Lock()
	q := p.queue
	p.mu.Unlock()
	if q != nil {
		q.Add(reconcile.Request{NamespacedName: cluster})
	}
}

// forget drops what is known about a cluster's pods (it was deleted).
func (p *prober) forget(cluster types.NamespacedName) {
	if p.brokers != nil {
		p.brokers.forget(cluster)
	}
	if p.nats != nil {
		p.nats.forget(cluster)
	}
}

// probedPods are the ready pods of a cluster that the prober asks: its
// brokers and its managed NATS servers. A reconcile lists them once and reads
// their answers twice (see Reconcile).
type probedPods struct {
	cluster       types.NamespacedName
	brokers, nats []*corev1.Pod
}

// probedPods lists the cluster's ready pods that the operator has a way to
// ask, from the manager's cache.
func (r *CometdClusterReconciler) probedPods(ctx context.Context, cc *v1.CometdCluster) (probedPods, error) {
	out := probedPods{cluster: client.ObjectKeyFromObject(cc)}
	var err error
	if r.probes != nil && r.probes.brokers != nil {
		if out.brokers, err = readyPods(ctx, r.Client, cc.Namespace, resources.BrokerSelector(cc), "broker"); err != nil {
			return out, err
		}
	}
	if r.probes != nil && r.probes.nats != nil && cc.ManagedNATS() {
		if out.nats, err = readyPods(ctx, r.Client, cc.Namespace, resources.NATSSelector(cc), "NATS"); err != nil {
			return out, err
		}
	}
	return out, nil
}

// brokerReports is the latest answer of every ready broker pod, in pod-name
// order; nil when the operator has no way to ask. Reading them has the pods
// whose answers are old asked again in the background.
func (r *CometdClusterReconciler) brokerReports(pods probedPods) []brokerReport {
	if r.probes == nil || r.probes.brokers == nil {
		return nil
	}
	return r.probes.brokers.reports(pods.cluster, pods.brokers)
}

// natsReports is the latest answer of every ready managed NATS pod, in
// pod-name order, as brokerReports.
func (r *CometdClusterReconciler) natsReports(pods probedPods, cc *v1.CometdCluster) []natsReport {
	if r.probes == nil || r.probes.nats == nil || !cc.ManagedNATS() {
		return nil
	}
	return r.probes.nats.reports(pods.cluster, pods.nats)
}

// readyPods lists the ready, not-deleting pods matching selector (from the
// manager's cache), in name order.
func readyPods(ctx context.Context, c client.Reader, ns string, selector map[string]string, what string) ([]*corev1.Pod, error) {
	var pods corev1.PodList
	if err := listClusterPods(ctx, c, ns, selector, &pods); err != nil {
		return nil, fmt.Errorf("list %s pods: %w", what, err)
	}
	var ready []*corev1.Pod
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp.IsZero() && podReady(p) {
			ready = append(ready, p)
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Name < ready[j].Name })
	return ready, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podProbes is the cache of one kind of answer (T), by cluster and pod.
type podProbes[T any] struct {
	p    *prober
	what string
	// ask asks one pod; failed is the error of an answer; pending is the
	// report of a pod not heard from; same tells whether two answers make
	// the same status; withErr replaces an answer's error.
	ask     func(context.Context, *corev1.Pod) T
	failed  func(T) error
	pending func(pod string) T
	same    func(a, b T) bool
	withErr func(T, error) T

	mu       sync.Mutex
	clusters map[types.NamespacedName]map[string]*probeEntry[T]
}

// probeEntry is what is known about one pod. A restarted pod (a new UID) is
// a new entry.
type probeEntry[T any] struct {
	uid      types.UID
	answer   T
	answered bool
	// asked is when the last probe started; inFlight while it runs.
	asked    time.Time
	inFlight bool
}

// reports returns the latest answers of pods (in their order), starts a
// probe of every pod whose answer is older than the interval and not being
// asked already, and forgets the cluster's pods that are not in pods.
func (pp *podProbes[T]) reports(cluster types.NamespacedName, pods []*corev1.Pod) []T {
	now := time.Now()
	out := make([]T, len(pods))
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.clusters == nil {
		pp.clusters = map[types.NamespacedName]map[string]*probeEntry[T]{}
	}
	old := pp.clusters[cluster]
	cur := make(map[string]*probeEntry[T], len(pods))
	for i, pod := range pods {
		e := old[pod.Name]
		if e == nil || e.uid != pod.UID {
			e = &probeEntry[T]{uid: pod.UID}
		}
		cur[pod.Name] = e
		if e.answered {
			out[i] = e.answer
		} else {
			out[i] = pp.pending(pod.Name)
		}
		if !e.inFlight && now.Sub(e.asked) >= pp.p.interval {
			e.inFlight, e.asked = true, now
			suspect := e.answered && pp.failed(e.answer) != nil
			go pp.probe(cluster, pod.DeepCopy(), e, suspect)
		}
	}
	if len(cur) == 0 {
		delete(pp.clusters, cluster)
	} else {
		pp.clusters[cluster] = cur
	}
	return out
}

// probe asks pod in its lane and records the answer in e. When the answer
// changes what the cluster's status would say, and the pod is still one the
// cluster reports on, the cluster is queued.
func (pp *podProbes[T]) probe(cluster types.NamespacedName, pod *corev1.Pod, e *probeEntry[T], suspect bool) {
	lane := pp.p.healthy
	if suspect {
		lane = pp.p.suspect
	}
	pp.p.mu.Lock()
	base := pp.p.ctx
	pp.p.mu.Unlock()
	select {
	case lane <- struct{}{}:
	case <-base.Done():
		pp.mu.Lock()
		e.inFlight = false
		pp.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(base, pp.p.timeout)
	answer := pp.ask(ctx, pod)
	if pp.failed(answer) != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The client's own words vary with the request ("Get …: context
		// deadline exceeded"); the status says what happened.
		answer = pp.withErr(answer, fmt.Errorf("did not answer within %s", pp.p.timeout))
	}
	cancel()
	<-lane

	pp.mu.Lock()
	changed := !e.answered || !pp.same(e.answer, answer)
	e.answer, e.answered, e.inFlight = answer, true, false
	current := pp.clusters[cluster][pod.Name] == e
	pp.mu.Unlock()
	if changed && current {
		pp.p.notify(cluster)
	}
}

// forget drops the cluster's pods.
func (pp *podProbes[T]) forget(cluster types.NamespacedName) {
	pp.mu.Lock()
	delete(pp.clusters, cluster)
	pp.mu.Unlock()
}
