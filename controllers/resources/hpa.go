package resources

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// CPUAutoscaled reports whether the cluster scales on CPU, through a
// HorizontalPodAutoscaler.
func CPUAutoscaled(cc *v1.CometdCluster) bool {
	a := cc.Spec.Autoscaling
	return a != nil && a.Metric == v1.MetricCPU && a.TargetCPUUtilizationPercentage != nil
}

// hpaBuilder builds the HorizontalPodAutoscaler of a cluster that scales on
// CPU. It aims at the CometdCluster's scale subresource, not at the
// Deployment: the HPA writes spec.replicas, and the operator sizes the
// Deployment from it as it does for any other writer.
type hpaBuilder struct{ base }

func (b *hpaBuilder) Build() client.Object {
	return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: b.meta("")}
}

func (b *hpaBuilder) Update(obj client.Object) error {
	hpa := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	mergeMeta(hpa, BrokerLabels(b.cc), nil)
	a := b.cc.Spec.Autoscaling
	desired := autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
			APIVersion: v1.GroupVersion.String(), Kind: "CometdCluster", Name: b.cc.Name,
		},
		MinReplicas: a.MinReplicas,
		MaxReplicas: a.MaxReplicas,
		Metrics: []autoscalingv2.MetricSpec{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{
					Type:               autoscalingv2.UtilizationMetricType,
					AverageUtilization: a.TargetCPUUtilizationPercentage,
				},
			},
		}},
		Behavior: hpaBehavior(a.Behavior),
	}
	if specChanged(hpa, desired, desired, hpa.Spec) {
		hpa.Spec = desired
	}
	return b.own(hpa)
}

// hpaBehavior turns spec.autoscaling.behavior into the HPA's: each direction
// that sets any rule gets one policy of pods and, when percent is set, one
// of percent per period, the larger applying (as the sessions autoscaler
// does). Rules left unset keep the HPA's own defaults.
func hpaBehavior(b *v1.AutoscalingBehavior) *autoscalingv2.HorizontalPodAutoscalerBehavior {
	if b == nil || b.ScaleUp == nil && b.ScaleDown == nil {
		return nil
	}
	return &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: hpaRules(b.ScaleUp), ScaleDown: hpaRules(b.ScaleDown)}
}

func hpaRules(r *v1.ScalingRules) *autoscalingv2.HPAScalingRules {
	if r == nil {
		return nil
	}
	out := &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: r.StabilizationWindowSeconds}
	period := int32(15)
	if r.PeriodSeconds != nil {
		period = *r.PeriodSeconds
	}
	if r.Pods != nil {
		out.Policies = append(out.Policies, autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PodsScalingPolicy, Value: *r.Pods, PeriodSeconds: period})
	}
	if r.Percent != nil && *r.Percent > 0 {
		out.Policies = append(out.Policies, autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: *r.Percent, PeriodSeconds: period})
	}
	if len(out.Policies) > 0 {
		maxPolicy := autoscalingv2.MaxChangePolicySelect
		out.SelectPolicy = &maxPolicy
	}
	return out
}
