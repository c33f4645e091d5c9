package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// CometdClusterReconciler makes a CometdCluster's children look like its spec
// and reports their state in its status.
type CometdClusterReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// Recorder emits an Event for each reconcile that creates or updates
	// children (naming them), and for the autoscaler and the rebalancer.
	Recorder events.EventRecorder
	// Options are the operator-wide defaults (images).
	Options resources.Options
	// BrokerStatus reads which policy version each ready broker enforces.
	// Nil means PolicyApplied is never checked against the brokers (Unknown).
	BrokerStatus BrokerStatusClient
	// NATSMonitor reads the managed NATS servers' routes for FanoutReady. Nil
	// means the routes are not checked (only the brokers' backbone connection).
	NATSMonitor NATSMonitorClient
	// The brokers and NATS servers are asked off the reconcile workers (see
	// prober): ProbeTimeout bounds one pod's answer (0: DefaultProbeTimeout),
	// ProbeConcurrency the pods asked at once across all clusters (0:
	// DefaultProbeConcurrency), and ProbeInterval is how old an answer may
	// get before a reconcile has the pod asked again (0: 1 s).
	ProbeTimeout     time.Duration
	ProbeConcurrency int
	ProbeInterval    time.Duration
	// MaxConcurrentReconciles is how many clusters are reconciled at once.
	// 0 means 1.
	MaxConcurrentReconciles int
	// PolicyRecheckInterval is how soon a cluster whose brokers do not all
	// enforce the latest policy, or whose fan-out is not ready, is checked
	// again. 0 means 5 s.
	PolicyRecheckInterval time.Duration
	// FanoutRecheckInterval is how often a cluster with a NATS backbone
	// (managed or external) whose fan-out is ready is checked again: NATS
	// routes and broker connections can break while every pod stays Ready,
	// which no event reports. 0 means DefaultFanoutRecheck.
	FanoutRecheckInterval time.Duration

	// Shedder asks brokers to hand sessions over, to rebalance a cluster.
	// Nil means no rebalancing.
	Shedder BrokerShedClient
	// AutoscaleInterval is how often a cluster that autoscales on sessions
	// or rebalances is looked at again. 0 means DefaultAutoscaleInterval.
	AutoscaleInterval time.Duration

	// probes holds the pods' latest answers; SetupWithManager creates it.
	probes *prober
	// memory is what the autoscaler and the rebalancer keep by cluster.
	memory *memories
	// sheds bounds the shed requests under way (maxShedsInFlight).
	sheds chan struct{}
}

// defaultPolicyRecheck is PolicyRecheckInterval's default.
const defaultPolicyRecheck = 5 * time.Second

// DefaultFanoutRecheck is FanoutRecheckInterval's default: how long a broken
// NATS mesh can go unreported in FanoutReady.
const DefaultFanoutRecheck = 45 * time.Second

// CacheOptions restricts the manager's cache of the kinds the operator owns to
// the objects it labels, so that it does not hold every ConfigMap and Service
// of the cluster in memory, and drops every cached object's managedFields,
// which the operator never reads (a third of a small object's size).
// cmd/manager and the tests both use it.
func CacheOptions() cache.Options {
	strip := cache.TransformStripManagedFields()
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedBy}), Transform: strip}
	return cache.Options{DefaultTransform: strip, ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}:                     managed,
		&appsv1.StatefulSet{}:                    managed,
		&corev1.Service{}:                        managed,
		&corev1.ConfigMap{}:                      managed,
		&policyv1.PodDisruptionBudget{}:          managed,
		&corev1.Pod{}:                            {Label: managed.Label, Transform: slimPod},
		&autoscalingv2.HorizontalPodAutoscaler{}: managed,
		&corev1.Secret{}:                         managed,
		&networkingv1.NetworkPolicy{}:            managed,
	}}
}

// slimPod is the cache's transform of broker and NATS pods: it keeps their
// metadata and the status fields the operator reads (phase, addresses,
// conditions) and drops the spec, the container statuses and managedFields,
// most of a running pod's size. The operator never updates a pod; it only
// patches a pod's annotations, from a diff that this leaves intact.
func slimPod(in any) (any, error) {
	pod, ok := in.(*corev1.Pod)
	if !ok {
		return in, nil
	}
	pod.ManagedFields = nil
	pod.Spec = corev1.PodSpec{}
	pod.Status = corev1.PodStatus{Phase: pod.Status.Phase, PodIP: pod.Status.PodIP, PodIPs: pod.Status.PodIPs,
		Conditions: pod.Status.Conditions}
	return pod, nil
}

// IndexFields registers the cache indexes both reconcilers use:
// ChannelPolicies by cluster name, and broker and NATS pods by cluster (see
// listClusterPods). Call it once per manager, before SetupWithManager.
func IndexFields(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1.ChannelPolicy{}, policyClusterIndex, func(o client.Object) []string {
		return []string{o.(*v1.ChannelPolicy).Spec.ClusterName}
	}); err != nil {
		return err
	}
	return mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, podClusterIndex, func(o client.Object) []string {
		l := o.GetLabels()
		if l[resources.LabelName] == "" || l[resources.LabelInstance] == "" {
			return nil
		}
		return []string{podClusterKey(l[resources.LabelName], l[resources.LabelInstance])}
	})
}

// podClusterIndex indexes the cached pods by the app and cluster of their
// labels: a list by label selector alone looks at every pod of the
// namespace, and was a fifth of the operator's CPU with 500 clusters in one.
const podClusterIndex = "cometd.pod.cluster"

func podClusterKey(app, cluster string) string { return app + "/" + cluster }

// listClusterPods lists the pods that selector (BrokerSelector or
// NATSSelector) selects, through the index.
func listClusterPods(ctx context.Context, c client.Reader, ns string, selector map[string]string, pods *corev1.PodList) error {
	return c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(selector),
		client.MatchingFields{podClusterIndex: podClusterKey(selector[resources.LabelName], selector[resources.LabelInstance])})
}

// SetupWithManager registers the reconciler: it watches CometdClusters, every
// kind of child it owns, the ChannelPolicies that select a cluster, the
// broker pods (whose readiness decides which brokers must enforce the
// policy) and the pods' answers to the prober.
func (r *CometdClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.probes = newProber(r.BrokerStatus, r.NATSMonitor, r.ProbeTimeout, r.ProbeConcurrency, r.ProbeInterval)
	r.sheds = make(chan struct{}, maxShedsInFlight)
	r.memory = &memories{m: map[types.NamespacedName]clusterMemory{}}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.CometdCluster{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.MaxConcurrentReconciles)}).
		WatchesRawSource(r.probes.source()).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&corev1.Secret{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&v1.ChannelPolicy{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{
				Namespace: o.GetNamespace(), Name: o.(*v1.ChannelPolicy).Spec.ClusterName}}}
		})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			l := o.GetLabels()
			if l[resources.LabelName] != resources.AppBroker || l[resources.LabelInstance] == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{
				Namespace: o.GetNamespace(), Name: l[resources.LabelInstance]}}}
		})).
		Named("cometdcluster").
		Complete(r)
}

// observed is the state of the children the status is computed from.
type observed struct {
	deployment *appsv1.Deployment
	nats       *appsv1.StatefulSet
	policy     compiledPolicy
	// brokers are the ready brokers' /status reports.
	brokers []brokerReport
	// natsRoutes are the ready managed NATS servers' route reports.
	natsRoutes []natsReport
	// brokersChecked is true when the brokers' /status was asked for.
	brokersChecked bool
	// autoscaling and rebalance are what the autoscaler and the rebalancer
	// report (nil: nothing).
	autoscaling *v1.AutoscalingStatus
	rebalance   *v1.RebalanceStatus
	// policyWritten is true when the policy ConfigMap holds the latest
	// document (its apply succeeded in this reconcile).
	policyWritten bool
}

// Reconcile applies the cluster's children in order, removes the ones its spec
// no longer asks for, and updates its status. A reconcile with nothing to
// change writes nothing.
func (r *CometdClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cc := &v1.CometdCluster{}
	if err := r.Get(ctx, req.NamespacedName, cc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the garbage collector deletes the children
	}
	pol, err := r.compilePolicy(ctx, cc)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The pods' latest answers, as the prober has them: a reconcile never
	// waits on a pod. Reading them has the pods whose answers are old asked
	// again in the background, now, so that the answers can arrive while
	// the children are applied; the status reads them again after that.
	// The autoscaler decides from these before the Deployment is sized.
	pods, err := r.probedPods(ctx, cc)
	if err != nil {
		return ctrl.Result{}, err
	}
	brokers := r.brokerReports(pods)
	r.natsReports(pods, cc)
	scaled, scaleErr := r.autoscale(ctx, cc, brokers)
	obs, applyErr := r.reconcileChildren(ctx, cc, pol)
	if applyErr == nil {
		applyErr = r.pruneObsolete(ctx, cc)
	}
	// The running children are observed even when the spec could not be
	// applied: the brokers and NATS keep serving, and the conditions about
	// them keep telling what they do.
	if applyErr != nil {
		if err := r.observeChildren(ctx, cc, &obs); err != nil {
			return ctrl.Result{}, errors.Join(applyErr, err)
		}
	}
	// The answers that came in while the children were applied: without
	// them, a new cluster's status would be written twice, first with its
	// pods not heard from.
	brokers = r.brokerReports(pods)
	obs.brokers, obs.autoscaling = brokers, scaled
	obs.brokersChecked = r.probes != nil && r.probes.brokers != nil
	obs.natsRoutes = r.natsReports(pods, cc)
	if applyErr == nil {
		obs.rebalance = r.rebalance(ctx, cc, obs.deployment, brokers)
	} else {
		obs.rebalance = cc.Status.Rebalance
	}
	if err := r.reconcileStatus(ctx, cc, obs, applyErr); err != nil {
		if applyErr == nil && scaleErr == nil {
			return ctrl.Result{}, err
		}
		log.FromContext(ctx).Error(err, "update status")
	}
	if err := errors.Join(applyErr, scaleErr); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.recheck(cc)}, nil
}

// forget drops what is kept about a deleted cluster.
func (r *CometdClusterReconciler) forget(cluster types.NamespacedName) {
	if r.probes != nil {
		r.probes.forget(cluster)
	}
	r.memory.forget(cluster)
	forgetMetrics(cluster)
}

// recheck is how soon to look at the cluster again: policyRecheck, or the
// autoscale interval when that is sooner and the cluster autoscales on
// sessions or rebalances.
func (r *CometdClusterReconciler) recheck(cc *v1.CometdCluster) time.Duration {
	d := r.policyRecheck(cc)
	if sessionsAutoscaled(cc) || r.rebalances(cc) {
		every := r.AutoscaleInterval
		if every <= 0 {
			every = DefaultAutoscaleInterval
		}
		if d == 0 || every < d {
			d = every
		}
	}
	return d
}

// policyRecheck is how soon to ask the brokers and NATS again: while a ready
// broker does not enforce the latest policy, or fan-out is not ready, soon;
// otherwise, when the cluster has a NATS backbone, every
// FanoutRecheckInterval, so that FanoutReady follows the mesh; otherwise
// never (events trigger it).
func (r *CometdClusterReconciler) policyRecheck(cc *v1.CometdCluster) time.Duration {
	c := meta.FindStatusCondition(cc.Status.Conditions, v1.ConditionPolicyApplied)
	policyPending := c != nil && c.Status == metav1.ConditionFalse && c.Reason != ReasonPolicyRejected
	if policyPending || fanoutPending(cc.Status.Conditions) {
		if r.PolicyRecheckInterval > 0 {
			return r.PolicyRecheckInterval
		}
		return defaultPolicyRecheck
	}
	if !cc.ManagedNATS() && !cc.ExternalNATS() {
		return 0
	}
	if r.FanoutRecheckInterval > 0 {
		return r.FanoutRecheckInterval
	}
	return DefaultFanoutRecheck
}

// reconcileChildren creates or updates every child in the builders' order.
// What it changed is one Event on the cluster, not one per child: creating
// a cluster writes one Event instead of a dozen (Events were 40 % of the
// operator's writes when 500 clusters were created at once).
func (r *CometdClusterReconciler) reconcileChildren(ctx context.Context, cc *v1.CometdCluster, pol compiledPolicy) (observed, error) {
	obs := observed{policy: pol}
	builders, err := resources.Builders(cc, r.Options, r.Scheme, pol.doc)
	if err != nil {
		return obs, fmt.Errorf("render children: %w", err)
	}
	var changes appliedChanges
	defer func() { changes.report(r.Recorder, cc) }()
	for _, b := range builders {
		obj := b.Build()
		var op controllerutil.OperationResult
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var err error
			op, err = controllerutil.CreateOrUpdate(ctx, r.Client, obj, func() error { return b.Update(obj) })
			return err
		})
		kind := r.kindOf(obj)
		if err != nil {
			if apierrors.IsAlreadyExists(err) {
				// The cache only holds objects with the operator's labels.
				err = fmt.Errorf("a %s named %s already exists and is not managed by this operator "+
					"(no %s=%s label): rename or delete it", kind, obj.GetName(), resources.LabelManagedBy, resources.ManagedBy)
			}
			r.Recorder.Eventf(cc, nil, corev1.EventTypeWarning, ReasonApplyFailed, "Apply",
				"could not apply %s %s: %v", kind, obj.GetName(), err)
			return obs, fmt.Errorf("%s %s: %w", kind, obj.GetName(), err)
		}
		if op != controllerutil.OperationResultNone {
			log.FromContext(ctx).Info("applied child", "kind", kind, "name", obj.GetName(), "operation", op)
			changes.add(op, kind+" "+obj.GetName())
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			obs.deployment = o
		case *appsv1.StatefulSet:
			obs.nats = o
		case *corev1.ConfigMap:
			obs.policyWritten = obs.policyWritten || o.Name == cc.ChildName(resources.SuffixPolicy)
		}
	}
	return obs, nil
}

// appliedChanges are the children one reconcile created and updated.
type appliedChanges struct {
	created, updated []string
}

func (c *appliedChanges) add(op controllerutil.OperationResult, what string) {
	if op == controllerutil.OperationResultCreated {
		c.created = append(c.created, what)
	} else {
		c.updated = append(c.updated, what)
	}
}

// report emits one Event for the changes: reason Created or Updated when
// all are of one kind, Applied otherwise; the message names every child.
func (c *appliedChanges) report(rec events.EventRecorder, cc *v1.CometdCluster) {
	var parts []string
	reason := "Applied"
	if len(c.created) > 0 {
		parts = append(parts, "created "+strings.Join(c.created, ", "))
		reason = "Created"
	}
	if len(c.updated) > 0 {
		parts = append(parts, "updated "+strings.Join(c.updated, ", "))
		reason = map[bool]string{true: "Updated", false: "Applied"}[len(c.created) == 0]
	}
	if len(parts) == 0 {
		return
	}
	rec.Eventf(cc, nil, corev1.EventTypeNormal, reason, reason, "%s", strings.Join(parts, "; "))
}

// observeChildren reads the broker Deployment and the managed NATS
// StatefulSet that an interrupted reconcileChildren did not reach, as they
// are; a missing one, or one this cluster does not control, stays nil.
func (r *CometdClusterReconciler) observeChildren(ctx context.Context, cc *v1.CometdCluster, obs *observed) error {
	if obs.deployment == nil {
		d := &appsv1.Deployment{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.ChildName("")}, d); err == nil {
			if metav1.IsControlledBy(d, cc) {
				obs.deployment = d
			}
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("read the broker Deployment: %w", err)
		}
	}
	if obs.nats == nil && cc.ManagedNATS() {
		sts := &appsv1.StatefulSet{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.ChildName(resources.SuffixNATS)}, sts); err == nil {
			if metav1.IsControlledBy(sts, cc) {
				obs.nats = sts
			}
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("read the managed NATS StatefulSet: %w", err)
		}
	}
	return nil
}

// pruneObsolete deletes the children the spec no longer asks for (managed NATS
// after spec.nats.managed is removed), when this cluster controls them.
func (r *CometdClusterReconciler) pruneObsolete(ctx context.Context, cc *v1.CometdCluster) error {
	for _, obj := range resources.Obsolete(cc) {
		if err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if !metav1.IsControlledBy(obj, cc) {
			continue
		}
		kind := r.kindOf(obj)
		if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete obsolete %s %s: %w", kind, obj.GetName(), err)
		}
		r.Recorder.Eventf(cc, obj, corev1.EventTypeNormal, "Deleted", "Delete", "deleted %s %s", kind, obj.GetName())
	}
	return nil
}

func (r *CometdClusterReconciler) kindOf(obj client.Object) string {
	gvk, err := apiutil.GVKForObject(obj, r.Scheme)
	if err != nil {
		return fmt.Sprintf("%T", obj)
	}
	return gvk.Kind
}
