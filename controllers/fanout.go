package controllers

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// FanoutReady reasons.
const (
	ReasonFanoutMeshed         = "Meshed"
	ReasonFanoutSingleBroker   = "SingleBroker"
	ReasonNATSNotMeshed        = "NATSNotMeshed"
	ReasonBackboneDisconnected = "BackboneDisconnected"
	ReasonFanoutUnknown        = "Unknown"
)

// fanoutInput is what FanoutReady is computed from.
type fanoutInput struct {
	// DesiredBrokers is the broker replica count the cluster asks for.
	DesiredBrokers int32
	// ManagedNATS is true when the operator runs the NATS; NATSReplicas is
	// then its server count, and NATS the ready servers' reports.
	ManagedNATS  bool
	NATSReplicas int32
	NATS         []natsReport
	// ExternalNATS is true when the brokers use spec.nats.url.
	ExternalNATS bool
	// Brokers are the ready brokers' /status reports; BrokersChecked is false
	// when the operator has no way to ask them.
	Brokers        []brokerReport
	BrokersChecked bool
}

// fanoutReadyCondition is True only when a message published on any broker
// reaches every other broker: the managed NATS servers all route to each
// other and every ready broker is connected to the backbone.
func fanoutReadyCondition(in fanoutInput) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionFanoutReady, Status: metav1.ConditionFalse}
	if !in.ManagedNATS && !in.ExternalNATS && in.DesiredBrokers <= 1 {
		c.Status, c.Reason = metav1.ConditionTrue, ReasonFanoutSingleBroker
		c.Message = "a single broker with no NATS: every client shares one broker"
		return c
	}
	if in.ManagedNATS {
		want := int(in.NATSReplicas) - 1
		if len(in.NATS) == 0 {
			c.Reason = ReasonNATSNotMeshed
			c.Message = fmt.Sprintf("no managed NATS server is ready yet (0 of %d); see `kubectl get pods -l %s=%s`",
				in.NATSReplicas, resources.LabelName, resources.AppNATS)
			return c
		}
		var unreachable, short []string
		for _, n := range in.NATS {
			switch {
			case n.Err != nil:
				unreachable = append(unreachable, fmt.Sprintf("%s (%v)", n.Pod, n.Err))
			case n.Peers < want:
				short = append(short, fmt.Sprintf("%s (%d)", n.Pod, n.Peers))
			}
		}
		switch {
		case len(unreachable) > 0:
			c.Reason = ReasonFanoutUnknown
			c.Message = fmt.Sprintf("cannot read the monitoring /routez (port %d) of %d of %d ready NATS servers: %s",
				resources.NATSMonitorPort, len(unreachable), len(in.NATS), strings.Join(unreachable, ", "))
			return c
		case len(short) > 0 || len(in.NATS) < int(in.NATSReplicas):
			c.Reason = ReasonNATSNotMeshed
			c.Message = fmt.Sprintf("%d of %d NATS servers ready; each must route to the other %d%s. "+
				"Messages published on one broker may not reach brokers connected to another NATS server; "+
				"new servers usually mesh within a minute (cluster DNS caches missing pod names), otherwise check the NATS pods' logs",
				len(in.NATS), in.NATSReplicas, want, shortList(short))
			return c
		}
	}
	if !in.BrokersChecked {
		c.Reason = ReasonFanoutUnknown
		c.Message = "the operator cannot read the brokers' /status, so it cannot tell whether they reach the backbone"
		return c
	}
	if len(in.Brokers) == 0 {
		c.Reason = ReasonFanoutUnknown
		c.Message = "no ready broker yet"
		return c
	}
	var unreachable, unreported, disconnected []string
	for _, b := range in.Brokers {
		switch {
		case b.Err != nil:
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", b.Pod, b.Err))
		case b.BackboneUnreported:
			unreported = append(unreported, b.Pod)
		case !b.BackboneConnected:
			disconnected = append(disconnected, b.Pod)
		}
	}
	switch {
	case len(unreachable) > 0:
		c.Reason = ReasonFanoutUnknown
		c.Message = fmt.Sprintf("cannot read the admin /status of %d of %d ready brokers: %s",
			len(unreachable), len(in.Brokers), strings.Join(unreachable, ", "))
	case len(unreported) > 0:
		c.Reason = ReasonFanoutUnknown
		c.Message = fmt.Sprintf("%d of %d ready brokers do not report backboneConnected in their /status (an older broker image?): %s; "+
			"use a broker image as recent as the operator", len(unreported), len(in.Brokers), strings.Join(unreported, ", "))
	case len(disconnected) > 0:
		c.Reason = ReasonBackboneDisconnected
		c.Message = fmt.Sprintf("%d of %d ready brokers are not connected to NATS: %s; their clients miss messages published on other brokers. "+
			"Check the brokers' logs and that NATS is reachable from their pods",
			len(disconnected), len(in.Brokers), strings.Join(disconnected, ", "))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonFanoutMeshed
		if in.ManagedNATS {
			c.Message = fmt.Sprintf("all %d NATS servers route to each other and all %d ready brokers are connected", in.NATSReplicas, len(in.Brokers))
		} else {
			c.Message = fmt.Sprintf("all %d ready brokers are connected to NATS", len(in.Brokers))
		}
	}
	return c
}

// shortList names the servers with too few peers, for a message.
func shortList(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return "; servers with fewer peers (count): " + strings.Join(s, ", ")
}

// fanoutPending reports whether FanoutReady is False, so the brokers and NATS
// should be asked again soon.
func fanoutPending(conds []metav1.Condition) bool {
	for _, c := range conds {
		if c.Type == v1.ConditionFanoutReady {
			return c.Status != metav1.ConditionTrue
		}
	}
	return false
}
