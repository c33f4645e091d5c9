package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Transport is a Bayeux transport a broker can serve.
// +kubebuilder:validation:Enum=websocket;long-polling;callback-polling;cross-origin-long-polling;eventsource
type Transport string

// The transports, named as in Bayeux's supportedConnectionTypes (the names are
// broker/bayeux's; the Enum marker above must list the same).
const (
	TransportWebsocket       Transport = bayeux.TransportWebSocket
	TransportLongPolling     Transport = bayeux.TransportLongPolling
	TransportCallbackPolling Transport = bayeux.TransportCallbackPolling
	// TransportCrossOriginLongPolling is long-polling from a page on another
	// origin, as the Faye browser client names it.
	TransportCrossOriginLongPolling Transport = bayeux.TransportCrossOriginLongPolling
	// TransportEventSource is Faye's Server-Sent Events transport.
	TransportEventSource Transport = bayeux.TransportEventSource
)

// AutoscalingMetric names the load signal the broker count follows.
// +kubebuilder:validation:Enum=sessions;cpu
type AutoscalingMetric string

// The autoscaling metrics.
const (
	// MetricSessions scales on client sessions per broker pod, which the
	// operator reads from the brokers and acts on itself.
	MetricSessions AutoscalingMetric = "sessions"
	// MetricCPU scales on CPU utilization, through a HorizontalPodAutoscaler
	// the operator creates and owns.
	MetricCPU AutoscalingMetric = "cpu"
)

// CometdClusterSpec is the desired state of a Bayeux broker fleet.
//
// A cluster of more than one broker (or an autoscaled one) needs a shared NATS
// backbone: set nats.url (an existing NATS) or nats.managed (the operator runs
// one). With neither, each broker runs an embedded NATS of its own, which is
// only correct for a single broker.
//
// +kubebuilder:validation:XValidation:rule="(has(self.replicas) && self.replicas >= 1) || has(self.autoscaling)",message="spec.replicas must be at least 1 unless spec.autoscaling is set"
// +kubebuilder:validation:XValidation:rule="(has(self.nats) && (has(self.nats.url) || has(self.nats.managed))) || (!has(self.autoscaling) && (!has(self.replicas) || self.replicas <= 1))",message="more than one broker needs a shared backbone: set spec.nats.url (an existing NATS) or spec.nats.managed (a NATS run by the operator)"
// +kubebuilder:validation:XValidation:rule="!has(self.durability) || (has(self.nats) && (has(self.nats.url) || has(self.nats.managed)))",message="spec.durability keeps sessions in NATS JetStream: set spec.nats.managed (the operator enables JetStream on it) or spec.nats.url (a NATS with JetStream enabled); a broker's embedded NATS dies with it and cannot keep its sessions for another broker"
// +kubebuilder:validation:XValidation:rule="!has(self.durability) || !has(self.nats) || !has(self.nats.managed) || (has(self.durability.replicas) ? self.durability.replicas : 1) <= (has(self.nats.managed.replicas) ? self.nats.managed.replicas : 3)",message="spec.durability.replicas must not exceed spec.nats.managed.replicas: each copy of a session lives on a different NATS server"
type CometdClusterSpec struct {
	// Replicas is the number of broker pods asked for, by you or `kubectl
	// scale` (the scale subresource). With autoscaling set, the autoscaler
	// owns it, as a HorizontalPodAutoscaler owns its target's: it writes the
	// count it decides, and a count written by hand lasts until its next
	// decision. The broker Deployment runs this count clamped to
	// [minReplicas, maxReplicas].
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Image is the broker container image. Empty means the operator's default
	// (its --broker-image flag).
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy is the broker container's pull policy.
	// +kubebuilder:default=IfNotPresent
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// ImagePullSecrets are Secrets for pulling the broker and NATS images.
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Resources are the broker container's requests and limits.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Broker holds the Bayeux server settings, rendered into the broker's
	// broker.yaml. Changing any of them rolls the broker pods.
	// +kubebuilder:default={}
	// +optional
	Broker BrokerSettings `json:"broker,omitempty"`

	// NATS is the backbone that carries messages between brokers.
	// +optional
	NATS *NATSSpec `json:"nats,omitempty"`

	// Service configures the client Service in front of the brokers.
	// +kubebuilder:default={}
	// +optional
	Service ServiceSpec `json:"service,omitempty"`

	// Pod holds overrides for the broker pods.
	// +optional
	Pod PodOverrides `json:"pod,omitempty"`

	// DisruptionBudget configures the brokers' PodDisruptionBudget.
	// +kubebuilder:default={}
	// +optional
	DisruptionBudget DisruptionBudgetSpec `json:"disruptionBudget,omitempty"`

	// Autoscaling makes the broker count follow the load, between
	// minReplicas and maxReplicas: client sessions per pod (the operator's own
	// autoscaler) or CPU utilization (a HorizontalPodAutoscaler the operator
	// owns). Brokers removed by a scale-down hand their sessions over to the
	// others first. It requires a shared NATS backbone (spec.nats) and lets
	// spec.replicas be 0 (then minReplicas brokers run). Unset means exactly
	// spec.replicas brokers.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`

	// Rebalance spreads client sessions evenly over the brokers: when the
	// busiest ready broker holds more than tolerancePercent above the mean
	// (after a scale-up, typically), the operator asks the busiest brokers to
	// hand their surplus over to the emptiest ones, at a paced rate. Moved
	// clients keep their clientId and their messages.
	// +kubebuilder:default={}
	// +optional
	Rebalance RebalanceSpec `json:"rebalance,omitempty"`

	// Access configures the cluster's channel policy: the default for
	// operations no ChannelPolicy rule matches, anonymous clients, and the
	// verification of handshake tokens. The defaults keep a cluster without
	// ChannelPolicies open to everyone.
	// +kubebuilder:default={}
	// +optional
	Access AccessSpec `json:"access,omitempty"`

	// Durability keeps client sessions in NATS JetStream, so that they survive
	// the death of their broker: another broker adopts a session, with the
	// same clientId, its subscriptions and the messages its client has not
	// acknowledged. It needs a NATS with JetStream: spec.nats.managed (the
	// operator enables JetStream on it) or spec.nats.url (a NATS you run with
	// JetStream enabled and room for maxBytes). Unset means sessions live only
	// in their broker's memory: a broker that drains hands them over, one that
	// crashes loses them. See "Durable sessions" in docs/operations.md.
	// +optional
	Durability *DurabilitySpec `json:"durability,omitempty"`
}

// DurabilityStorage is where JetStream keeps durable sessions.
// +kubebuilder:validation:Enum=memory;file
type DurabilityStorage string

// The durability storages (JetStream's storage types).
const (
	// StorageMemory keeps sessions in the NATS servers' memory: fast, lost
	// with a NATS server unless replicas are kept on others.
	StorageMemory DurabilityStorage = "memory"
	// StorageFile keeps sessions on the NATS servers' disk.
	StorageFile DurabilityStorage = "file"
)

// DurabilitySpec configures durable sessions: each session's record
// (subscriptions, ack position, extension state) in a JetStream key-value
// bucket, and the messages its client has not acknowledged in a JetStream
// stream. Changing a field rolls the brokers; with managed NATS, changing
// storage or maxBytes (or setting or removing spec.durability) also rolls the
// NATS servers, and the sessions they kept are lost unless replicas is above 1.
// +kubebuilder:validation:XValidation:rule="!has(self.maxSessionBytes) || !has(self.maxBytes) || !isQuantity(string(self.maxSessionBytes)) || !isQuantity(string(self.maxBytes)) || quantity(string(self.maxSessionBytes)).compareTo(quantity(string(self.maxBytes))) <= 0",message="spec.durability.maxSessionBytes must not exceed spec.durability.maxBytes: one session's unacknowledged messages are part of the stream"
type DurabilitySpec struct {
	// Storage is JetStream's storage for sessions: memory (the NATS servers'
	// memory; fast, and lost with a server unless replicas keep copies on
	// others) or file (the NATS servers' disk; with managed NATS an emptyDir
	// volume, so it survives a NATS container's restart but not its pod's).
	// +kubebuilder:default=memory
	// +optional
	Storage DurabilityStorage `json:"storage,omitempty"`

	// Replicas is how many NATS servers keep a copy of each session: 1, 3 or
	// 5. 3 survives the loss of one NATS server, 5 of two; each copy costs
	// maxBytes of storage on its server, and every write waits for a majority
	// of copies. With spec.nats.managed it must not exceed
	// spec.nats.managed.replicas.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Enum=1;3;5
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// MaxAge is how long a message its client has not acknowledged is kept
	// for it: a client away longer finds its session without the older
	// messages. A Go duration string, at least 1s.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="spec.durability.maxAge must be at least 1s"
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`

	// MaxBytes bounds the stream of unacknowledged messages, over all the
	// cluster's sessions. When it is full, the stream refuses new messages
	// and the broker ends the sessions it cannot keep with an error, rather
	// than lose their messages silently. With managed NATS it sizes the
	// JetStream storage of every NATS server (see docs/operations.md). A whole
	// number of bytes, at least 1Mi.
	// +kubebuilder:default="256Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isInteger() && quantity(string(self)).compareTo(quantity('1Mi')) >= 0 && quantity(string(self)).compareTo(quantity('1Ti')) <= 0",message="spec.durability.maxBytes must be a whole number of bytes between 1Mi and 1Ti"
	// +optional
	MaxBytes *resource.Quantity `json:"maxBytes,omitempty"`

	// MaxSessionBytes bounds one session's unacknowledged messages in the
	// stream; a session over it is ended as a slow consumer, as one over
	// spec.broker.maxQueueSize is. A whole number of bytes, at least 1Ki and
	// at most maxBytes.
	// +kubebuilder:default="64Ki"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isInteger() && quantity(string(self)).compareTo(quantity('1Ki')) >= 0",message="spec.durability.maxSessionBytes must be a whole number of bytes, at least 1Ki"
	// +optional
	MaxSessionBytes *resource.Quantity `json:"maxSessionBytes,omitempty"`
}

// RebalanceSpec configures how sessions are spread over the brokers.
type RebalanceSpec struct {
	// Enabled turns rebalancing on. It needs more than one broker and a
	// shared backbone; without them it does nothing.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// TolerancePercent is how far above the mean sessions per broker the
	// busiest broker may be before the operator rebalances.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	TolerancePercent *int32 `json:"tolerancePercent,omitempty"`

	// SessionsPerSecond is how fast one broker hands its surplus over: each
	// moved websocket client reconnects, so this bounds the reconnect rate.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	SessionsPerSecond *int32 `json:"sessionsPerSecond,omitempty"`
}

// AccessSpec is the cluster-wide part of the channel policy. Changing it
// changes the policy document, which brokers reload without a restart.
// +kubebuilder:validation:XValidation:rule="!has(self.allowAnonymous) || self.allowAnonymous || has(self.auth)",message="spec.access: with allowAnonymous false, set spec.access.auth, or no client can handshake"
type AccessSpec struct {
	// Default applies to operations no ChannelPolicy rule matches (handshakes
	// included): allow or deny.
	// +kubebuilder:default=allow
	// +optional
	Default PolicyEffect `json:"default,omitempty"`

	// AllowAnonymous lets clients handshake without a token, as the
	// "anonymous" principal.
	// +kubebuilder:default=true
	// +optional
	AllowAnonymous *bool `json:"allowAnonymous,omitempty"`

	// Auth verifies the JWT clients send in the handshake's ext.auth.token.
	// Unset means tokens are not accepted.
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`
}

// AuthSpec configures handshake token (JWT) verification. The algorithm is
// fixed here, so a token cannot choose another (no "none", no HS/RS confusion).
// The keys come from a Secret (keysSecret and keys) or a JWK Set URL
// (jwksURL), not both.
//
// A session lives as long as its token: it ends when the token expires
// (plus leewaySeconds) unless the client sends a fresh token for the same
// subject in the ext.auth.token of a /meta/connect (see docs/clients.md).
// +kubebuilder:validation:XValidation:rule="has(self.jwksURL) != (has(self.keysSecret) && has(self.keys))",message="spec.access.auth: set keysSecret and keys, or jwksURL, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.jwksURL) || self.algorithm != 'HS256'",message="spec.access.auth.jwksURL holds public keys: use RS256 or ES256 with it"
type AuthSpec struct {
	// Algorithm is the only signature algorithm accepted: HS256 (a shared
	// secret), RS256 or ES256 (public keys).
	// +kubebuilder:validation:Enum=HS256;RS256;ES256
	Algorithm string `json:"algorithm"`

	// Issuer, when set, must equal the token's iss claim.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Issuer string `json:"issuer,omitempty"`

	// Audience, when set, must be (one of) the token's aud claim.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Audience string `json:"audience,omitempty"`

	// KeysSecret is the Secret, in the cluster's namespace, holding the
	// verification keys: the HS256 secret's exact bytes (at least 32), or PEM
	// public keys or certificates. It is mounted into the broker pods, never
	// copied; rotating its content needs no restart.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	KeysSecret string `json:"keysSecret,omitempty"`

	// Keys lists the Secret's keys to verify with, each with an optional key
	// ID (the token header's kid).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=key
	// +optional
	Keys []AuthKey `json:"keys,omitempty"`

	// JWKSURL is a JWK Set (RFC 7517) the brokers take the keys from instead
	// of a Secret (RS256 or ES256): fetched when a broker loads the policy,
	// refreshed every hour, and at most every 5 minutes when a token names a
	// key ID the set lacks (a rotation). The brokers must reach it.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +optional
	JWKSURL string `json:"jwksURL,omitempty"`

	// LeewaySeconds is the clock skew tolerated on exp and nbf; 0 tolerates none.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=600
	// +optional
	LeewaySeconds *int32 `json:"leewaySeconds,omitempty"`

	// GroupsClaim names the claim holding the token's groups, for "group:"
	// principals.
	// +kubebuilder:default=groups
	// +kubebuilder:validation:MaxLength=256
	// +optional
	GroupsClaim string `json:"groupsClaim,omitempty"`
}

// AuthKey is one key of the keys Secret.
type AuthKey struct {
	// Key is the Secret's key (file name).
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
	// ID, when set, is the JWS kid of the key(s) in this file.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ID string `json:"id,omitempty"`
}

// BrokerSettings are the Bayeux server settings. Durations are Go duration
// strings ("30s", "1m", "500ms").
type BrokerSettings struct {
	// Timeout is how long a broker holds a /meta/connect before answering
	// (Bayeux advice.timeout).
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Interval is the pause a client makes between two connects (Bayeux
	// advice.interval).
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// MaxInterval is how long a session survives without a connect before the
	// broker expires it.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="spec.broker.maxInterval must be at least 1s, or sessions expire between two connects"
	// +optional
	MaxInterval *metav1.Duration `json:"maxInterval,omitempty"`

	// MaxQueue caps a session's queue in messages; -1 means no message cap
	// (maxQueueSize still applies).
	// +kubebuilder:default=-1
	// +kubebuilder:validation:Minimum=-1
	// +optional
	MaxQueue *int32 `json:"maxQueue,omitempty"`

	// MaxSessions caps the client sessions one broker pod holds at once, so a
	// flood of handshakes cannot exhaust its memory. A handshake past it is
	// refused with 503::too_many_sessions and advice to handshake again after
	// a few seconds (through the Service, possibly on another pod). 0 or
	// absent means no limit.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxSessions *int32 `json:"maxSessions,omitempty"`

	// MaxQueueSize caps a session's queue in bytes; a session over it is
	// disconnected as a slow consumer.
	// +kubebuilder:default="4Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isInteger() && quantity(string(self)).compareTo(quantity('1Ki')) >= 0",message="spec.broker.maxQueueSize must be a whole number of bytes, at least 1Ki"
	// +optional
	MaxQueueSize *resource.Quantity `json:"maxQueueSize,omitempty"`

	// MaxMessageSize caps one request body or websocket frame, in bytes.
	// +kubebuilder:default="64Ki"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isInteger() && quantity(string(self)).compareTo(quantity('1Ki')) >= 0 && quantity(string(self)).compareTo(quantity('64Mi')) <= 0",message="spec.broker.maxMessageSize must be a whole number of bytes between 1Ki and 64Mi"
	// +optional
	MaxMessageSize *resource.Quantity `json:"maxMessageSize,omitempty"`

	// Transports lists the enabled transports. cross-origin-long-polling and
	// eventsource are the Faye browser client's (CORS long-polling, and
	// Server-Sent Events with messages sent by POST); the CometD clients use
	// the first three.
	// +kubebuilder:default={websocket,long-polling,callback-polling,cross-origin-long-polling,eventsource}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	// +listType=set
	// +optional
	Transports []Transport `json:"transports,omitempty"`

	// AllowedOrigins lists the origins allowed to make cross-origin requests
	// (for example "https://app.example.com"), or "*" for any. Empty means
	// same-origin only.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*|https?://[^/\s]+)$`
	// +listType=set
	// +optional
	AllowedOrigins []string `json:"allowedOrigins,omitempty"`

	// Demo makes every broker serve a demo page at /demo/ on the client
	// port, next to the Bayeux endpoint: a chat room on /demo/** channels and
	// a live view of the round-trip latency and the transport in use. Anyone
	// who reaches the Service can use it, so it is off by default; a channel
	// policy must allow /demo/** for it to work.
	// +optional
	Demo bool `json:"demo,omitempty"`
}

// NATSSpec selects the backbone: an existing NATS (url) or one the operator
// runs (managed), never both.
// +kubebuilder:validation:XValidation:rule="!(has(self.url) && has(self.managed))",message="spec.nats: set either url or managed, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.credentialsSecret) || has(self.url)",message="spec.nats.credentialsSecret is only used with spec.nats.url"
type NATSSpec struct {
	// URL is a comma-separated list of NATS server URLs
	// (nats://, tls://, ws:// or wss://).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^(nats|tls|ws|wss)://[^\s,]+(,(nats|tls|ws|wss)://[^\s,]+)*$`
	// +optional
	URL string `json:"url,omitempty"`

	// CredentialsSecret names a Secret key that holds a NATS credentials
	// (.creds) file for url.
	// +optional
	CredentialsSecret *SecretKeyRef `json:"credentialsSecret,omitempty"`

	// Managed makes the operator run a NATS cluster (a StatefulSet) for this
	// CometdCluster.
	// +optional
	Managed *ManagedNATS `json:"managed,omitempty"`
}

// SecretKeyRef names one key of a Secret in the CometdCluster's namespace.
type SecretKeyRef struct {
	// Name is the Secret's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key is the key within the Secret.
	// +kubebuilder:default="nats.creds"
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// ManagedNATS is a NATS cluster run by the operator.
type ManagedNATS struct {
	// Replicas is the number of NATS servers. Three survives the loss of one.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Image is the NATS server image. Empty means the operator's default (its
	// --nats-image flag).
	// +optional
	Image string `json:"image,omitempty"`

	// Resources are the NATS container's requests and limits.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Cluster configures the routes between the NATS servers.
	// +kubebuilder:default={}
	// +optional
	Cluster NATSClusterRoutes `json:"cluster,omitempty"`

	// TLS encrypts the brokers' connections and the routes with a certificate
	// you provide (for example from cert-manager). Unset means plain TCP,
	// authenticated by the operator's generated credentials.
	// +optional
	TLS *NATSTLS `json:"tls,omitempty"`
}

// NATSTLS names the Secret holding the managed NATS servers' certificate.
type NATSTLS struct {
	// SecretName is a kubernetes.io/tls Secret in the cluster's namespace
	// with tls.crt, tls.key and ca.crt (the CA that signed tls.crt, which
	// the brokers and the other servers verify it with). The certificate
	// must name <cluster>-nats.<namespace>.svc (the brokers' URL) and
	// *.<cluster>-nats-headless.<namespace>.svc (the routes). A renewed
	// certificate takes effect when the NATS pods restart.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName"`
}

// NATSClusterRoutes configures NATS cluster routing: every server routes to
// every other through the headless Service.
type NATSClusterRoutes struct {
	// Port is the route port.
	// +kubebuilder:default=6222
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
}

// ServiceSpec configures the client Service.
type ServiceSpec struct {
	// Type is the Service type.
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// Port is the Service port clients connect to.
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// Annotations are added to the client Service (for example for a cloud
	// load balancer).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PodOverrides customise the broker pods.
type PodOverrides struct {
	// Labels are added to the broker pods. They cannot replace the labels the
	// operator selects pods by.
	// +kubebuilder:validation:XValidation:rule="!('app.kubernetes.io/name' in self) && !('app.kubernetes.io/instance' in self) && !('app.kubernetes.io/component' in self)",message="spec.pod.labels must not set app.kubernetes.io/name, app.kubernetes.io/instance or app.kubernetes.io/component: the operator selects broker pods by them"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations are added to the broker pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// Affinity is the broker pods' scheduling affinity.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// Tolerations are the broker pods' tolerations.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// NodeSelector restricts the nodes broker pods run on.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// TopologySpreadConstraints spread the broker pods. Their label selectors
	// may use the operator's labels.
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// PriorityClassName is the broker pods' priority class.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// TerminationGracePeriodSeconds bounds a broker's drain on shutdown.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`

	// SecurityContext is the broker pods' security context. Unset means
	// non-root with the runtime's default seccomp profile.
	// +optional
	SecurityContext *corev1.PodSecurityContext `json:"securityContext,omitempty"`
}

// DisruptionBudgetSpec configures the brokers' PodDisruptionBudget.
type DisruptionBudgetSpec struct {
	// MaxUnavailable is how many broker pods a voluntary disruption (a node
	// drain) may take down at once: a number or a percentage.
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="spec.disruptionBudget.maxUnavailable must be a non-negative number or a percentage between 0% and 100%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// AutoscalingSpec declares the bounds, the load signal and the pace of the
// broker count's changes.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",message="spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas"
// +kubebuilder:validation:XValidation:rule="self.metric != 'sessions' || (has(self.targetSessionsPerPod) && !has(self.targetCPUUtilizationPercentage))",message="spec.autoscaling.metric sessions needs targetSessionsPerPod (and no targetCPUUtilizationPercentage)"
// +kubebuilder:validation:XValidation:rule="self.metric != 'cpu' || (has(self.targetCPUUtilizationPercentage) && !has(self.targetSessionsPerPod))",message="spec.autoscaling.metric cpu needs targetCPUUtilizationPercentage (and no targetSessionsPerPod)"
type AutoscalingSpec struct {
	// MinReplicas is the fewest broker pods the autoscaler runs.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// MaxReplicas is the most broker pods the autoscaler runs.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxReplicas int32 `json:"maxReplicas"`

	// Metric is the load signal: sessions (client sessions per ready broker,
	// read from the brokers by the operator, which sets spec.replicas through
	// the scale subresource) or cpu (average CPU utilization of the broker
	// pods, through a HorizontalPodAutoscaler named after the cluster, which
	// needs the cluster's metrics-server and CPU requests on the brokers).
	// +kubebuilder:default=sessions
	// +optional
	Metric AutoscalingMetric `json:"metric,omitempty"`

	// TargetSessionsPerPod is the client sessions per broker pod to aim at
	// (metric sessions; required with it). The count changes only when the
	// sessions per pod are more than 10% off the target. Size it from the
	// memory a session takes (docs/operations.md).
	// +kubebuilder:validation:Minimum=1
	// +optional
	TargetSessionsPerPod *int32 `json:"targetSessionsPerPod,omitempty"`

	// TargetCPUUtilizationPercentage is the average CPU utilization, as a
	// percentage of the broker container's CPU request, to aim at (metric
	// cpu; required with it).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	TargetCPUUtilizationPercentage *int32 `json:"targetCPUUtilizationPercentage,omitempty"`

	// Behavior paces scaling up and down, as a HorizontalPodAutoscaler's
	// behavior does (with metric cpu it is the HPA's). Unset rules take the
	// defaults given on each field.
	// +optional
	Behavior *AutoscalingBehavior `json:"behavior,omitempty"`
}

// AutoscalingBehavior holds the rules for each direction.
type AutoscalingBehavior struct {
	// ScaleUp paces growth. Defaults: no stabilization window, and every 15
	// seconds at most 4 pods or 100% of the current count, whichever is more.
	// +optional
	ScaleUp *ScalingRules `json:"scaleUp,omitempty"`
	// ScaleDown paces shrinking. Defaults: a 300-second stabilization window,
	// and every 60 seconds at most 1 pod or 10% of the current count,
	// whichever is more. Each removed broker hands its sessions over first.
	// +optional
	ScaleDown *ScalingRules `json:"scaleDown,omitempty"`
}

// ScalingRules pace one direction of scaling.
type ScalingRules struct {
	// StabilizationWindowSeconds is how far back the autoscaler looks before
	// it changes the count: scaling up goes to the lowest count recommended
	// within the window, scaling down to the highest, so that a short spike
	// or dip changes nothing.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	StabilizationWindowSeconds *int32 `json:"stabilizationWindowSeconds,omitempty"`

	// PeriodSeconds is the shortest time between two changes in this
	// direction.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1800
	// +optional
	PeriodSeconds *int32 `json:"periodSeconds,omitempty"`

	// Pods is the most pods one change adds or removes.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Pods *int32 `json:"pods,omitempty"`

	// Percent is the same bound as a percentage of the current count; the
	// larger of the two applies.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Percent *int32 `json:"percent,omitempty"`
}

// Condition types of a CometdCluster.
const (
	// ConditionAvailable is True when at least one broker is ready and clients
	// can connect.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while the brokers are being created,
	// updated or scaled.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when fewer brokers are ready than desired, or
	// the operator cannot apply the spec.
	ConditionDegraded = "Degraded"
	// ConditionPolicyApplied is True when every ready broker enforces the
	// latest compiled channel policy (status.policyVersion).
	ConditionPolicyApplied = "PolicyApplied"
	// ConditionFanoutReady is True when a message published on one broker
	// reaches the clients of every other broker: every ready managed NATS
	// server routes to all the others, and every ready broker is connected to
	// its backbone. A single broker without NATS is trivially ready.
	ConditionFanoutReady = "FanoutReady"
)

// CometdClusterStatus is the observed state of a CometdCluster.
type CometdClusterStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Replicas is the number of broker pods that exist.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// ReadyReplicas is the number of broker pods that are ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Sessions is the client sessions the ready brokers hold, as they last
	// reported.
	// +optional
	Sessions int64 `json:"sessions,omitempty"`

	// State sums the conditions up in a word: Degraded, Progressing,
	// Available or Unavailable, the first that holds.
	// +optional
	State string `json:"state,omitempty"`

	// Autoscaling is what the sessions autoscaler last saw and decided
	// (metric sessions only).
	// +optional
	Autoscaling *AutoscalingStatus `json:"autoscaling,omitempty"`

	// Rebalance tells when sessions were last moved to even the brokers out.
	// +optional
	Rebalance *RebalanceStatus `json:"rebalance,omitempty"`

	// Selector is the label selector of the broker pods (scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`

	// Endpoint is the URL Bayeux clients connect to, inside the cluster.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// PolicyVersion is the version of the channel policy document the
	// operator last wrote to the cluster's policy ConfigMap.
	// +optional
	PolicyVersion string `json:"policyVersion,omitempty"`

	// Conditions describe the cluster's state: Available, Progressing,
	// Degraded, PolicyApplied and FanoutReady (a message published on one
	// broker reaches the clients of every other broker).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// The states of status.state.
const (
	StateAvailable   = "Available"
	StateProgressing = "Progressing"
	StateDegraded    = "Degraded"
	StateUnavailable = "Unavailable"
)

// AutoscalingStatus is the sessions autoscaler's view.
type AutoscalingStatus struct {
	// CurrentSessionsPerPod is the client sessions per ready broker.
	CurrentSessionsPerPod int64 `json:"currentSessionsPerPod"`
	// DesiredReplicas is the broker count the autoscaler decided on.
	DesiredReplicas int32 `json:"desiredReplicas"`
	// LastScaleTime is when the autoscaler last changed spec.replicas.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
	// Reason explains the latest decision.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// RebalanceStatus tells about the latest rebalance.
type RebalanceStatus struct {
	// LastTime is when the operator last asked brokers to shed sessions.
	// +optional
	LastTime *metav1.Time `json:"lastTime,omitempty"`
	// Sessions is how many sessions it asked them to move then.
	// +optional
	Sessions int64 `json:"sessions,omitempty"`
}

// CometdCluster is a fleet of Bayeux (CometD) brokers behind one Service.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=cometd
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Sessions",type=integer,JSONPath=`.status.sessions`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.status.policyVersion`,priority=1
type CometdCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   CometdClusterSpec   `json:"spec,omitempty"`
	Status CometdClusterStatus `json:"status,omitempty"`
}

// CometdClusterList is a list of CometdClusters.
// +kubebuilder:object:root=true
type CometdClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CometdCluster `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CometdCluster{}, &CometdClusterList{})
}
