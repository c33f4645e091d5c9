// Package resources builds every child object of a CometdCluster as a pure
// function of the CometdCluster and the operator's Options. Nothing here talks
// to the API server: the reconciler applies what these builders describe.
package resources

import (
	"maps"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// Child name suffixes, passed to CometdCluster.ChildName. The broker Deployment,
// the client Service and the PodDisruptionBudget carry the cluster's own name.
const (
	SuffixHeadless     = "headless"
	SuffixConfig       = "config"
	SuffixPolicy       = "policy"
	SuffixNATS         = "nats"
	SuffixNATSHeadless = "nats-headless"
	SuffixNATSConfig   = "nats-config"
	SuffixNATSAuth     = "nats-auth"
)

// Label keys and values.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPartOf    = "app.kubernetes.io/part-of"

	// AppBroker and AppNATS are the app.kubernetes.io/name values of the two
	// kinds of pods a cluster runs.
	AppBroker = "cometd-broker"
	AppNATS   = "nats"
	// ManagedBy is the app.kubernetes.io/managed-by value.
	ManagedBy = "cometd-operator"
)

// Annotation keys the operator writes.
const (
	// AnnotationConfigHash on a pod template is the hash of the configuration
	// the pods were started with; a new value rolls the pods.
	AnnotationConfigHash = "cometd.bayeux.dev/config-hash"
	// AnnotationSpecHash on a child is the hash of the spec the operator last
	// wrote, so that a spec the API server has defaulted is not rewritten.
	AnnotationSpecHash = "cometd.bayeux.dev/spec-hash"
	// AnnotationManagedAnnotations on a child lists (comma-separated) the
	// annotation keys copied from the spec, so that a key removed from the
	// spec is removed from the child, while keys others set are kept.
	AnnotationManagedAnnotations = "cometd.bayeux.dev/managed-annotations"
)

// BrokerSelector is the broker pods' selector: stable labels only, never
// changed after creation (a Deployment's selector is immutable).
func BrokerSelector(cc *v1.CometdCluster) map[string]string {
	return map[string]string{LabelName: AppBroker, LabelInstance: cc.Name}
}

// NATSSelector is the managed NATS pods' selector.
func NATSSelector(cc *v1.CometdCluster) map[string]string {
	return map[string]string{LabelName: AppNATS, LabelInstance: cc.Name}
}

// BrokerLabels are the labels of every broker-side child and of the broker pods.
func BrokerLabels(cc *v1.CometdCluster) map[string]string {
	l := BrokerSelector(cc)
	l[LabelComponent] = "broker"
	l[LabelManagedBy] = ManagedBy
	l[LabelPartOf] = "cometd"
	return l
}

// NATSLabels are the labels of every managed-NATS child and of its pods.
func NATSLabels(cc *v1.CometdCluster) map[string]string {
	l := NATSSelector(cc)
	l[LabelComponent] = "backbone"
	l[LabelManagedBy] = ManagedBy
	l[LabelPartOf] = "cometd"
	return l
}

// brokerPodLabels adds the user's pod labels under the operator's (the API
// refuses user labels that would replace the selector's).
func brokerPodLabels(cc *v1.CometdCluster) map[string]string {
	l := maps.Clone(cc.Spec.Pod.Labels)
	if l == nil {
		l = map[string]string{}
	}
	maps.Copy(l, BrokerLabels(cc))
	return l
}
