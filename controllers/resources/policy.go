package resources

import (
	"path"

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
			JWKSURL:     au.JWKSURL,
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
