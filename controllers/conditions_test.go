package controllers

import (
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

func TestConditions(t *testing.T) {
	ready := brokerState{Exists: true, Observed: true, Desired: 3, Replicas: 3, Updated: 3, Ready: 3, Available: 3,
		ProgressReason: deploymentComplete}
	with := func(mut func(*brokerState)) brokerState { b := ready; mut(&b); return b }
	for _, tc := range []struct {
		name                          string
		b                             brokerState
		n                             natsState
		err                           error
		available, progress, degraded string
	}{
		{"not created", brokerState{Desired: 3}, natsState{}, nil,
			ReasonNoBrokerReady, ReasonCreating, ReasonAsExpected},
		{"all ready", ready, natsState{}, nil, ReasonBrokersReady, ReasonRolloutComplete, ReasonAsExpected},
		{"rolling update", with(func(b *brokerState) { b.Updated = 1; b.ProgressReason = "ReplicaSetUpdated" }), natsState{}, nil,
			ReasonBrokersReady, ReasonRollingUpdate, ReasonAsExpected},
		{"scaling down", with(func(b *brokerState) { b.Desired = 2 }), natsState{}, nil,
			ReasonBrokersReady, ReasonScalingDown, ReasonAsExpected},
		{"scaling down, not yet observed", with(func(b *brokerState) { b.Desired, b.Observed = 2, false }), natsState{}, nil,
			ReasonBrokersReady, ReasonScalingDown, ReasonAsExpected},
		{"scaling down by more than the surge during a rollout", with(func(b *brokerState) {
			b.Desired, b.Replicas, b.Updated, b.ProgressReason = 1, 4, 1, "ReplicaSetUpdated"
		}), natsState{}, nil, ReasonBrokersReady, ReasonScalingDown, ReasonAsExpected},
		// A rollout with maxSurge 1 runs desired+1 pods, some on the old spec.
		{"rolling update, surge pod starting", with(func(b *brokerState) {
			b.Replicas, b.Updated, b.Available, b.ProgressReason = 4, 1, 3, "ReplicaSetUpdated"
		}), natsState{}, nil, ReasonBrokersReady, ReasonRollingUpdate, ReasonAsExpected},
		{"rolling update, mid-way", with(func(b *brokerState) {
			b.Replicas, b.Updated, b.Ready, b.Available, b.ProgressReason = 4, 2, 4, 4, "ReplicaSetUpdated"
		}), natsState{}, nil, ReasonBrokersReady, ReasonRollingUpdate, ReasonAsExpected},
		{"rolling update, last old pod draining", with(func(b *brokerState) {
			b.Replicas, b.Updated, b.Ready, b.Available, b.ProgressReason = 4, 3, 4, 4, "ReplicaSetUpdated"
		}), natsState{}, nil, ReasonBrokersReady, ReasonRollingUpdate, ReasonAsExpected},
		{"rolling update, not yet observed", with(func(b *brokerState) { b.Observed = false }), natsState{}, nil,
			ReasonBrokersReady, ReasonRollingUpdate, ReasonAsExpected},
		{"broker lost after rollout", with(func(b *brokerState) { b.Ready, b.Available = 2, 2 }), natsState{}, nil,
			ReasonBrokersReady, ReasonRolloutComplete, ReasonBrokersUnavailable},
		{"stuck", with(func(b *brokerState) { b.Stuck, b.Ready, b.ProgressReason = true, 0, "ProgressDeadlineExceeded" }), natsState{}, nil,
			ReasonNoBrokerReady, ReasonRolloutStuck, ReasonRolloutStuck},
		{"quota", with(func(b *brokerState) { b.FailureMessage = "exceeded quota" }), natsState{}, nil,
			ReasonBrokersReady, ReasonRolloutComplete, ReasonReplicaFailure},
		{"nats down", ready, natsState{Managed: true, Desired: 3, Ready: 1}, nil,
			ReasonBrokersReady, ReasonRolloutComplete, ReasonNATSUnavailable},
		{"apply failed", ready, natsState{}, errors.New("forbidden"),
			ReasonBrokersReady, ReasonRolloutComplete, ReasonApplyFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := conditionsFor(tc.b, tc.n, "http://x/cometd", tc.err)
			want := map[string]string{v1.ConditionAvailable: tc.available, v1.ConditionProgressing: tc.progress,
				v1.ConditionDegraded: tc.degraded}
			for _, c := range cs {
				if c.Reason != want[c.Type] {
					t.Errorf("%s reason = %s (%s), want %s", c.Type, c.Reason, c.Message, want[c.Type])
				}
				if c.Message == "" || (c.Status != metav1.ConditionTrue && c.Status != metav1.ConditionFalse) {
					t.Errorf("%s = %+v: needs a message and a definite status", c.Type, c)
				}
			}
		})
	}
}
