package resources

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/config"
)

// Durable sessions (spec.durability) live in NATS JetStream: a key-value
// bucket of session records and a stream of unacknowledged messages, bounded
// by maxBytes. With managed NATS the operator enables JetStream on every
// server and sizes it from maxBytes:
//
//   - JetStream storage (of the chosen kind) per server: maxBytes for the
//     stream plus room for the bucket of session records, a quarter of
//     maxBytes and at least 64Mi (JetStreamStore). A server holds at most one
//     copy of each stream, whatever the replicas, so this is per server.
//   - the other storage kind gets a token 1Mi: nats-server reads 0 as "size it
//     from the machine" (75% of its memory, or 1TB of disk), which is no bound.
//   - a store volume (emptyDir) for store_dir: twice the file storage plus
//     256Mi with file storage (a file stream's replication log can hold a
//     second copy of its messages until it is compacted, and the JetStream
//     cluster's own state lives there too), 256Mi with memory storage (the
//     JetStream cluster's state only). An emptyDir rather than a
//     PersistentVolumeClaim: it needs no storage class or provisioner, and
//     durable sessions protect against a broker's death, which a NATS pod
//     outlives; the loss of a NATS pod is what replicas > 1 is for.
//   - with memory storage, a memory request of 1.5 × the memory storage +
//     64Mi when spec.nats.managed.resources sets none: a memory stream of
//     small messages costs more than the bytes JetStream counts against its
//     bound. A memory limit set below it is kept (and caps the request): the
//     API server cannot refuse it, since a CEL rule that parses a quantity of
//     the core resources schema exceeds the CRD's rule cost budget.
const (
	natsStoreVolume      = "jetstream"
	natsStoreDir         = "/data"
	jsUnusedStore        = 1 << 20
	jsStateVolume        = 256 << 20
	natsBaseMemory       = 64 << 20
	natsStartupFailures  = 30
	natsHealthzJSServer  = "/healthz?js-server-only=true"
	natsHealthzJSEnabled = "/healthz?js-enabled-only=true"
)

// Durability is the cluster's durability settings with the broker's defaults
// filled in (nil without spec.durability), as the shared broker/config
// contract renders them into broker.yaml.
func Durability(cc *v1.CometdCluster) *config.Durability {
	d := cc.Spec.Durability
	if d == nil {
		return nil
	}
	out := &config.Durability{
		Storage:         string(d.Storage),
		Replicas:        config.DefaultDurabilityReplicas,
		MaxAgeMs:        config.DefaultDurabilityMaxAge.Milliseconds(),
		MaxBytes:        config.DefaultDurabilityMaxBytes,
		MaxSessionBytes: config.DefaultDurableSessionBytes,
	}
	if out.Storage == "" {
		out.Storage = config.DefaultDurabilityStorage
	}
	if d.Replicas != nil {
		out.Replicas = int(*d.Replicas)
	}
	if d.MaxAge != nil {
		out.MaxAgeMs = d.MaxAge.Milliseconds()
	}
	if d.MaxBytes != nil {
		out.MaxBytes = d.MaxBytes.Value()
	}
	if d.MaxSessionBytes != nil {
		out.MaxSessionBytes = d.MaxSessionBytes.Value()
	}
	return out
}

// JetStreamStore is the JetStream storage each managed NATS server gives
// durable sessions: the stream's maxBytes plus max(maxBytes/4, 64Mi) for the
// bucket of session records.
func JetStreamStore(maxBytes int64) int64 {
	return maxBytes + config.RecordBytes(maxBytes)
}

// NATSMemoryForDurability is the least memory a managed NATS container needs
// to hold memStore bytes of JetStream memory storage.
func NATSMemoryForDurability(memStore int64) int64 {
	return memStore + memStore/2 + natsBaseMemory
}

// natsJetStream renders the jetstream block of nats.conf ("" without
// durability): the store directory and both storage bounds.
func natsJetStream(cc *v1.CometdCluster) string {
	d := Durability(cc)
	if d == nil {
		return ""
	}
	mem, file := jetStreamLimits(d)
	var b strings.Builder
	fmt.Fprintf(&b, "# Durable sessions (spec.durability): %s storage, %d bytes for the stream and the session records.\n",
		d.Storage, JetStreamStore(d.MaxBytes))
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: %d\n  max_file_store: %d\n}\n", natsStoreDir, mem, file)
	return b.String()
}

// jetStreamLimits returns the memory and file storage bounds of one server.
func jetStreamLimits(d *config.Durability) (mem, file int64) {
	if d.Storage == config.DurabilityFile {
		return jsUnusedStore, JetStreamStore(d.MaxBytes)
	}
	return JetStreamStore(d.MaxBytes), jsUnusedStore
}

// natsStoreVolumeSize is the sizeLimit of the store_dir emptyDir.
func natsStoreVolumeSize(d *config.Durability) int64 {
	if d.Storage == config.DurabilityFile {
		return 2*JetStreamStore(d.MaxBytes) + jsStateVolume
	}
	return jsStateVolume
}

// natsJetStreamCluster reports whether the managed NATS servers form a
// JetStream cluster, which takes the routes' cluster block. A lone server
// with durability runs JetStream alone, without a cluster block: a JetStream
// cluster expects at least two servers and would never elect a leader.
func natsJetStreamCluster(cc *v1.CometdCluster) bool {
	return cc.Spec.Durability == nil || NATSReplicas(cc) > 1
}

// withDurability adds what JetStream needs to the managed NATS pod: the store
// volume, a memory request that leaves room for memory storage, and probes
// that let a server catch up with its JetStream cluster before it counts as
// ready (the StatefulSet rolls one server at a time on readiness), without
// the kubelet killing it for catching up slowly.
func withDurability(cc *v1.CometdCluster, pod *corev1.PodSpec) {
	d := Durability(cc)
	if d == nil {
		return
	}
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: natsStoreVolume, VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(natsStoreVolumeSize(d), resource.BinarySI)},
	}})
	c := &pod.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: natsStoreVolume, MountPath: natsStoreDir})
	if d.Storage == config.DurabilityMemory {
		need := NATSMemoryForDurability(JetStreamStore(d.MaxBytes))
		if _, set := c.Resources.Requests[corev1.ResourceMemory]; !set {
			if limit, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && limit.Value() < need {
				need = limit.Value()
			}
			c.Resources = *c.Resources.DeepCopy()
			if c.Resources.Requests == nil {
				c.Resources.Requests = corev1.ResourceList{}
			}
			c.Resources.Requests[corev1.ResourceMemory] = *resource.NewQuantity(need, resource.BinarySI)
		}
	}
	startup := c.ReadinessProbe.DeepCopy()
	startup.FailureThreshold = natsStartupFailures
	c.StartupProbe = startup
	c.ReadinessProbe.HTTPGet.Path = natsHealthzJSServer
	c.LivenessProbe.HTTPGet.Path = natsHealthzJSEnabled
}
