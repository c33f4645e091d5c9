package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyEffect is what a rule, or a cluster's default, does to an operation.
// +kubebuilder:validation:Enum=allow;deny
type PolicyEffect string

// The effects.
const (
	EffectAllow PolicyEffect = "allow"
	EffectDeny  PolicyEffect = "deny"
)

// PolicyAction is an operation a client asks for.
// +kubebuilder:validation:Enum=handshake;subscribe;publish;create
type PolicyAction string

// The actions.
const (
	ActionHandshake PolicyAction = "handshake"
	ActionSubscribe PolicyAction = "subscribe"
	ActionPublish   PolicyAction = "publish"
	ActionCreate    PolicyAction = "create"
)

// ChannelPattern is a channel pattern: "/"-separated segments, each a literal
// (ASCII letters, digits and - _ . ~ ! $ @ ( ) + = , :), "*" (one segment),
// "{sub}" or "{claim:<name>}" (taken from the client's token), and optionally
// a last "**" (one or more segments). Meta channels are never under a
// policy's control. The grammar is broker/policy's PatternRegexp.
// +kubebuilder:validation:MaxLength=512
// +kubebuilder:validation:Pattern=`^(/([A-Za-z0-9_.~!$@()+=,:-]*[A-Za-z0-9_~!$@()+=,:-][A-Za-z0-9_.~!$@()+=,:-]*|\{sub\}|\{claim:[A-Za-z0-9_.-]+\}|\*))*(/([A-Za-z0-9_.~!$@()+=,:-]*[A-Za-z0-9_~!$@()+=,:-][A-Za-z0-9_.~!$@()+=,:-]*|\{sub\}|\{claim:[A-Za-z0-9_.-]+\}|\*|\*\*))$`
// +kubebuilder:validation:XValidation:rule="!(self == '/meta' || self.startsWith('/meta/'))",message="meta channels (/meta/**) are never under a policy's control"
// +kubebuilder:validation:XValidation:rule="self.split('/').size() <= 33",message="a channel pattern has at most 32 segments"
type ChannelPattern string

// Principal names who a rule applies to: "*" (everyone), "anonymous" (no
// token), "authenticated" (any valid token), "user:<subject>" (the token's
// sub) or "group:<name>" (an entry of the token's groups claim).
// +kubebuilder:validation:MaxLength=256
// +kubebuilder:validation:Pattern=`^(\*|anonymous|authenticated|(user|group):\S+)$`
type Principal string

// ChannelRule grants or denies actions on channel patterns to principals.
// +kubebuilder:validation:XValidation:rule="self.actions.all(a, a == 'handshake') || (has(self.channels) && size(self.channels) > 0)",message="channels: at least one pattern is required for subscribe, publish and create"
type ChannelRule struct {
	// Name identifies the rule within its policy.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Effect is allow or deny. A matching deny wins over any allow.
	Effect PolicyEffect `json:"effect"`

	// Actions the rule applies to.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	Actions []PolicyAction `json:"actions"`

	// Channels are the channel patterns the rule applies to. Required unless
	// the only action is handshake.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Channels []ChannelPattern `json:"channels,omitempty"`

	// Principals the rule applies to.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	Principals []Principal `json:"principals"`
}

// ChannelPolicySpec is a set of channel rules for one CometdCluster.
type ChannelPolicySpec struct {
	// ClusterName is the CometdCluster, in the policy's namespace, whose
	// brokers enforce the rules.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.clusterName is immutable: create a new ChannelPolicy for another cluster"
	ClusterName string `json:"clusterName"`

	// Rules are the policy's rules; their order does not matter (a deny wins).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=name
	Rules []ChannelRule `json:"rules"`
}

// ConditionAccepted is the ChannelPolicy condition that says whether the
// policy is part of its cluster's compiled ACL.
const ConditionAccepted = "Accepted"

// ChannelPolicyStatus is the observed state of a ChannelPolicy.
type ChannelPolicyStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted, whether the policy is part of its cluster's compiled ACL, and why not.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ChannelPolicy declares who may handshake, subscribe, publish and create on
// which channels of one CometdCluster. The operator compiles all of a
// cluster's policies into its ACL ConfigMap; brokers reload it without a
// restart.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=chanpol
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterName`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ChannelPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ChannelPolicySpec   `json:"spec,omitempty"`
	Status ChannelPolicyStatus `json:"status,omitempty"`
}

// ChannelPolicyList is a list of ChannelPolicies.
// +kubebuilder:object:root=true
type ChannelPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ChannelPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ChannelPolicy{}, &ChannelPolicyList{})
}
