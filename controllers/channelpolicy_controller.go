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
)

// ChannelPolicyReconciler keeps each ChannelPolicy's Accepted condition: is
// it valid, and does the cluster it names exist. The CometdCluster
// reconciler compiles the accepted policies into the cluster's ACL.
type ChannelPolicyReconciler struct {
	client.Client
}

// SetupWithManager registers the reconciler. A policy is reconsidered when it
// changes and when a CometdCluster of its name appears or goes.
func (r *ChannelPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.ChannelPolicy{}).
		// Only a cluster's creation or deletion changes its policies' Accepted.
		Watches(&v1.CometdCluster{}, handler.EnqueueRequestsFromMapFunc(r.policiesOfCluster),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		Named("channelpolicy").
		Complete(r)
}

func (r *ChannelPolicyReconciler) policiesOfCluster(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1.ChannelPolicyList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{policyClusterIndex: o.GetName()}); err != nil {
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
	err := r.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.ClusterName}, &v1.CometdCluster{})
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	status := *p.Status.DeepCopy()
	status.ObservedGeneration = p.Generation
	c := acceptedCondition(p, err == nil)
	c.ObservedGeneration = p.Generation
	meta.SetStatusCondition(&status.Conditions, c)
	if equality.Semantic.DeepEqual(status, p.Status) {
		return ctrl.Result{}, nil
	}
	old := p.DeepCopy()
	p.Status = status
	return ctrl.Result{}, r.Status().Patch(ctx, p, client.MergeFrom(old))
}

// acceptedCondition says whether the policy is valid and its cluster exists,
// with every validation error broker/policy reports.
func acceptedCondition(p *v1.ChannelPolicy, clusterExists bool) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionAccepted}
	if errs := policy.ValidatePolicy(SourcePolicy(p)); len(errs) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalid
		c.Message = "the policy is left out of the cluster's ACL: " + errors.Join(errs...).Error()
		return c
	}
	if !clusterExists {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonClusterNotFound
		c.Message = fmt.Sprintf("no CometdCluster %q in namespace %s; the policy applies once it exists", p.Spec.ClusterName, p.Namespace)
		return c
	}
	c.Status, c.Reason = metav1.ConditionTrue, ReasonAccepted
	c.Message = fmt.Sprintf("compiled into the ACL of CometdCluster %s (ConfigMap %s-%s)",
		p.Spec.ClusterName, p.Spec.ClusterName, resources.SuffixPolicy)
	return c
}
