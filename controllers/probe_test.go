package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// scriptedBrokers answers /status for the pods it is told about; a pod in
// hang never answers until its context ends or release is closed.
type scriptedBrokers struct {
	hang    map[string]bool
	release chan struct{}
	held    atomic.Int64 // requests held right now
	mu      sync.Mutex
	version string
}

func (s *scriptedBrokers) Status(ctx context.Context, pod *corev1.Pod) (BrokerStatus, error) {
	if s.hang[pod.Name] {
		s.held.Add(1)
		defer s.held.Add(-1)
		select {
		case <-ctx.Done():
			return BrokerStatus{}, ctx.Err()
		case <-s.release:
			return BrokerStatus{}, errors.New("released")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return BrokerStatus{Node: pod.Name, PolicyVersion: s.version, BackboneConnected: ptrTrue()}, nil
}

func (s *scriptedBrokers) setVersion(v string) {
	s.mu.Lock()
	s.version = v
	s.mu.Unlock()
}

func testPods(names ...string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, n := range names {
		out = append(out, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "ns", UID: types.UID("uid-" + n)}})
	}
	return out
}

// startProber starts p's source with a queue of its own, as the controller
// would, and returns the queue.
func startProber(t *testing.T, p *prober) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	t.Helper()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); q.ShutDown() })
	if err := p.source().Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	return q
}

// queued waits until q holds cluster (and takes it out).
func queued(t *testing.T, q workqueue.TypedRateLimitingInterface[reconcile.Request], cluster types.NamespacedName) {
	t.Helper()
	testutil.Eventually(t, waitTimeout, fmt.Sprintf("%s queued", cluster), func(context.Context) (bool, string) {
		for q.Len() > 0 {
			req, _ := q.Get()
			q.Done(req)
			if req.NamespacedName == cluster {
				return true, ""
			}
		}
		return false, "not queued"
	})
}

// A reconcile gets the pods' latest answers at once, even from pods that
// hang; a healthy cluster's answers arrive (and queue it) while another
// cluster's brokers still hold every request they got; a hanging broker is
// reported by name once its timeout passes, and is then asked in the suspect
// lane, which leaves the healthy lane free.
func TestProberNeverWaitsOnAPod(t *testing.T) {
	fake := &scriptedBrokers{hang: map[string]bool{"a-0": true, "a-1": true, "a-2": true}, release: make(chan struct{}), version: "v1"}
	defer close(fake.release)
	// Four healthy slots, one suspect slot; a timeout no test waits for.
	p := newProber(fake, nil, time.Hour, 4, 10*time.Millisecond)
	q := startProber(t, p)
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	hung, healthy := testPods("a-0", "a-1", "a-2"), testPods("b-0", "b-1", "b-2", "b-3", "b-4")

	for i, r := range p.brokers.reports(a, hung) {
		if r.Pod != hung[i].Name || !errors.Is(r.Err, errNoAnswerYet) {
			t.Fatalf("report %d before any answer = %+v, want %s with errNoAnswerYet", i, r, hung[i].Name)
		}
	}
	p.brokers.reports(b, healthy)
	// The first answer queues b; the others follow through the same slot.
	queued(t, q, b)
	testutil.Eventually(t, waitTimeout, "b's five answers", func(context.Context) (bool, string) {
		for i, r := range p.brokers.reports(b, healthy) {
			if r.Err != nil || r.Version != "v1" || r.Pod != healthy[i].Name || !r.BackboneConnected {
				return false, fmt.Sprintf("report %d = %+v", i, r)
			}
		}
		return true, ""
	})
	// Every hanging request is still held: b's five answers came through
	// the one healthy slot the three hanging brokers left.
	testutil.Eventually(t, waitTimeout, "the three hanging requests held", func(context.Context) (bool, string) {
		n := fake.held.Load()
		return n == 3, fmt.Sprintf("%d held", n)
	})

	// A change in an answer queues the cluster again; the same answer does not.
	fake.setVersion("v2")
	testutil.Eventually(t, waitTimeout, "b's new version", func(context.Context) (bool, string) {
		got := p.brokers.reports(b, healthy)
		return got[0].Version == "v2", got[0].Version
	})
	queued(t, q, b)
}

func TestProberReportsAHangingPodByNameAndKeepsItInTheSuspectLane(t *testing.T) {
	fake := &scriptedBrokers{hang: map[string]bool{"a-0": true, "a-1": true, "a-2": true}, release: make(chan struct{}), version: "v1"}
	defer close(fake.release)
	p := newProber(fake, nil, 200*time.Millisecond, 4, 10*time.Millisecond)
	q := startProber(t, p)
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	hung, healthy := testPods("a-0", "a-1", "a-2"), testPods("b-0", "b-1", "b-2", "b-3")

	p.brokers.reports(a, hung)
	queued(t, q, a)
	testutil.Eventually(t, waitTimeout, "every hanging broker timed out", func(context.Context) (bool, string) {
		got := p.brokers.reports(a, hung)
		for _, r := range got {
			if r.Err == nil || r.Err.Error() != "did not answer within 200ms" {
				return false, fmt.Sprintf("%+v", got)
			}
		}
		return true, ""
	})
	// Asked again, the three hanging brokers queue for the one suspect
	// slot: at most one is held at a time, and a healthy cluster of four
	// pods gets all four healthy slots.
	p.brokers.reports(a, hung)
	p.brokers.reports(b, healthy)
	// The first answer queues b; the others follow.
	queued(t, q, b)
	testutil.Eventually(t, waitTimeout, "b's four answers", func(context.Context) (bool, string) {
		for _, r := range p.brokers.reports(b, healthy) {
			if r.Err != nil {
				return false, fmt.Sprintf("report %+v", r)
			}
		}
		return true, ""
	})
	if n := fake.held.Load(); n > 1 {
		t.Fatalf("%d hanging requests held at once, want at most the one suspect slot", n)
	}
	// A deleted cluster's pods are forgotten.
	p.forget(a)
	p.brokers.mu.Lock()
	left := p.brokers.clusters[a]
	p.brokers.mu.Unlock()
	if left != nil {
		t.Fatalf("forgotten cluster still cached: %v", left)
	}
}

// startHangingBrokerPod creates a ready broker pod whose admin endpoint
// takes every request and never answers it.
func startHangingBrokerPod(t *testing.T, cc *v1.CometdCluster, name string, held *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	startReadyPod(t, cc, name, resources.BrokerLabels(cc), corev1.Container{Name: "broker", Image: testBrokerImage}, "10.1.0.9",
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			held.Add(1)
			defer held.Add(-1)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
	// Cleanups run last-in first-out: release before the server closes.
	t.Cleanup(func() { close(release) })
}

// Many clusters at once, a quarter of them with a broker that never
// answers, reconciled by several workers (the suite runs 4) under the race
// detector: the healthy ones all get PolicyApplied, the others name their
// hanging broker, and a change to every cluster's spec.broker rolls every
// Deployment.
func TestManyClustersWithHangingBrokers(t *testing.T) {
	ns := newNamespace(t)
	const n = 40
	var held atomic.Int64
	type member struct {
		cc     *v1.CometdCluster
		broker *fakeBroker // nil: it hangs
	}
	var all []member
	for i := range n {
		cc := create(t, newCluster(ns, fmt.Sprintf("c%02d", i), 1, false))
		m := member{cc: cc}
		if i%4 == 0 {
			startHangingBrokerPod(t, cc, cc.Name+"-broker", &held)
		} else {
			m.broker = startBrokerPod(t, cc, cc.Name+"-broker")
		}
		all = append(all, m)
	}
	for _, m := range all {
		if m.broker == nil {
			waitConditionsSaying(t, m.cc, map[string]string{v1.ConditionPolicyApplied: "False/" + ReasonBrokerUnreachable},
				m.cc.Name+"-broker (did not answer within")
			continue
		}
		enforceCurrentPolicy(t, m.cc, m.broker)
	}
	for _, m := range all {
		if m.broker != nil {
			waitConditions(t, m.cc, map[string]string{v1.ConditionPolicyApplied: "True/" + ReasonPolicyEnforced})
		}
	}

	hashes := map[string]string{}
	for _, m := range all {
		hashes[m.cc.Name] = getDeployment(t, m.cc).Spec.Template.Annotations[resources.AnnotationConfigHash]
		updateCluster(t, m.cc, func(cc *v1.CometdCluster) { cc.Spec.Broker.MaxQueue = ptrInt32(4321) })
	}
	testutil.Eventually(t, waitTimeout, "every Deployment rolled", func(context.Context) (bool, string) {
		var stale []string
		for _, m := range all {
			d := &appsv1.Deployment{}
			if !get(t, ns, m.cc.Name, d) || d.Spec.Template.Annotations[resources.AnnotationConfigHash] == hashes[m.cc.Name] {
				stale = append(stale, m.cc.Name)
			}
		}
		return len(stale) == 0, "not rolled: " + strings.Join(stale, ", ")
	})
}

func ptrInt32(v int32) *int32 { return &v }

// The cache keeps what the prober and the autoscaler read of a pod, and drops
// the rest.
func TestSlimPodKeepsWhatTheOperatorReads(t *testing.T) {
	ready := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "b-0", Namespace: "ns", Labels: map[string]string{"a": "b"},
			Annotations:   map[string]string{podDeletionCost: "3"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec: corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "broker", Image: "i",
			Env: []corev1.EnvVar{{Name: "X", Value: strings.Repeat("x", 1000)}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}},
			Conditions:        []corev1.PodCondition{ready},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "broker", Ready: true}}},
	}
	out, err := slimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Pod)
	if got.Name != "b-0" || got.Labels["a"] != "b" || got.Annotations[podDeletionCost] != "3" {
		t.Errorf("metadata lost: %+v", got.ObjectMeta)
	}
	if !podReady(got) || got.Status.PodIP != "10.0.0.1" || len(got.Status.PodIPs) != 1 || got.Status.Phase != corev1.PodRunning {
		t.Errorf("status lost: %+v", got.Status)
	}
	if got.ManagedFields != nil || len(got.Spec.Containers) != 0 || got.Spec.NodeName != "" || got.Status.ContainerStatuses != nil {
		t.Errorf("kept what the operator never reads: managedFields %v, spec %+v, container statuses %v",
			got.ManagedFields, got.Spec, got.Status.ContainerStatuses)
	}
	// Anything else (a tombstone of a deleted pod) passes through.
	tomb := "not a pod"
	if out, err := slimPod(tomb); err != nil || out != tomb {
		t.Errorf("slimPod(%q) = %v, %v", tomb, out, err)
	}
}
