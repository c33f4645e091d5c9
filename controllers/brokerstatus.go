package controllers

import (
	"bytes"
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
	// BackboneConnected is true when the broker's backbone is healthy (or it
	// has none to connect to). Nil when the broker does not report it (a
	// broker image older than the field).
	BackboneConnected *bool `json:"backboneConnected"`
	// Sessions is every session the broker holds, its own in-process ones
	// included; ClientSessions only its clients' (nil from a broker image
	// older than the field: then Sessions stands in).
	Sessions       int64  `json:"sessions"`
	ClientSessions *int64 `json:"clientSessions"`
	// Shed tells whether the broker is handing sessions over on request.
	Shed struct {
		Active bool `json:"active"`
	} `json:"shed"`
}

// Load is the client sessions the broker holds.
func (s BrokerStatus) Load() int64 {
	if s.ClientSessions != nil {
		return *s.ClientSessions
	}
	return s.Sessions
}

// ShedRequest asks a broker to hand sessions over to other brokers (named by
// node) until it holds at most Keep client sessions, at Rate sessions per
// second (the broker's POST /shed).
type ShedRequest struct {
	Keep int64            `json:"keep"`
	To   map[string]int64 `json:"to"`
	Rate int32            `json:"rate,omitempty"`
}

// BrokerShedClient asks a broker pod to shed sessions. Tests replace it.
type BrokerShedClient interface {
	Shed(ctx context.Context, pod *corev1.Pod, req ShedRequest) error
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

var (
	_ BrokerStatusClient = (*HTTPBrokerStatusClient)(nil)
	_ BrokerShedClient   = (*HTTPBrokerStatusClient)(nil)
)

var defaultStatusHTTPClient = &http.Client{Timeout: defaultStatusTimeout}

// Status fetches and decodes the pod's /status.
func (c *HTTPBrokerStatusClient) Status(ctx context.Context, pod *corev1.Pod) (BrokerStatus, error) {
	var st BrokerStatus
	if err := getPodJSON(ctx, c.Client, c.Address, pod, resources.AdminPort, "/status", &st); err != nil {
		return BrokerStatus{}, err
	}
	return st, nil
}

// Shed posts req to the pod's admin /shed.
func (c *HTTPBrokerStatusClient) Shed(ctx context.Context, pod *corev1.Pod, req ShedRequest) error {
	addr, err := podAddress(c.Address, pod, resources.AdminPort)
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := send(ctx, c.Client, http.MethodPost, "http://"+addr+"/shed", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("POST /shed: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// NATSRoutes is the part of a NATS server's monitoring /routez document the
// operator uses.
type NATSRoutes struct {
	// ServerName is the server's name (the managed NATS pod's name).
	ServerName string `json:"server_name"`
	// NumRoutes is how many route connections the server has. With route
	// pooling (NATS 2.10+, 3 connections per peer by default) it overstates
	// the peers: use Peers.
	NumRoutes int `json:"num_routes"`
	// Routes are the route connections.
	Routes []NATSRoute `json:"routes"`
}

// NATSRoute is one route connection of a /routez document.
type NATSRoute struct {
	// RemoteID and RemoteName identify the server at the other end.
	RemoteID   string `json:"remote_id"`
	RemoteName string `json:"remote_name"`
}

// Peers is the number of distinct servers the routes reach.
func (r NATSRoutes) Peers() int {
	seen := make(map[string]struct{}, len(r.Routes))
	for _, rt := range r.Routes {
		id := rt.RemoteID
		if id == "" {
			id = rt.RemoteName
		}
		seen[id] = struct{}{}
	}
	return len(seen)
}

// NATSMonitorClient reads a managed NATS pod's routes. Tests replace it.
type NATSMonitorClient interface {
	Routes(ctx context.Context, pod *corev1.Pod) (NATSRoutes, error)
}

// HTTPNATSMonitorClient reads GET /routez on a NATS pod's monitoring port.
type HTTPNATSMonitorClient struct {
	// Client sends the requests. Nil means a client with a 5 s timeout.
	Client *http.Client
	// Address returns the host:port of a pod's monitoring endpoint. Nil means
	// the pod's IP and the monitoring port (resources.NATSMonitorPort).
	Address func(pod *corev1.Pod) string
}

var _ NATSMonitorClient = (*HTTPNATSMonitorClient)(nil)

// Routes fetches and decodes the pod's /routez.
func (c *HTTPNATSMonitorClient) Routes(ctx context.Context, pod *corev1.Pod) (NATSRoutes, error) {
	var rt NATSRoutes
	if err := getPodJSON(ctx, c.Client, c.Address, pod, resources.NATSMonitorPort, "/routez", &rt); err != nil {
		return NATSRoutes{}, err
	}
	return rt, nil
}

// getPodJSON decodes the JSON document at path on one of the pod's ports. The
// host:port comes from address when it is set, otherwise from the pod's IP and
// port.
func getPodJSON(ctx context.Context, hc *http.Client, address func(*corev1.Pod) string, pod *corev1.Pod, port int, path string, v any) error {
	addr, err := podAddress(address, pod, port)
	if err != nil {
		return err
	}
	return getJSON(ctx, hc, "http://"+addr+path, v)
}

// podAddress is the host:port of one of the pod's ports: address's answer
// when it is set, otherwise the pod's IP and port.
func podAddress(address func(*corev1.Pod) string, pod *corev1.Pod, port int) (string, error) {
	addr := ""
	if address != nil {
		addr = address(pod)
	} else if pod.Status.PodIP != "" {
		addr = net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port))
	}
	if addr == "" {
		return "", fmt.Errorf("pod %s has no IP yet", pod.Name)
	}
	return addr, nil
}

// getJSON decodes the JSON document at url, read through hc (nil: a client
// with a 5 s timeout) and bounded to maxStatusBody bytes.
func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	resp, err := send(ctx, hc, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", resp.Request.URL.Path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBody)).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

// send makes one request to a pod through hc (nil: a client with a 5 s
// timeout), with body as JSON when it is not nil.
func send(ctx context.Context, hc *http.Client, method, url string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if hc == nil {
		hc = defaultStatusHTTPClient
	}
	return hc.Do(req)
}
