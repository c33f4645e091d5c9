package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// policyClusterIndex indexes ChannelPolicies by spec.clusterName.
const policyClusterIndex = "spec.clusterName"

// PolicyApplied reasons.
const (
	ReasonPolicyEnforced    = "Enforced"
	ReasonPolicyPropagating = "Propagating"
	ReasonPolicyRejected    = "PolicyRejected"
	ReasonNoReadyBroker     = "NoReadyBroker"
	ReasonBrokerUnreachable = "BrokerUnreachable"
)

// SourcePolicy converts a ChannelPolicy into the form broker/policy compiles.
func SourcePolicy(p *v1.ChannelPolicy) policy.SourcePolicy {
	sp := policy.SourcePolicy{Name: p.Namespace + "/" + p.Name}
	for _, r := range p.Spec.Rules {
		pr := policy.Rule{Name: r.Name, Effect: policy.Effect(r.Effect)}
		for _, a := range r.Actions {
			pr.Actions = append(pr.Actions, policy.Action(a))
		}
		for _, c := range r.Channels {
			pr.Channels = append(pr.Channels, string(c))
		}
		for _, pl := range r.Principals {
			pr.Principals = append(pr.Principals, string(pl))
		}
		sp.Rules = append(sp.Rules, pr)
	}
	return sp
}

// compiledPolicy is what the cluster's policy ConfigMap gets.
type compiledPolicy struct {
	// doc is the document to write; version is its version.
	doc     []byte
	version string
	// err says why the latest policies could not be compiled. The document is
	// then the previous one (or deny-all when there is none): the operator
	// fails closed rather than silently drop a policy that may deny.
	err error
}

// compileCluster compiles every ChannelPolicy of the cluster with its access
// settings; errs are the compile errors (see policy.Compile), err a failure
// to list the policies. Both reconcilers use it, so that the ConfigMap and
// the policies' Accepted conditions agree.
func compileCluster(ctx context.Context, c client.Reader, cc *v1.CometdCluster) (doc policy.Document, errs []error, err error) {
	var list v1.ChannelPolicyList
	if err := c.List(ctx, &list, client.InNamespace(cc.Namespace), client.MatchingFields{policyClusterIndex: cc.Name}); err != nil {
		return policy.Document{}, nil, fmt.Errorf("list ChannelPolicies: %w", err)
	}
	sources := make([]policy.SourcePolicy, 0, len(list.Items))
	for i := range list.Items {
		sources = append(sources, SourcePolicy(&list.Items[i]))
	}
	doc, errs = policy.Compile(sources, resources.PolicySettings(cc))
	return doc, errs, nil
}

// compilePolicy compiles every ChannelPolicy of the cluster with its access
// settings. When they do not compile, it fails closed: the document stays
// the one in the policy ConfigMap (deny-all when there is none), rather than
// leave out an invalid policy that may deny.
func (r *CometdClusterReconciler) compilePolicy(ctx context.Context, cc *v1.CometdCluster) (compiledPolicy, error) {
	doc, errs, err := compileCluster(ctx, r.Client, cc)
	if err != nil {
		return compiledPolicy{}, err
	}
	if len(errs) == 0 {
		b, err := policy.Marshal(doc)
		if err != nil {
			return compiledPolicy{}, err
		}
		return compiledPolicy{doc: b, version: doc.Version}, nil
	}
	compileErr := errors.Join(errs...)
	cm := &corev1.ConfigMap{}
	err = r.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.ChildName(resources.SuffixPolicy)}, cm)
	if err != nil && !apierrors.IsNotFound(err) {
		return compiledPolicy{}, err
	}
	if prev, perr := policy.Parse([]byte(cm.Data[resources.PolicyKey])); err == nil && perr == nil {
		return compiledPolicy{doc: []byte(cm.Data[resources.PolicyKey]), version: prev.Version, err: compileErr}, nil
	}
	deny := policy.Document{APIVersion: policy.APIVersion, Default: policy.Deny}
	b, err := policy.Marshal(deny)
	if err != nil {
		return compiledPolicy{}, err
	}
	return compiledPolicy{doc: b, version: policy.ComputeVersion(deny), err: compileErr}, nil
}

// policyAppliedCondition is True only when every ready broker enforces the
// latest version. writeErr, when not nil, is why the latest version could not
// be written to the policy ConfigMap, so brokers that lag cannot catch up.
func policyAppliedCondition(latest string, compileErr, writeErr error, reports []brokerReport) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionPolicyApplied}
	if compileErr != nil {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonPolicyRejected
		c.Message = fmt.Sprintf("the cluster's ChannelPolicies or spec.access could not be compiled, so brokers keep policy version %s "+
			"(see the policies' Accepted condition): %v", latest, compileErr)
		return c
	}
	if len(reports) == 0 {
		c.Status, c.Reason = metav1.ConditionUnknown, ReasonNoReadyBroker
		c.Message = fmt.Sprintf("no ready broker to enforce policy version %s yet", latest)
		return c
	}
	var unreachable, behind []string
	for _, r := range reports {
		switch {
		case r.Err != nil:
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", r.Pod, r.Err))
		case r.Version != latest:
			v := r.Version
			if v == "" {
				v = "none"
			}
			behind = append(behind, fmt.Sprintf("%s (%s)", r.Pod, v))
		}
	}
	switch {
	case len(unreachable) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonBrokerUnreachable
		c.Message = fmt.Sprintf("cannot read the admin /status of %d of %d ready brokers: %s",
			len(unreachable), len(reports), strings.Join(unreachable, ", "))
	case len(behind) > 0 && writeErr != nil:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonApplyFailed
		c.Message = fmt.Sprintf("%d of %d ready brokers enforce policy version %s; the others (%s) cannot receive it: "+
			"the apply stopped before the policy ConfigMap was written: %v",
			len(reports)-len(behind), len(reports), latest, strings.Join(behind, ", "), writeErr)
	case len(behind) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonPolicyPropagating
		c.Message = fmt.Sprintf("%d of %d ready brokers enforce policy version %s; waiting for %s (the kubelet can take a minute to update the mounted ConfigMap)",
			len(reports)-len(behind), len(reports), latest, strings.Join(slices.Clip(behind), ", "))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonPolicyEnforced
		c.Message = fmt.Sprintf("all %d ready brokers enforce policy version %s", len(reports), latest)
	}
	return c
}
