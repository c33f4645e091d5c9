package v1alpha1

// ChildName is the name of one of the cluster's child objects: the cluster's
// name, a dash and suffix ("chat" + "nats" = "chat-nats"). An empty suffix names
// the cluster's main objects (its broker Deployment and client Service).
func (c *CometdCluster) ChildName(suffix string) string {
	if suffix == "" {
		return c.Name
	}
	return c.Name + "-" + suffix
}

// ManagedNATS reports whether the operator runs the cluster's NATS.
func (c *CometdCluster) ManagedNATS() bool {
	return c.Spec.NATS != nil && c.Spec.NATS.Managed != nil
}

// ExternalNATS reports whether the cluster's brokers join a NATS at a URL.
func (c *CometdCluster) ExternalNATS() bool {
	return c.Spec.NATS != nil && c.Spec.NATS.URL != ""
}
