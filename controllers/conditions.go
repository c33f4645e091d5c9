package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// Condition reasons. Each says what is going on in a word; the message says
// what to look at.
const (
	ReasonBrokersReady       = "BrokersReady"
	ReasonNoBrokerReady      = "NoBrokerReady"
	ReasonCreating           = "Creating"
	ReasonRollingUpdate      = "RollingUpdate"
	ReasonScalingUp          = "ScalingUp"
	ReasonScalingDown        = "ScalingDown"
	ReasonRolloutComplete    = "RolloutComplete"
	ReasonRolloutStuck       = "RolloutStuck"
	ReasonReplicaFailure     = "ReplicaFailure"
	ReasonBrokersUnavailable = "BrokersUnavailable"
	ReasonNATSUnavailable    = "NATSUnavailable"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonAsExpected         = "AsExpected"
)

// deploymentComplete is the Deployment controller's reason for a finished rollout.
const deploymentComplete = "NewReplicaSetAvailable"

// brokerState is what the conditions need to know about the broker Deployment.
type brokerState struct {
	// Exists is false before the Deployment has been created.
	Exists bool
	// Desired is the replica count the cluster asks for.
	Desired int32
	// Replicas, Updated, Ready and Available are the Deployment's status counts.
	Replicas, Updated, Ready, Available int32
	// Observed is false while the Deployment controller has not yet seen the
	// Deployment's latest generation.
	Observed bool
	// ProgressReason and ProgressMessage come from the Deployment's Progressing condition.
	ProgressReason, ProgressMessage string
	// Stuck is true when the rollout exceeded its progress deadline.
	Stuck bool
	// FailureMessage is set when pods could not be created (ReplicaFailure).
	FailureMessage string
	// Selector is the broker pods' label selector, for messages.
	Selector string
}

// natsState is what the conditions need to know about a managed NATS.
type natsState struct {
	Managed        bool
	Desired, Ready int32
}

func brokerStateOf(d *appsv1.Deployment, desired int32, selector string) brokerState {
	s := brokerState{Desired: desired, Selector: selector}
	if d == nil || d.CreationTimestamp.IsZero() {
		return s
	}
	st := d.Status
	s.Exists = true
	s.Replicas, s.Updated, s.Ready, s.Available = st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas
	s.Observed = st.ObservedGeneration >= d.Generation && st.ObservedGeneration > 0
	for _, c := range st.Conditions {
		switch c.Type {
		case appsv1.DeploymentProgressing:
			s.ProgressReason, s.ProgressMessage = c.Reason, c.Message
			s.Stuck = c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded"
		case appsv1.DeploymentReplicaFailure:
			if c.Status == corev1.ConditionTrue {
				s.FailureMessage = c.Message
			}
		}
	}
	return s
}

func natsStateOf(sts *appsv1.StatefulSet, managed bool, desired int32) natsState {
	n := natsState{Managed: managed, Desired: desired}
	if sts != nil {
		n.Ready = sts.Status.ReadyReplicas
	}
	return n
}

// rollingOut reports whether the brokers are being created, updated or scaled
// and have not stalled.
func (b brokerState) rollingOut() bool {
	if b.Stuck {
		return false
	}
	return !b.Exists || !b.Observed || b.Updated < b.Desired || b.Replicas != b.Desired ||
		(b.Available < b.Desired && b.ProgressReason != deploymentComplete)
}

// scalingDown reports whether the Deployment runs more brokers than asked
// because the replica count was lowered. A rolling update also runs more
// (up to resources.BrokerMaxSurge extra pods, while some pods are still on
// the previous spec): that is not a scale-down. More than the surge, or
// extra pods that all run the current spec, are.
func (b brokerState) scalingDown() bool {
	if b.Replicas <= b.Desired {
		return false
	}
	return b.Updated >= b.Replicas || b.Replicas > b.Desired+resources.BrokerMaxSurge
}

func condition(typ string, ok bool, reason, msg string) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg}
}

// availableCondition is True when at least one broker is ready to serve.
func availableCondition(b brokerState, endpoint string) metav1.Condition {
	if b.Ready > 0 {
		return condition(v1.ConditionAvailable, true, ReasonBrokersReady,
			fmt.Sprintf("%d of %d brokers ready; clients connect to %s", b.Ready, b.Desired, endpoint))
	}
	return condition(v1.ConditionAvailable, false, ReasonNoBrokerReady,
		fmt.Sprintf("no broker is ready yet; see `kubectl get pods -l %s` and the pods' events", b.Selector))
}

// progressingCondition is True while the brokers are created, updated or scaled.
func progressingCondition(b brokerState) metav1.Condition {
	switch {
	case b.Stuck:
		return condition(v1.ConditionProgressing, false, ReasonRolloutStuck,
			"the broker rollout exceeded its progress deadline: "+b.ProgressMessage)
	case !b.Exists || (!b.Observed && b.Replicas == 0):
		return condition(v1.ConditionProgressing, true, ReasonCreating,
			fmt.Sprintf("creating %d brokers", b.Desired))
	case b.scalingDown():
		return condition(v1.ConditionProgressing, true, ReasonScalingDown,
			fmt.Sprintf("scaling down from %d to %d brokers; sessions drain to the remaining brokers", b.Replicas, b.Desired))
	case !b.Observed || b.Updated < b.Desired || b.Updated < b.Replicas:
		msg := fmt.Sprintf("%d of %d brokers run the current spec", b.Updated, b.Desired)
		if old := b.Replicas - b.Updated; old > 0 && b.Observed {
			msg += fmt.Sprintf("; %d on the previous spec still running", old)
		}
		return condition(v1.ConditionProgressing, true, ReasonRollingUpdate, msg)
	case b.rollingOut():
		return condition(v1.ConditionProgressing, true, ReasonScalingUp,
			fmt.Sprintf("%d of %d brokers available", b.Available, b.Desired))
	}
	return condition(v1.ConditionProgressing, false, ReasonRolloutComplete,
		fmt.Sprintf("all %d brokers run the current spec", b.Desired))
}

// degradedCondition is True when the cluster runs below what was asked and is
// not on its way there, or the operator cannot apply the spec.
func degradedCondition(b brokerState, n natsState, applyErr error) metav1.Condition {
	switch {
	case applyErr != nil:
		return condition(v1.ConditionDegraded, true, ReasonApplyFailed,
			"the operator could not apply the spec: "+applyErr.Error())
	case b.FailureMessage != "":
		return condition(v1.ConditionDegraded, true, ReasonReplicaFailure,
			"broker pods cannot be created: "+b.FailureMessage)
	case b.Stuck:
		return condition(v1.ConditionDegraded, true, ReasonRolloutStuck,
			fmt.Sprintf("the broker rollout is stuck (%s); check the new pods' events and logs with `kubectl describe pods -l %s`",
				b.ProgressMessage, b.Selector))
	case b.rollingOut():
		// Not degraded: on its way.
	case b.Ready < b.Desired:
		return condition(v1.ConditionDegraded, true, ReasonBrokersUnavailable,
			fmt.Sprintf("%d of %d brokers ready; check `kubectl get pods -l %s`", b.Ready, b.Desired, b.Selector))
	case n.Managed && n.Ready < n.Desired:
		return condition(v1.ConditionDegraded, true, ReasonNATSUnavailable,
			fmt.Sprintf("%d of %d managed NATS servers ready; brokers may not reach each other", n.Ready, n.Desired))
	}
	return condition(v1.ConditionDegraded, false, ReasonAsExpected, "no problem detected")
}
