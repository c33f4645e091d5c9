package resources

import (
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// pdbBuilder builds the brokers' PodDisruptionBudget.
type pdbBuilder struct{ base }

func (b *pdbBuilder) Build() client.Object {
	return &policyv1.PodDisruptionBudget{ObjectMeta: b.meta("")}
}

func (b *pdbBuilder) Update(obj client.Object) error {
	pdb := obj.(*policyv1.PodDisruptionBudget)
	mergeMeta(pdb, BrokerLabels(b.cc), nil)
	maxUnavailable := intstr.FromInt32(1)
	if m := b.cc.Spec.DisruptionBudget.MaxUnavailable; m != nil {
		maxUnavailable = *m
	}
	desired := policyv1.PodDisruptionBudgetSpec{
		Selector:       &metav1.LabelSelector{MatchLabels: BrokerSelector(b.cc)},
		MaxUnavailable: ptr.To(maxUnavailable),
	}
	if specChanged(pdb, desired, desired, pdb.Spec) {
		pdb.Spec = desired
	}
	return b.own(pdb)
}
