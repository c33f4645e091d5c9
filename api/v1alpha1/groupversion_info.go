// Package v1alpha1 contains the cometd.bayeux.dev/v1alpha1 API: CometdCluster, a
// fleet of Bayeux brokers, and ChannelPolicy, the channel ACLs they enforce.
// +kubebuilder:object:generate=true
// +groupName=cometd.bayeux.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "cometd.bayeux.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API's types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
