package resources

import (
	"path"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/config"
)

// Broker ports and paths, as rendered into broker.yaml and used by the
// Deployment and Services.
const (
	BrokerPort     = 8080
	AdminPort      = 8081
	BrokerPortName = "bayeux"
	AdminPortName  = "admin"
	MountPath      = config.DefaultMountPath
	ConfigKey      = "broker.yaml"
	PolicyKey      = "policy.json"
	// Each volume gets its own directory under /etc/cometd, side by side:
	// ConfigMap and Secret volumes are read-only, so no mount may nest in one.
	ConfigDir       = "/etc/cometd/config"
	PolicyDir       = "/etc/cometd/policy"
	AuthKeysDir     = "/etc/cometd/keys"
	NATSCredsDir    = "/etc/cometd/nats"
	drainHeadroom   = 5 * time.Second
	minDrainPeriod  = time.Second
	defaultGraceSec = 30
)

// ConfigPath is where the broker reads its configuration.
var ConfigPath = path.Join(ConfigDir, ConfigKey)

// BrokerConfigFile is the broker configuration the cluster's spec describes,
// as the shared broker/config contract. Unset spec fields (possible only when
// the API server's defaults were bypassed) fall back to the broker's defaults.
func BrokerConfigFile(cc *v1.CometdCluster) config.File {
	s := cc.Spec.Broker
	f := config.File{
		Cluster:     cc.Namespace + "/" + cc.Name,
		Listen:      ":8080",
		AdminListen: ":8081",
		MountPath:   MountPath,
		PolicyFile:  PolicyPath,
	}
	if s.Timeout != nil {
		f.TimeoutMs = s.Timeout.Milliseconds()
	}
	if s.Interval != nil {
		f.IntervalMs = s.Interval.Milliseconds()
	}
	if s.MaxInterval != nil {
		f.MaxIntervalMs = s.MaxInterval.Milliseconds()
	}
	if s.MaxQueue != nil {
		f.MaxQueue = int(*s.MaxQueue)
	}
	if s.MaxSessions != nil {
		f.MaxSessions = int(*s.MaxSessions)
	}
	if s.MaxQueueSize != nil {
		f.MaxQueueBytes = s.MaxQueueSize.Value()
	}
	if s.MaxMessageSize != nil {
		f.MaxMessageSize = s.MaxMessageSize.Value()
	}
	for _, t := range s.Transports {
		f.Transports = append(f.Transports, string(t))
	}
	f.AllowedOrigins = append(f.AllowedOrigins, s.AllowedOrigins...)
	f.Demo = s.Demo
	// The broker drains within the pod's grace period, keeping a little for
	// the process to exit before the kubelet kills it.
	drain := time.Duration(gracePeriod(cc))*time.Second - drainHeadroom
	f.DrainGracePeriodMs = max(drain, minDrainPeriod).Milliseconds()
	f.Durability = Durability(cc)

	if n := cc.Spec.NATS; n != nil {
		switch {
		case n.URL != "":
			f.NATS.URL = n.URL
			if n.CredentialsSecret != nil {
				f.NATS.CredsFile = path.Join(NATSCredsDir, credsKey(n.CredentialsSecret))
			}
		case n.Managed != nil:
			f.NATS.URL = NATSURL(cc)
			f.NATS.TokenFile = NATSTokenPath
			if n.Managed.TLS != nil {
				f.NATS.CAFile = NATSCAPath
			}
		}
	}
	return f
}

// BrokerConfig renders BrokerConfigFile as broker.yaml, validated as the
// broker will validate it.
func BrokerConfig(cc *v1.CometdCluster) ([]byte, error) {
	f := BrokerConfigFile(cc)
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f.Marshal()
}

func gracePeriod(cc *v1.CometdCluster) int64 {
	if p := cc.Spec.Pod.TerminationGracePeriodSeconds; p != nil {
		return *p
	}
	return defaultGraceSec
}

func credsKey(r *v1.SecretKeyRef) string {
	if r.Key == "" {
		return "nats.creds"
	}
	return r.Key
}

// configMapBuilder builds a ConfigMap that holds one key: the broker's
// broker.yaml, the compiled policy.json, the managed NATS server's nats.conf.
// Update replaces the data only when it differs, so that an unchanged child
// is not written.
type configMapBuilder struct {
	base
	// suffix names the ConfigMap (cc.ChildName(suffix)); labels are its labels.
	suffix string
	labels map[string]string
	// key and value are its only entry.
	key, value string
}

func (b *configMapBuilder) Build() client.Object {
	return &corev1.ConfigMap{ObjectMeta: b.meta(b.suffix)}
}

func (b *configMapBuilder) Update(obj client.Object) error {
	cm := obj.(*corev1.ConfigMap)
	mergeMeta(cm, b.labels, nil)
	if cm.Data[b.key] != b.value || len(cm.Data) != 1 || len(cm.BinaryData) != 0 {
		cm.Data = map[string]string{b.key: b.value}
		cm.BinaryData = nil
	}
	return b.own(cm)
}

// brokerConfigMap builds the broker ConfigMap (broker.yaml).
func brokerConfigMap(b base, config []byte) *configMapBuilder {
	return &configMapBuilder{base: b, suffix: SuffixConfig, labels: BrokerLabels(b.cc), key: ConfigKey, value: string(config)}
}

// policyConfigMap builds the cluster's policy ConfigMap (policy.json) from
// the document the reconciler compiled.
func policyConfigMap(b base, doc []byte) *configMapBuilder {
	return &configMapBuilder{base: b, suffix: SuffixPolicy, labels: BrokerLabels(b.cc), key: PolicyKey, value: string(doc)}
}

// natsConfigMap builds the managed NATS configuration (nats.conf).
func natsConfigMap(b base) *configMapBuilder {
	cm := &configMapBuilder{base: b, suffix: SuffixNATSConfig, labels: NATSLabels(b.cc), key: natsConfigKey}
	if b.cc.ManagedNATS() {
		cm.value = NATSConfig(b.cc)
	}
	return cm
}
