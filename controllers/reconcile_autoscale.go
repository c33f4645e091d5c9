package controllers

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// Event reasons of the autoscaler and the rebalancer.
const (
	ReasonScaled          = "Scaled"
	ReasonScaleFailed     = "ScaleFailed"
	ReasonRebalancing     = "Rebalancing"
	ReasonRebalanceFailed = "RebalanceFailed"
)

// DefaultAutoscaleInterval is AutoscaleInterval's default: how often an
// autoscaled or rebalanced cluster's load is looked at (the HPA's sync period).
const DefaultAutoscaleInterval = 15 * time.Second

// rebalanceCooldown is the least time between two rebalances of a cluster:
// long enough for the brokers to report the first one's shed.
const rebalanceCooldown = 10 * time.Second

// maxShedsInFlight bounds the POST /shed requests under way across clusters.
const maxShedsInFlight = 16

var (
	metricDesiredReplicas = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cometd_operator_autoscaler_desired_replicas",
		Help: "The broker count the sessions autoscaler last decided on, by cluster.",
	}, []string{"namespace", "cluster"})
	metricSessionsPerPod = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cometd_operator_autoscaler_sessions_per_pod",
		Help: "Client sessions per ready broker the sessions autoscaler last saw, by cluster.",
	}, []string{"namespace", "cluster"})
	metricScales = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cometd_operator_autoscaler_scales_total",
		Help: "Changes of spec.replicas made by the sessions autoscaler, by cluster and direction (up, down).",
	}, []string{"namespace", "cluster", "direction"})
	metricRebalanced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cometd_operator_rebalance_sessions_total",
		Help: "Sessions the operator asked brokers to hand over to even a cluster out, by cluster.",
	}, []string{"namespace", "cluster"})
)

func init() {
	metrics.Registry.MustRegister(metricDesiredReplicas, metricSessionsPerPod, metricScales, metricRebalanced)
}

// forgetMetrics drops a deleted cluster's series.
func forgetMetrics(cluster types.NamespacedName) {
	l := prometheus.Labels{"namespace": cluster.Namespace, "cluster": cluster.Name}
	for _, v := range []*prometheus.MetricVec{metricDesiredReplicas.MetricVec, metricSessionsPerPod.MetricVec, metricScales.MetricVec, metricRebalanced.MetricVec} {
		v.DeletePartialMatch(l)
	}
}

// clusterMemory is what the operator keeps of a cluster between reconciles:
// the sessions autoscaler's history, and when the cluster was last
// rebalanced (also in its status, which a reconcile may read before its own
// last write shows).
type clusterMemory struct {
	scale      scaleHistory
	rebalanced time.Time
}

func (m *clusterMemory) empty() bool {
	return m.scale.since.IsZero() && m.scale.recs == nil && m.scale.lastScale.IsZero() && m.rebalanced.IsZero()
}

// memories holds each cluster's clusterMemory; a cluster with nothing to
// remember has no entry. A nil one keeps nothing (a reconciler
// SetupWithManager did not set up).
type memories struct {
	mu sync.Mutex
	m  map[types.NamespacedName]clusterMemory
}

func (h *memories) get(k types.NamespacedName) clusterMemory {
	if h == nil {
		return clusterMemory{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[k]
}

// update changes k's memory with f.
func (h *memories) update(k types.NamespacedName, f func(*clusterMemory)) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.m[k]
	f(&m)
	if m.empty() {
		delete(h.m, k)
	} else {
		h.m[k] = m
	}
}

// forget drops everything kept about a deleted cluster.
func (h *memories) forget(k types.NamespacedName) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, k)
}

// sessionsAutoscaled reports whether the operator's own autoscaler sizes the
// cluster.
func sessionsAutoscaled(cc *v1.CometdCluster) bool {
	a := cc.Spec.Autoscaling
	return a != nil && a.Metric == v1.MetricSessions && a.TargetSessionsPerPod != nil
}

// sessionLoad sums the client sessions of the brokers that answered.
func sessionLoad(reports []brokerReport) (sessions int64, answered int32) {
	for _, b := range reports {
		if b.Err == nil {
			sessions += b.Sessions
			answered++
		}
	}
	return sessions, answered
}

// autoscale decides the broker count of a cluster that scales on sessions and,
// when it differs from spec.replicas, writes it through the scale subresource
// (and into cc, so that this reconcile sizes the Deployment with it). It
// returns the autoscaling status to report, nil for other clusters.
func (r *CometdClusterReconciler) autoscale(ctx context.Context, cc *v1.CometdCluster, reports []brokerReport) (*v1.AutoscalingStatus, error) {
	key := client.ObjectKeyFromObject(cc)
	if !sessionsAutoscaled(cc) {
		r.memory.update(key, func(m *clusterMemory) { m.scale = scaleHistory{} })
		return nil, nil
	}
	a := cc.Spec.Autoscaling
	up, down := behaviorOf(a)
	sessions, answered := sessionLoad(reports)
	hist := r.memory.get(key).scale
	if prev := cc.Status.Autoscaling; prev != nil && prev.LastScaleTime != nil && prev.LastScaleTime.After(hist.lastScale) {
		hist.lastScale = prev.LastScaleTime.Time
	}
	// Whole seconds, as the status stores times: an unchanged decision must
	// compare equal to the one read back.
	now := time.Now().Truncate(time.Second)
	d := decideScale(scaleInput{
		Now: now, Current: resources.DesiredReplicas(cc), Min: minReplicas(a), Max: max(a.MaxReplicas, minReplicas(a)),
		Target: *a.TargetSessionsPerPod, Sessions: sessions, Reported: answered, Ready: int32(len(reports)),
		Up: up, Down: down, History: hist,
	})
	r.memory.update(key, func(m *clusterMemory) { m.scale = d.History })
	st := &v1.AutoscalingStatus{DesiredReplicas: d.Desired, Reason: d.Reason}
	if !hist.lastScale.IsZero() {
		st.LastScaleTime = &metav1.Time{Time: hist.lastScale}
	}
	if answered > 0 {
		st.CurrentSessionsPerPod = sessions / int64(answered)
	}
	labels := prometheus.Labels{"namespace": cc.Namespace, "cluster": cc.Name}
	metricDesiredReplicas.With(labels).Set(float64(d.Desired))
	metricSessionsPerPod.With(labels).Set(float64(st.CurrentSessionsPerPod))
	if cc.Spec.Replicas != nil && *cc.Spec.Replicas == d.Desired {
		return st, nil
	}
	if d.Desired < resources.DesiredReplicas(cc) {
		r.markDeletionCosts(ctx, cc, reports)
	}
	// As an HPA does: through the scale subresource, on the version read, so
	// that a concurrent writer makes this one fail and the next reconcile
	// decide again.
	scale := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: cc.Name, Namespace: cc.Namespace, ResourceVersion: cc.ResourceVersion},
		Spec:       autoscalingv1.ScaleSpec{Replicas: d.Desired},
	}
	if err := r.SubResource("scale").Update(ctx, cc, client.WithSubResourceBody(scale)); err != nil {
		r.Recorder.Eventf(cc, nil, corev1.EventTypeWarning, ReasonScaleFailed, "Scale", "could not set spec.replicas to %d: %v", d.Desired, err)
		return st, fmt.Errorf("scale to %d: %w", d.Desired, err)
	}
	from := int32(1)
	if cc.Spec.Replicas != nil {
		from = *cc.Spec.Replicas
	}
	cc.Spec.Replicas = &d.Desired
	st.LastScaleTime = &metav1.Time{Time: now}
	r.memory.update(key, func(m *clusterMemory) { m.scale.lastScale = now })
	direction := "up"
	if d.Desired < from {
		direction = "down"
	}
	metricScales.With(prometheus.Labels{"namespace": cc.Namespace, "cluster": cc.Name, "direction": direction}).Inc()
	log.FromContext(ctx).Info("autoscaled", "from", from, "to", d.Desired, "reason", d.Reason)
	r.Recorder.Eventf(cc, nil, corev1.EventTypeNormal, ReasonScaled, "Scale", "spec.replicas %d → %d: %s", from, d.Desired, d.Reason)
	return st, nil
}

// podDeletionCost is the annotation the ReplicaSet controller reads to pick
// the pods a scale-down removes: the lowest cost first.
const podDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

// markDeletionCosts sets each answering broker's pod-deletion-cost to its
// client sessions before a scale-down, so that the Deployment removes the
// emptiest brokers and the drains move the fewest sessions. Only a
// scale-down writes them; a failure leaves the ReplicaSet's own choice.
func (r *CometdClusterReconciler) markDeletionCosts(ctx context.Context, cc *v1.CometdCluster, reports []brokerReport) {
	var pods corev1.PodList
	if err := listClusterPods(ctx, r.Client, cc.Namespace, resources.BrokerSelector(cc), &pods); err != nil {
		log.FromContext(ctx).Error(err, "list broker pods to mark their deletion cost")
		return
	}
	sessions := map[string]int64{}
	for _, rep := range reports {
		if rep.Err == nil {
			sessions[rep.Pod] = rep.Sessions
		}
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		n, ok := sessions[pod.Name]
		if !ok {
			continue
		}
		cost := strconv.FormatInt(min(n, math.MaxInt32), 10)
		if pod.Annotations[podDeletionCost] == cost {
			continue
		}
		patch := client.MergeFrom(pod.DeepCopy())
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[podDeletionCost] = cost
		if err := r.Patch(ctx, pod, patch); err != nil {
			log.FromContext(ctx).Error(err, "mark a broker's deletion cost", "pod", pod.Name)
		}
	}
}

func minReplicas(a *v1.AutoscalingSpec) int32 {
	if a.MinReplicas != nil {
		return *a.MinReplicas
	}
	return 1
}

// rebalanceSettings is spec.rebalance with its defaults.
func rebalanceSettings(cc *v1.CometdCluster) (on bool, tolerance, rate int32) {
	rb := cc.Spec.Rebalance
	on, tolerance, rate = true, 20, 100
	if rb.Enabled != nil {
		on = *rb.Enabled
	}
	if rb.TolerancePercent != nil {
		tolerance = *rb.TolerancePercent
	}
	if rb.SessionsPerSecond != nil {
		rate = *rb.SessionsPerSecond
	}
	return on, tolerance, rate
}

// rebalances reports whether the cluster's sessions are kept even.
func (r *CometdClusterReconciler) rebalances(cc *v1.CometdCluster) bool {
	on, _, _ := rebalanceSettings(cc)
	return on && r.Shedder != nil && (cc.ManagedNATS() || cc.ExternalNATS())
}

// rebalance asks the busiest brokers to shed their surplus when the sessions
// are uneven, and returns the rebalance status to report. It acts only on a
// settled cluster: every desired broker runs the current spec, is ready and
// answered, none drains or sheds already, and the last rebalance is
// rebalanceCooldown old. The requests go out off the reconcile worker.
func (r *CometdClusterReconciler) rebalance(ctx context.Context, cc *v1.CometdCluster, d *appsv1.Deployment, reports []brokerReport) *v1.RebalanceStatus {
	prev := cc.Status.Rebalance
	if !r.rebalances(cc) || d == nil {
		return prev
	}
	b := brokerStateOf(d, resources.DesiredReplicas(cc), "")
	if !b.Observed || b.Updated != b.Desired || b.Replicas != b.Desired || b.Ready != b.Desired || int32(len(reports)) != b.Desired {
		return prev
	}
	loads := make([]brokerLoad, 0, len(reports))
	for _, rep := range reports {
		if rep.Err != nil || rep.Draining || rep.Shedding || rep.Node == "" {
			return prev
		}
		loads = append(loads, brokerLoad{Pod: rep.Pod, Node: rep.Node, Sessions: rep.Sessions})
	}
	now := time.Now().Truncate(time.Second)
	last := r.memory.get(client.ObjectKeyFromObject(cc)).rebalanced
	if prev != nil && prev.LastTime != nil && prev.LastTime.After(last) {
		last = prev.LastTime.Time
	}
	if now.Sub(last) < rebalanceCooldown {
		return prev
	}
	_, tolerance, rate := rebalanceSettings(cc)
	orders, what := planRebalance(loads, tolerance, rate)
	if len(orders) == 0 {
		return prev
	}
	var moved int64
	for _, o := range orders {
		for _, n := range o.Request.To {
			moved += n
		}
	}
	pods := map[string]*corev1.Pod{}
	var list corev1.PodList
	if err := listClusterPods(ctx, r.Client, cc.Namespace, resources.BrokerSelector(cc), &list); err != nil {
		log.FromContext(ctx).Error(err, "list broker pods to rebalance")
		return prev
	}
	for i := range list.Items {
		pods[list.Items[i].Name] = &list.Items[i]
	}
	for _, o := range orders {
		pod := pods[o.Pod]
		if pod == nil {
			return prev
		}
		select {
		case r.sheds <- struct{}{}:
		default:
			return prev // too many under way: the next look plans again
		}
		go r.shed(cc.DeepCopy(), pod.DeepCopy(), o.Request)
	}
	r.memory.update(client.ObjectKeyFromObject(cc), func(m *clusterMemory) { m.rebalanced = now })
	log.FromContext(ctx).Info("rebalancing", "plan", what)
	r.Recorder.Eventf(cc, nil, corev1.EventTypeNormal, ReasonRebalancing, "Rebalance", "%s", what)
	metricRebalanced.With(prometheus.Labels{"namespace": cc.Namespace, "cluster": cc.Name}).Add(float64(moved))
	return &v1.RebalanceStatus{LastTime: &metav1.Time{Time: now}, Sessions: moved}
}

// shed sends one shed request and reports a failure as an event.
func (r *CometdClusterReconciler) shed(cc *v1.CometdCluster, pod *corev1.Pod, req ShedRequest) {
	defer func() { <-r.sheds }()
	timeout := r.ProbeTimeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := r.Shedder.Shed(ctx, pod, req); err != nil {
		r.Recorder.Eventf(cc, pod, corev1.EventTypeWarning, ReasonRebalanceFailed, "Rebalance",
			"broker %s did not take the request to shed sessions: %v", pod.Name, err)
	}
}
