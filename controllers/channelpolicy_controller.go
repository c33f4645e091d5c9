package controllers

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// Accepted reasons.
const (
	ReasonAccepted        = "Accepted"
	ReasonInvalid         = "Invalid"
	ReasonClusterNotFound = "ClusterNotFound"
	// ReasonACLFrozen: the policy is valid, but another policy of its cluster
	// or the cluster's spec.access is not, so the cluster's ACL stays at its
	// last compiled version (the operator fails closed: leaving out an
	// invalid policy could drop a deny and widen access).
	ReasonACLFrozen = "ACLFrozen"
)

// ChannelPolicyReconciler keeps each ChannelPolicy's Accepted condition: is
// it part of its cluster's compiled ACL, and if not, why (it is invalid, its
// cluster does not exist, or the cluster's policies do not compile). The
// CometdCluster reconciler compiles the policies into the cluster's ACL; both
// compile the same inputs, so they agree.
type ChannelPolicyReconciler struct {
	client.Client
	// MaxConcurrentReconciles is how many policies are reconciled at once.
	// 0 means 1.
	MaxConcurrentReconciles int
}

// SetupWithManager registers the reconciler. A policy is reconsidered when it
// or another policy of its cluster changes, and when a CometdCluster of its
// name appears, goes or changes its spec (spec.access is compiled with the
// policies).
func (r *ChannelPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	specChanged := builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration()
	}})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.ChannelPolicy{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.MaxConcurrentReconciles)}).
		Watches(&v1.CometdCluster{}, handler.EnqueueRequestsFromMapFunc(r.policiesOfCluster), specChanged).
		// A sibling that turns invalid, or valid again, changes whether this
		// policy is compiled.
		Watches(&v1.ChannelPolicy{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.policiesOfClusterNamed(ctx, o.GetNamespace(), o.(*v1.ChannelPolicy).Spec.ClusterName)
		}), specChanged).
		Named("channelpolicy").
		Complete(r)
}

func (r *ChannelPolicyReconciler) policiesOfCluster(ctx context.Context, o client.Object) []reconcile.Request {
	return r.policiesOfClusterNamed(ctx, o.GetNamespace(), o.GetName())
}

func (r *ChannelPolicyReconciler) policiesOfClusterNamed(ctx context.Context, ns, cluster string) []reconcile.Request {
	var list v1.ChannelPolicyList
	if err := r.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{policyClusterIndex: cluster}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
	}
	return reqs
}

// Reconcile sets the policy's Accepted condition; it writes nothing when the
// condition is unchanged.
func (r *ChannelPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1.ChannelPolicy{}
	if err := r.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	cc := &v1.CometdCluster{}
	err := r.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.ClusterName}, cc)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	clusterExists := err == nil
	var compileErr error
	if clusterExists {
		_, errs, err := compileCluster(ctx, r.Client, cc)
		if err != nil {
			return ctrl.Result{}, err
		}
		compileErr = errors.Join(errs...)
	}
	status := *p.Status.DeepCopy()
	status.ObservedGeneration = p.Generation
	c := acceptedCondition(p, clusterExists, compileErr)
	c.ObservedGeneration = p.Generation
	meta.SetStatusCondition(&status.Conditions, c)
	if equality.Semantic.DeepEqual(status, p.Status) {
		return ctrl.Result{}, nil
	}
	old := p.DeepCopy()
	p.Status = status
	return ctrl.Result{}, r.Status().Patch(ctx, p, client.MergeFrom(old))
}

// acceptedCondition says whether the policy is part of its cluster's compiled
// ACL: it must be valid, its cluster must exist, and the cluster's policies
// and spec.access must compile (compileErr nil). When they do not, the
// operator keeps the ACL at its last compiled version (deny-all if none ever
// compiled) rather than leave a policy out, and the messages say so.
func acceptedCondition(p *v1.ChannelPolicy, clusterExists bool, compileErr error) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionAccepted}
	if errs := policy.ValidatePolicy(SourcePolicy(p)); len(errs) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalid
		c.Message = fmt.Sprintf("the policy is invalid: %v. Until it is fixed or deleted, CometdCluster %s keeps its last "+
			"compiled ACL (deny-all if none ever compiled) and no ChannelPolicy change reaches its brokers",
			errors.Join(errs...), p.Spec.ClusterName)
		return c
	}
	if !clusterExists {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonClusterNotFound
		c.Message = fmt.Sprintf("no CometdCluster %q in namespace %s; the policy applies once it exists", p.Spec.ClusterName, p.Namespace)
		return c
	}
	if compileErr != nil {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonACLFrozen
		c.Message = fmt.Sprintf("the policy is valid, but CometdCluster %s's ChannelPolicies or spec.access do not compile, "+
			"so its ACL stays at its last compiled version (deny-all if none ever compiled), which may lack this policy's "+
			"current rules; fix or delete the invalid ones: %v", p.Spec.ClusterName, compileErr)
		return c
	}
	c.Status, c.Reason = metav1.ConditionTrue, ReasonAccepted
	c.Message = fmt.Sprintf("compiled into the ACL of CometdCluster %s (ConfigMap %s-%s)",
		p.Spec.ClusterName, p.Spec.ClusterName, resources.SuffixPolicy)
	return c
}
