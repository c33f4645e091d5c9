package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/cometd-operator/cometd-operator/controllers/resources"
)

// BrokerStatus is the part of a broker's admin /status document the operator
// uses.
type BrokerStatus struct {
	// Node is the broker's node name.
	Node string `json:"node"`
	// PolicyVersion is the version of the channel policy the broker enforces
	// ("" when it enforces none).
	PolicyVersion string `json:"policyVersion"`
	// Draining is true while the broker shuts down.
	Draining bool `json:"draining"`
}

// BrokerStatusClient reads a broker pod's status. It is the only way the
// operator talks to brokers; tests replace it.
type BrokerStatusClient interface {
	Status(ctx context.Context, pod *corev1.Pod) (BrokerStatus, error)
}

// maxStatusBody bounds the /status document read from a broker.
const maxStatusBody = 64 << 10

// defaultStatusTimeout bounds one /status request when the client has none.
const defaultStatusTimeout = 5 * time.Second

// HTTPBrokerStatusClient reads GET /status on the broker's admin port.
type HTTPBrokerStatusClient struct {
	// Client sends the requests. Nil means a client with a 5 s timeout.
	Client *http.Client
	// Address returns the host:port of a pod's admin endpoint. Nil means the
	// pod's IP and the admin port (resources.AdminPort).
	Address func(pod *corev1.Pod) string
}

var _ BrokerStatusClient = (*HTTPBrokerStatusClient)(nil)

var defaultStatusHTTPClient = &http.Client{Timeout: defaultStatusTimeout}

// Status fetches and decodes the pod's /status.
func (c *HTTPBrokerStatusClient) Status(ctx context.Context, pod *corev1.Pod) (BrokerStatus, error) {
	addr := ""
	if c.Address != nil {
		addr = c.Address(pod)
	} else if pod.Status.PodIP != "" {
		addr = net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(resources.AdminPort))
	}
	if addr == "" {
		return BrokerStatus{}, fmt.Errorf("pod %s has no IP yet", pod.Name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return BrokerStatus{}, err
	}
	hc := c.Client
	if hc == nil {
		hc = defaultStatusHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return BrokerStatus{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return BrokerStatus{}, fmt.Errorf("GET /status: %s", resp.Status)
	}
	var st BrokerStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBody)).Decode(&st); err != nil {
		return BrokerStatus{}, fmt.Errorf("decode /status: %w", err)
	}
	return st, nil
}
