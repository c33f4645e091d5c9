// Package config is the broker's file configuration: the contract between the
// operator, which renders it into the cluster's broker ConfigMap (broker.yaml), and
// cmd/broker, which reads it at start-up. Both sides use these types, so a field
// added here is added for both.
//
// The file is YAML or JSON (YAML is a superset). Every zero value means "use the
// default", and the defaults match the CometD server's.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Defaults, matching CometD's server defaults where CometD has one.
const (
	DefaultListen             = ":8080"
	DefaultAdminListen        = ":8081"
	DefaultMountPath          = "/cometd"
	DefaultTimeout            = 30 * time.Second
	DefaultInterval           = 0
	DefaultMaxInterval        = 10 * time.Second
	DefaultMaxLazyTimeout     = 5 * time.Second
	DefaultMaxQueue           = -1 // unbounded in messages; MaxQueueBytes still applies
	DefaultMaxQueueBytes      = 4 << 20
	DefaultMaxMessageSize     = 64 << 10
	DefaultWSMessagesPerFrame = 1
	DefaultDrainGracePeriod   = 25 * time.Second
	DefaultDrainLinger        = 5 * time.Second
	DefaultSubjectPrefix      = "cometd"

	// Per-connection bounds (docs/operations.md, "Limits for hostile clients").
	DefaultMaxHeaderBytes      = 16 << 10
	DefaultMaxPendingBytes     = 1 << 20
	DefaultReadTimeout         = 10 * time.Second
	DefaultWriteTimeout        = 10 * time.Second
	DefaultIdleTimeout         = 30 * time.Second
	DefaultMaxConnectionsPerIP = 1000
)

// DefaultTransports are enabled when File.Transports is empty: all of them.
var DefaultTransports = append([]string(nil), bayeux.Transports...)

// File is the broker configuration file. Durations are in milliseconds, as in the
// Bayeux advice they feed.
type File struct {
	// Cluster names the broker's cluster; it scopes backbone subjects so that two
	// clusters sharing one NATS never see each other. Empty means "standalone".
	Cluster string `json:"cluster,omitempty"`
	// Listen is the client (Bayeux) address. Empty means DefaultListen.
	Listen string `json:"listen,omitempty"`
	// AdminListen serves /healthz, /readyz, /metrics and /status. Empty means DefaultAdminListen.
	AdminListen string `json:"adminListen,omitempty"`
	// MountPath is where Bayeux is served; every path below it is accepted. Empty means DefaultMountPath.
	MountPath string `json:"mountPath,omitempty"`

	// TimeoutMs is how long a /meta/connect is held (advice.timeout). 0 means DefaultTimeout.
	TimeoutMs int64 `json:"timeoutMs,omitempty"`
	// IntervalMs is advice.interval: the pause a client makes between connects. 0 is CometD's default.
	IntervalMs int64 `json:"intervalMs,omitempty"`
	// MaxIntervalMs is how long a session lives without a connect. 0 means DefaultMaxInterval.
	MaxIntervalMs int64 `json:"maxIntervalMs,omitempty"`
	// MaxLazyTimeoutMs bounds how long a lazy message waits. 0 means DefaultMaxLazyTimeout.
	MaxLazyTimeoutMs int64 `json:"maxLazyTimeoutMs,omitempty"`
	// MaxQueue caps a session's queue in messages. 0 means DefaultMaxQueue (no message cap).
	MaxQueue int `json:"maxQueue,omitempty"`
	// MaxQueueBytes caps a session's queue in encoded bytes; a session over it is
	// disconnected as a slow consumer. 0 means DefaultMaxQueueBytes.
	MaxQueueBytes int64 `json:"maxQueueBytes,omitempty"`
	// MaxMessageSize caps a request body or websocket frame in bytes. 0 means DefaultMaxMessageSize.
	MaxMessageSize int64 `json:"maxMessageSize,omitempty"`
	// Transports lists the enabled transports. Empty means DefaultTransports.
	Transports []string `json:"transports,omitempty"`
	// AllowedOrigins lists the origins allowed for cross-origin requests ("*" for any).
	// Empty means same-origin only (no CORS headers).
	AllowedOrigins []string `json:"allowedOrigins,omitempty"`
	// WSMessagesPerFrame caps how many messages one websocket frame carries. 0 means DefaultWSMessagesPerFrame.
	WSMessagesPerFrame int `json:"wsMessagesPerFrame,omitempty"`
	// DrainGracePeriodMs bounds a graceful drain. 0 means DefaultDrainGracePeriod.
	DrainGracePeriodMs int64 `json:"drainGracePeriodMs,omitempty"`
	// DrainLingerMs is how long after SIGTERM the broker keeps accepting
	// connections (forwarding them to where the sessions went), however soon
	// its sessions are gone, so that the Service's endpoints and kube-proxy
	// stop sending it connections before it stops listening. 0 means
	// DefaultDrainLinger; -1 means none. It never outlasts the grace period.
	DrainLingerMs int64 `json:"drainLingerMs,omitempty"`
	// DrainRate is how many sessions per second a drain hands over to other
	// brokers, or sends back to reconnect elsewhere when it cannot (raised when
	// needed to fit the grace period). 0 means the server's default (1000/s);
	// -1 moves every session at once.
	DrainRate float64 `json:"drainRate,omitempty"`
	// MaxSubscriptionsPerSession caps the channels one session may subscribe to.
	// 0 means the server's default (1000); -1 means no cap.
	MaxSubscriptionsPerSession int `json:"maxSubscriptionsPerSession,omitempty"`
	// MaxSessions caps the client sessions one broker holds at once; a handshake
	// past it is refused with 503::too_many_sessions and advice to handshake
	// again later. 0 means no limit.
	MaxSessions int `json:"maxSessions,omitempty"`

	// MaxHeaderBytes caps the request line and headers of one HTTP request
	// (and websocket upgrade). 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int `json:"maxHeaderBytes,omitempty"`
	// MaxPendingBytes caps the output one websocket connection may have
	// waiting to be written (replies included, the session's queue not); a
	// connection past it is closed as a slow consumer. 0 means
	// DefaultMaxPendingBytes.
	MaxPendingBytes int64 `json:"maxPendingBytes,omitempty"`
	// ReadTimeoutMs bounds the read of one request's headers, and then of its
	// body. 0 means DefaultReadTimeout.
	ReadTimeoutMs int64 `json:"readTimeoutMs,omitempty"`
	// WriteTimeoutMs bounds the write of one response (after a held
	// /meta/connect is released) or websocket frame. 0 means DefaultWriteTimeout.
	WriteTimeoutMs int64 `json:"writeTimeoutMs,omitempty"`
	// IdleTimeoutMs is how long a kept-alive HTTP connection may wait for its
	// next request. 0 means DefaultIdleTimeout.
	IdleTimeoutMs int64 `json:"idleTimeoutMs,omitempty"`
	// MaxConnections caps the client connections the broker holds at once;
	// one past it is closed as soon as it is accepted. 0 means the process's
	// file limit less a reserve for the admin port, NATS and files.
	MaxConnections int `json:"maxConnections,omitempty"`
	// MaxConnectionsPerIP caps the client connections from one IP address.
	// 0 means DefaultMaxConnectionsPerIP; -1 means no cap (behind a proxy that
	// hides client addresses, every client has the proxy's).
	MaxConnectionsPerIP int `json:"maxConnectionsPerIP,omitempty"`
	// Demo serves a demo page at /demo/ on the client port: a chat room on
	// /demo/** channels and a live view of the round-trip latency and the
	// transport in use. false (the default) serves nothing there.
	Demo bool `json:"demo,omitempty"`

	// NATS configures the backbone. A zero value means an embedded NATS server.
	NATS NATS `json:"nats,omitempty"`
	// PolicyFile is the path of the compiled ACL (broker/policy format), watched
	// for changes. Empty means no ACL: every operation is allowed.
	PolicyFile string `json:"policyFile,omitempty"`
	// Durability keeps sessions in NATS JetStream so that they survive the death
	// of their broker. nil (the default) keeps sessions in the broker's memory only.
	Durability *Durability `json:"durability,omitempty"`
}

// Durable-session defaults (docs/operations.md, "Durable sessions").
const (
	DurabilityMemory = "memory"
	DurabilityFile   = "file"

	DefaultDurabilityStorage   = DurabilityMemory
	DefaultDurabilityReplicas  = 1
	DefaultDurabilityMaxAge    = 10 * time.Minute
	DefaultDurabilityMaxBytes  = 256 << 20
	DefaultDurableSessionBytes = 64 << 10
)

// Durability configures durable sessions: each session's state (subscriptions,
// ack position, extension state) is kept in a JetStream key-value bucket and the
// messages it has not acknowledged in a JetStream stream, so that another broker
// adopts the session, with the same clientId, when its broker dies.
type Durability struct {
	// Storage is "memory" or "file" (JetStream's storage). Empty means memory.
	Storage string `json:"storage,omitempty"`
	// Replicas is the JetStream replica count: 1, 3 or 5. 0 means 1.
	Replicas int `json:"replicas,omitempty"`
	// MaxAgeMs is how long an unacknowledged message is kept. 0 means DefaultDurabilityMaxAge.
	MaxAgeMs int64 `json:"maxAgeMs,omitempty"`
	// MaxBytes caps the stream of unacknowledged messages, across all sessions.
	// 0 means DefaultDurabilityMaxBytes.
	MaxBytes int64 `json:"maxBytes,omitempty"`
	// MaxSessionBytes caps one session's unacknowledged messages in the stream; a
	// session over it is ended as a slow consumer. 0 means DefaultDurableSessionBytes.
	MaxSessionBytes int64 `json:"maxSessionBytes,omitempty"`
}

// StorageOrDefault returns the effective storage.
func (d *Durability) StorageOrDefault() string {
	if d.Storage == "" {
		return DefaultDurabilityStorage
	}
	return d.Storage
}

// ReplicasOrDefault returns the effective replica count.
func (d *Durability) ReplicasOrDefault() int {
	if d.Replicas == 0 {
		return DefaultDurabilityReplicas
	}
	return d.Replicas
}

// MaxAge returns the effective age bound of an unacknowledged message.
func (d *Durability) MaxAge() time.Duration { return ms(d.MaxAgeMs, DefaultDurabilityMaxAge) }

// MaxBytesOrDefault returns the effective stream bound.
func (d *Durability) MaxBytesOrDefault() int64 {
	if d.MaxBytes == 0 {
		return DefaultDurabilityMaxBytes
	}
	return d.MaxBytes
}

// MaxSessionBytesOrDefault returns the effective per-session bound.
func (d *Durability) MaxSessionBytesOrDefault() int64 {
	if d.MaxSessionBytes == 0 {
		return DefaultDurableSessionBytes
	}
	return d.MaxSessionBytes
}

// MinRecordBytes is the least room the bucket of session records gets.
const MinRecordBytes = 64 << 20

// RecordBytes bounds the bucket of session records for a stream of
// maxBytes: a quarter of it, and at least MinRecordBytes. JetStream reserves
// both bounds on each server that holds a replica (the operator sizes
// managed NATS for their sum).
func RecordBytes(maxBytes int64) int64 { return max(maxBytes/4, MinRecordBytes) }

// Validate reports durability settings JetStream would refuse.
func (d *Durability) Validate() error {
	switch d.Storage {
	case "", DurabilityMemory, DurabilityFile:
	default:
		return fmt.Errorf("broker config: durability.storage must be %q or %q, got %q", DurabilityMemory, DurabilityFile, d.Storage)
	}
	switch d.Replicas {
	case 0, 1, 3, 5:
	default:
		return fmt.Errorf("broker config: durability.replicas must be 1, 3 or 5, got %d", d.Replicas)
	}
	if d.MaxAgeMs < 0 || d.MaxBytes < 0 || d.MaxSessionBytes < 0 {
		return fmt.Errorf("broker config: durability bounds must not be negative")
	}
	if d.MaxSessionBytes > d.MaxBytesOrDefault() {
		return fmt.Errorf("broker config: durability.maxSessionBytes (%d) exceeds maxBytes (%d)", d.MaxSessionBytes, d.MaxBytesOrDefault())
	}
	return nil
}

// NATS configures the connection to the backbone.
type NATS struct {
	// URL is a comma-separated list of NATS URLs. Empty means an embedded server.
	URL string `json:"url,omitempty"`
	// CredsFile is a NATS credentials (.creds) file.
	CredsFile string `json:"credsFile,omitempty"`
	// TokenFile holds a NATS token.
	TokenFile string `json:"tokenFile,omitempty"`
	// CAFile, CertFile and KeyFile configure TLS to NATS.
	CAFile   string `json:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// SubjectPrefix is the first subject token. Empty means DefaultSubjectPrefix.
	SubjectPrefix string `json:"subjectPrefix,omitempty"`
}

// Load reads a File from path (YAML or JSON). Unknown fields are an error, so a typo
// in a setting is reported rather than ignored.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read broker config: %w", err)
	}
	return Parse(b)
}

// Parse decodes a File and validates it.
func Parse(b []byte) (*File, error) {
	var f File
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("parse broker config: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Marshal renders the File as YAML, deterministically (the operator hashes it).
func (f *File) Marshal() ([]byte, error) { return yaml.Marshal(f) }

// Validate reports settings no broker could run with.
func (f *File) Validate() error {
	for _, v := range []struct {
		name string
		n    int64
	}{
		{"timeoutMs", f.TimeoutMs}, {"intervalMs", f.IntervalMs}, {"maxIntervalMs", f.MaxIntervalMs},
		{"maxLazyTimeoutMs", f.MaxLazyTimeoutMs}, {"maxQueueBytes", f.MaxQueueBytes},
		{"maxMessageSize", f.MaxMessageSize}, {"wsMessagesPerFrame", int64(f.WSMessagesPerFrame)},
		{"drainGracePeriodMs", f.DrainGracePeriodMs}, {"maxSessions", int64(f.MaxSessions)},
		{"maxHeaderBytes", int64(f.MaxHeaderBytes)}, {"maxPendingBytes", f.MaxPendingBytes},
		{"readTimeoutMs", f.ReadTimeoutMs}, {"writeTimeoutMs", f.WriteTimeoutMs}, {"idleTimeoutMs", f.IdleTimeoutMs},
		{"maxConnections", int64(f.MaxConnections)},
	} {
		if v.n < 0 {
			return fmt.Errorf("broker config: %s must not be negative, got %d", v.name, v.n)
		}
	}
	if f.DrainLingerMs < -1 {
		return fmt.Errorf("broker config: drainLingerMs must be -1 (none), 0 (default) or positive, got %d", f.DrainLingerMs)
	}
	if f.DrainRate < 0 && f.DrainRate != -1 {
		return fmt.Errorf("broker config: drainRate must be -1 (all at once), 0 (default) or positive, got %v", f.DrainRate)
	}
	if f.MaxSubscriptionsPerSession < -1 {
		return fmt.Errorf("broker config: maxSubscriptionsPerSession must be -1 (no cap) or more, got %d", f.MaxSubscriptionsPerSession)
	}
	if f.MaxConnectionsPerIP < -1 {
		return fmt.Errorf("broker config: maxConnectionsPerIP must be -1 (no cap) or more, got %d", f.MaxConnectionsPerIP)
	}
	if f.MaxQueue < -1 {
		return fmt.Errorf("broker config: maxQueue must be -1 (unbounded) or more, got %d", f.MaxQueue)
	}
	for _, t := range f.Transports {
		if !bayeux.IsTransport(t) {
			return fmt.Errorf("broker config: unknown transport %q (want one of %s)", t, strings.Join(bayeux.Transports, ", "))
		}
	}
	if f.MountPath != "" && f.MountPath[0] != '/' {
		return fmt.Errorf("broker config: mountPath must start with '/', got %q", f.MountPath)
	}
	if m := strings.TrimSuffix(f.MountPath, "/"); f.Demo && (m == "/demo" || strings.HasPrefix(m, "/demo/")) {
		return fmt.Errorf("broker config: the demo page is served at /demo/: mountPath %q cannot be there", f.MountPath)
	}
	if f.Durability != nil {
		return f.Durability.Validate()
	}
	return nil
}

func ms(v int64, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return time.Duration(v) * time.Millisecond
}

// Timeout returns the effective connect timeout.
func (f *File) Timeout() time.Duration { return ms(f.TimeoutMs, DefaultTimeout) }

// Interval returns the effective advice interval.
func (f *File) Interval() time.Duration { return ms(f.IntervalMs, DefaultInterval) }

// MaxInterval returns the effective session expiry.
func (f *File) MaxInterval() time.Duration { return ms(f.MaxIntervalMs, DefaultMaxInterval) }

// MaxLazyTimeout returns the effective lazy-message bound.
func (f *File) MaxLazyTimeout() time.Duration { return ms(f.MaxLazyTimeoutMs, DefaultMaxLazyTimeout) }

// DrainLinger returns how long a drain keeps the listener open at least.
func (f *File) DrainLinger() time.Duration {
	if f.DrainLingerMs < 0 {
		return 0
	}
	return min(ms(f.DrainLingerMs, DefaultDrainLinger), f.DrainGracePeriod())
}

// DrainGracePeriod returns the effective drain bound.
func (f *File) DrainGracePeriod() time.Duration {
	return ms(f.DrainGracePeriodMs, DefaultDrainGracePeriod)
}

// ReadTimeout returns the effective request read bound.
func (f *File) ReadTimeout() time.Duration { return ms(f.ReadTimeoutMs, DefaultReadTimeout) }

// WriteTimeout returns the effective response write bound.
func (f *File) WriteTimeout() time.Duration { return ms(f.WriteTimeoutMs, DefaultWriteTimeout) }

// IdleTimeout returns the effective keep-alive bound.
func (f *File) IdleTimeout() time.Duration { return ms(f.IdleTimeoutMs, DefaultIdleTimeout) }

// EnabledTransports returns the effective transport list.
func (f *File) EnabledTransports() []string {
	if len(f.Transports) == 0 {
		return append([]string(nil), DefaultTransports...)
	}
	return append([]string(nil), f.Transports...)
}
