package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// reconcileStatus writes the status computed from the children, and nothing
// when it is unchanged.
func (r *CometdClusterReconciler) reconcileStatus(ctx context.Context, cc *v1.CometdCluster, obs observed, applyErr error) error {
	status := computeStatus(cc, obs, applyErr)
	if equality.Semantic.DeepEqual(cc.Status, status) {
		return nil
	}
	old := cc.DeepCopy()
	cc.Status = status
	return r.Status().Patch(ctx, cc, client.MergeFrom(old))
}

// computeStatus is the cluster's status given its children, as a pure function.
// Conditions keep their transition time unless their status flips.
func computeStatus(cc *v1.CometdCluster, obs observed, applyErr error) v1.CometdClusterStatus {
	st := *cc.Status.DeepCopy()
	st.ObservedGeneration = cc.Generation
	st.Selector = labels.SelectorFromSet(resources.BrokerSelector(cc)).String()
	st.Endpoint = resources.Endpoint(cc)
	if d := obs.deployment; d != nil {
		st.Replicas, st.ReadyReplicas = d.Status.Replicas, d.Status.ReadyReplicas
	}
	b := brokerStateOf(obs.deployment, resources.DesiredReplicas(cc), st.Selector)
	n := natsStateOf(obs.nats, cc.ManagedNATS(), resources.NATSReplicas(cc))
	conds := conditionsFor(b, n, st.Endpoint, applyErr)
	if obs.policy.version != "" {
		st.PolicyVersion = obs.policy.version
		var writeErr error
		if !obs.policyWritten {
			writeErr = applyErr
		}
		conds = append(conds, policyAppliedCondition(obs.policy.version, obs.policy.err, writeErr, obs.brokers))
	}
	// The brokers and NATS were asked even if the spec could not be applied:
	// fan-out is what they report.
	conds = append(conds, fanoutReadyCondition(fanoutInput{
		DesiredBrokers: resources.DesiredReplicas(cc),
		ManagedNATS:    cc.ManagedNATS(),
		NATSReplicas:   resources.NATSReplicas(cc),
		NATS:           obs.natsRoutes,
		ExternalNATS:   cc.ExternalNATS(),
		Brokers:        obs.brokers,
		BrokersChecked: obs.brokersChecked,
	}))
	for _, c := range conds {
		c.ObservedGeneration = cc.Generation
		meta.SetStatusCondition(&st.Conditions, c)
	}
	st.State = stateOf(st.Conditions)
	if obs.brokersChecked {
		st.Sessions, _ = sessionLoad(obs.brokers)
	}
	st.Autoscaling = obs.autoscaling
	st.Rebalance = obs.rebalance
	return st
}

// stateOf sums the conditions up in one word for `kubectl get`: the first of
// Degraded, Progressing and Available that is True, else Unavailable.
func stateOf(conds []metav1.Condition) string {
	for _, s := range []string{v1.ConditionDegraded, v1.ConditionProgressing, v1.ConditionAvailable} {
		if meta.IsStatusConditionTrue(conds, s) {
			return s
		}
	}
	return v1.StateUnavailable
}

// conditionsFor computes the Available, Progressing and Degraded conditions.
func conditionsFor(b brokerState, n natsState, endpoint string, applyErr error) []metav1.Condition {
	return []metav1.Condition{
		availableCondition(b, endpoint),
		progressingCondition(b),
		degradedCondition(b, n, applyErr),
	}
}
