package controllers

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// sessionsCluster is a cluster "chat" on an external NATS that autoscales on
// sessions between 1 and 4 brokers at 100 sessions per broker, with the
// periods shortened so that the test sees several decisions.
func sessionsCluster(ns string) *v1.CometdCluster {
	cc := newCluster(ns, "chat", 1, false)
	cc.Spec.NATS = &v1.NATSSpec{URL: "nats://nats.infra:4222"}
	cc.Spec.Autoscaling = &v1.AutoscalingSpec{MinReplicas: ptr.To[int32](1), MaxReplicas: 4, Metric: v1.MetricSessions,
		TargetSessionsPerPod: ptr.To[int32](100), Behavior: &v1.AutoscalingBehavior{
			ScaleUp:   &v1.ScalingRules{PeriodSeconds: ptr.To[int32](1)},
			ScaleDown: &v1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](0), PeriodSeconds: ptr.To[int32](1)},
		}}
	return cc
}

// waitReplicas waits until spec.replicas is want and returns the cluster.
func waitReplicas(t *testing.T, cc *v1.CometdCluster, want int32) *v1.CometdCluster {
	t.Helper()
	got := &v1.CometdCluster{}
	testutil.Eventually(t, waitTimeout, fmt.Sprintf("spec.replicas %d", want), func(context.Context) (bool, string) {
		get(t, cc.Namespace, cc.Name, got)
		a := got.Status.Autoscaling
		if a == nil {
			return false, fmt.Sprintf("replicas %v, no autoscaling status", ptr.Deref(got.Spec.Replicas, -1))
		}
		return *got.Spec.Replicas == want && getDeploymentReplicas(t, cc) == want && a.DesiredReplicas == want && a.LastScaleTime != nil,
			fmt.Sprintf("replicas %d (Deployment %d): %s", *got.Spec.Replicas, getDeploymentReplicas(t, cc), a.Reason)
	})
	return got
}

func getDeploymentReplicas(t *testing.T, cc *v1.CometdCluster) int32 {
	d := &appsv1.Deployment{}
	if !get(t, cc.Namespace, cc.Name, d) {
		return -1
	}
	return *d.Spec.Replicas
}

// events returns the messages of the cluster's events with the reason.
func eventsFor(t *testing.T, cc *v1.CometdCluster, reason string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(cc.Namespace)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == cc.Name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

// The sessions autoscaler follows the load the brokers report: up at once
// (bounded by maxReplicas), down a pod per period, never below minReplicas;
// it says why in status.autoscaling and in events, and `kubectl scale` is
// undone by its next decision.
func TestSessionsAutoscalerFollowsTheLoad(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, sessionsCluster(ns))
	waitForChildren(t, cc, brokerChildren("chat"))
	b := startBrokerPod(t, cc, "chat-a")
	b.setSessions(350)
	got := waitReplicas(t, cc, 4)
	if a := got.Status.Autoscaling; a.DesiredReplicas != 4 || a.CurrentSessionsPerPod != 350 || a.LastScaleTime == nil ||
		!strings.Contains(a.Reason, "350 per broker") {
		t.Fatalf("status.autoscaling %+v", a)
	}
	testutil.Eventually(t, waitTimeout, "status.sessions", func(context.Context) (bool, string) {
		get(t, ns, "chat", got)
		return got.Status.Sessions == 350, fmt.Sprint(got.Status.Sessions)
	})
	if ev := eventsFor(t, cc, ReasonScaled); len(ev) == 0 || !strings.Contains(ev[0], "spec.replicas 1 → 4") {
		t.Fatalf("Scaled events %q", ev)
	}
	b.setSessions(5000)
	// Already at maxReplicas: nothing to do.
	testutil.Eventually(t, waitTimeout, "a decision at the bound", func(context.Context) (bool, string) {
		get(t, ns, "chat", got)
		return got.Status.Autoscaling.CurrentSessionsPerPod == 5000, got.Status.Autoscaling.Reason
	})
	if *got.Spec.Replicas != 4 {
		t.Fatalf("replicas %d past maxReplicas 4", *got.Spec.Replicas)
	}
	// Down one pod at a time: 3, then 2, then 1, never below minReplicas.
	// Before each step the brokers are marked with their sessions as their
	// pod-deletion-cost, so that the emptiest go first.
	b.setSessions(10)
	for _, want := range []int32{3, 2, 1} {
		waitReplicas(t, cc, want)
	}
	pod := &corev1.Pod{}
	get(t, ns, "chat-a", pod)
	if c := pod.Annotations["controller.kubernetes.io/pod-deletion-cost"]; c != "10" {
		t.Fatalf("pod-deletion-cost %q, want the broker's 10 sessions", c)
	}
	// kubectl scale: the autoscaler wins at its next decision.
	got = waitReplicas(t, cc, 1)
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Replicas = ptr.To[int32](3)
	if err := env.Client.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, cc, 1)
}

// An autoscaled cluster whose load is steady is reconciled without a write.
func TestSteadyAutoscaledClusterWritesNothing(t *testing.T) {
	ns := newNamespace(t)
	cc := sessionsCluster(ns)
	cc.Spec.Replicas = ptr.To[int32](2)
	create(t, cc)
	waitForChildren(t, cc, brokerChildren("chat"))
	// The load is on target from the brokers' first answers: set after
	// the pods are ready, a first answer of 3 sessions each could make the
	// autoscaler (no stabilization window) shrink the cluster at once.
	startBrokerPodWithSessions(t, cc, "chat-a", 100)
	startBrokerPodWithSessions(t, cc, "chat-b", 95)
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2,
			ReadyReplicas: 2, AvailableReplicas: 2}
	})
	got := &v1.CometdCluster{}
	testutil.Eventually(t, waitTimeout, "a decision on the load", func(context.Context) (bool, string) {
		get(t, ns, "chat", got)
		return got.Status.Sessions == 195 && got.Status.Autoscaling != nil, fmt.Sprint(got.Status.Sessions)
	})
	assertNoOpReconcile(t, cc, brokerChildren("chat"))
	if *got.Spec.Replicas != 2 {
		t.Fatalf("replicas %d at a steady load on target", *got.Spec.Replicas)
	}
}

// A broker that does not answer never makes the cluster shrink.
func TestSessionsAutoscalerHoldsWithoutAnswers(t *testing.T) {
	ns := newNamespace(t)
	cc := sessionsCluster(ns)
	cc.Spec.Replicas = ptr.To[int32](3)
	create(t, cc)
	waitForChildren(t, cc, brokerChildren("chat"))
	// From their first answers (see TestSteadyAutoscaledClusterWritesNothing).
	startBrokerPodWithSessions(t, cc, "chat-a", 100)
	b := startBrokerPod(t, cc, "chat-b")
	b.set("", true) // errors
	got := &v1.CometdCluster{}
	testutil.Eventually(t, waitTimeout, "a decision", func(context.Context) (bool, string) {
		get(t, ns, "chat", got)
		st := got.Status.Autoscaling
		return st != nil && strings.Contains(st.Reason, "1 of 2 ready brokers that answered"), fmt.Sprintf("%+v", st)
	})
	// 100 answered plus one silent broker counted at the target: 2 brokers.
	waitReplicas(t, cc, 2)
	testutil.Eventually(t, waitTimeout, "more decisions", func(context.Context) (bool, string) {
		get(t, ns, "chat", got)
		return got.Status.Autoscaling.LastScaleTime != nil, ""
	})
	if *got.Spec.Replicas != 2 {
		t.Fatalf("replicas %d with a silent broker, want 2", *got.Spec.Replicas)
	}
}

// Metric cpu: the operator owns an HPA aimed at the cluster's scale
// subresource, and deletes it when the cluster stops scaling on CPU.
func TestCPUAutoscalingOwnsAnHPA(t *testing.T) {
	ns := newNamespace(t)
	cc := newCluster(ns, "chat", 2, false)
	cc.Spec.Autoscaling = &v1.AutoscalingSpec{MinReplicas: ptr.To[int32](2), MaxReplicas: 5, Metric: v1.MetricCPU,
		TargetCPUUtilizationPercentage: ptr.To[int32](60)}
	create(t, cc)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	testutil.Eventually(t, waitTimeout, "the HPA", func(context.Context) (bool, string) {
		return get(t, ns, "chat", hpa), "not created"
	})
	if hpa.Spec.ScaleTargetRef.Kind != "CometdCluster" || hpa.Spec.ScaleTargetRef.Name != "chat" || hpa.Spec.MaxReplicas != 5 ||
		*hpa.Spec.Metrics[0].Resource.Target.AverageUtilization != 60 {
		t.Fatalf("HPA spec %+v", hpa.Spec)
	}
	// The HPA writes spec.replicas through the scale subresource, as the
	// API server serves it for the CRD; the operator sizes the Deployment.
	scaleTo(t, cc, 4)
	testutil.Eventually(t, waitTimeout, "the Deployment to follow the scale", func(context.Context) (bool, string) {
		n := getDeploymentReplicas(t, cc)
		return n == 4, fmt.Sprint(n)
	})
	got := &v1.CometdCluster{}
	get(t, ns, "chat", got)
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Autoscaling.Metric, got.Spec.Autoscaling.TargetCPUUtilizationPercentage = v1.MetricSessions, nil
	got.Spec.Autoscaling.TargetSessionsPerPod = ptr.To[int32](500)
	if err := env.Client.Patch(context.Background(), got, patch); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, "the HPA to go", func(context.Context) (bool, string) {
		return !get(t, ns, "chat", &autoscalingv2.HorizontalPodAutoscaler{}), "still there"
	})
}

// scaleTo writes spec.replicas through the scale subresource, as kubectl
// scale and an HPA do.
func scaleTo(t *testing.T, cc *v1.CometdCluster, n int32) {
	t.Helper()
	got := &v1.CometdCluster{}
	get(t, cc.Namespace, cc.Name, got)
	scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: n}}
	scale.Name, scale.Namespace = cc.Name, cc.Namespace
	if err := env.Client.SubResource("scale").Update(context.Background(), got, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("scale to %d: %v", n, err)
	}
}

// The rebalancer asks the busiest broker of a settled cluster to give its
// surplus to the emptiest, once; while a broker sheds, or the cluster is
// not settled, it asks nothing more.
func TestRebalanceAsksTheBusiestBroker(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 3, false))
	waitForChildren(t, cc, brokerChildren("chat"))
	a, b, c := startBrokerPod(t, cc, "chat-a"), startBrokerPod(t, cc, "chat-b"), startBrokerPod(t, cc, "chat-c")
	// Shedding already; the answer that reports the sessions reports that.
	a.setShedding(true)
	a.setSessions(290)
	b.setSessions(10)
	c.setSessions(0)
	// Not settled: the Deployment has not reported 3 ready brokers.
	got := &v1.CometdCluster{}
	testutil.Eventually(t, waitTimeout, "status.sessions", func(context.Context) (bool, string) {
		get(t, ns, "chat", got)
		return got.Status.Sessions == 300, fmt.Sprint(got.Status.Sessions)
	})
	if n := len(a.shedRequests()); n != 0 {
		t.Fatalf("%d shed requests before the cluster settled", n)
	}
	setDeploymentStatus(t, cc, func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 3, UpdatedReplicas: 3,
			ReadyReplicas: 3, AvailableReplicas: 3}
	})
	waitConditions(t, cc, map[string]string{v1.ConditionProgressing: "False/" + ReasonRolloutComplete})
	if n := len(a.shedRequests()); n != 0 {
		t.Fatalf("%d shed requests while the broker sheds already", n)
	}
	a.setShedding(false)
	testutil.Eventually(t, waitTimeout, "a shed request", func(context.Context) (bool, string) {
		return len(a.shedRequests()) > 0, "none"
	})
	want := ShedRequest{Keep: 100, To: map[string]int64{"chat-c": 100, "chat-b": 90}, Rate: 100}
	if r := a.shedRequests()[0]; r.Keep != want.Keep || r.Rate != want.Rate || !maps.Equal(r.To, want.To) {
		t.Fatalf("shed request %+v, want %+v", r, want)
	}
	if len(b.shedRequests())+len(c.shedRequests()) != 0 {
		t.Fatal("a broker below the mean was asked to shed")
	}
	testutil.Eventually(t, waitTimeout, "status.rebalance and an event", func(context.Context) (bool, string) {
		get(t, ns, "chat", got)
		rb := got.Status.Rebalance
		return rb != nil && rb.Sessions == 190 && rb.LastTime != nil && len(eventsFor(t, cc, ReasonRebalancing)) == 1,
			fmt.Sprintf("%+v", rb)
	})
	// Within the cooldown nothing more is asked, though the load is as uneven.
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "chat"}}
	if _, err := reconciler.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := len(a.shedRequests()); n != 1 {
		t.Fatalf("%d shed requests within the cooldown, want 1", n)
	}
}
