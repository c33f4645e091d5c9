package resources

import (
	"path"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/policy"
)

// PolicyPath is where brokers read the compiled channel policy. It is always
// set in broker.yaml, so that policy changes never change the broker
// configuration (and never roll the pods): brokers reload the file.
var PolicyPath = path.Join(PolicyDir, PolicyKey)

// PolicySettings are the cluster-wide parts of the policy document, from
// spec.access. Key files are where the Deployment mounts the keys Secret.
func PolicySettings(cc *v1.CometdCluster) policy.ClusterSettings {
	a := cc.Spec.Access
	s := policy.ClusterSettings{Default: policy.Effect(a.Default), AllowAnonymous: a.AllowAnonymous == nil || *a.AllowAnonymous}
	if s.Default == "" {
		s.Default = policy.Allow
	}
	if au := a.Auth; au != nil {
		s.Auth = policy.Auth{
			Algorithm:   policy.Algorithm(au.Algorithm),
			Issuer:      au.Issuer,
			Audience:    au.Audience,
			GroupsClaim: au.GroupsClaim,
		}
		if au.LeewaySeconds != nil {
			s.Auth.LeewaySeconds = new(int(*au.LeewaySeconds))
		}
		for _, k := range au.Keys {
			s.Auth.Keys = append(s.Auth.Keys, policy.Key{File: path.Join(AuthKeysDir, k.Key), ID: k.ID})
		}
	}
	return s
}

// policyConfigMapBuilder builds the cluster's policy ConfigMap (policy.json)
// from the document the reconciler compiled.
type policyConfigMapBuilder struct {
	base
	doc []byte
}

func (b *policyConfigMapBuilder) Build() client.Object {
	return &corev1.ConfigMap{ObjectMeta: b.meta(SuffixPolicy)}
}

func (b *policyConfigMapBuilder) Update(obj client.Object) error {
	cm := obj.(*corev1.ConfigMap)
	mergeMeta(cm, BrokerLabels(b.cc), nil)
	if cm.Data[PolicyKey] != string(b.doc) || len(cm.Data) != 1 || len(cm.BinaryData) != 0 {
		cm.Data = map[string]string{PolicyKey: string(b.doc)}
		cm.BinaryData = nil
	}
	return b.own(cm)
}
