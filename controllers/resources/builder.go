package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// Default images, used when neither the CometdCluster nor Options names one.
const (
	DefaultBrokerImage = "cometd-broker:dev"
	DefaultNATSImage   = "nats:2.12-alpine"
)

// Options are the operator-wide settings the builders need besides the
// CometdCluster. The zero value uses DefaultBrokerImage and DefaultNATSImage.
type Options struct {
	// BrokerImage is the broker image for clusters that do not name one.
	BrokerImage string
	// NATSImage is the NATS server image for managed NATS without an image.
	NATSImage string
}

func (o Options) brokerImage(cc *v1.CometdCluster) string {
	switch {
	case cc.Spec.Image != "":
		return cc.Spec.Image
	case o.BrokerImage != "":
		return o.BrokerImage
	}
	return DefaultBrokerImage
}

func (o Options) natsImage(m *v1.ManagedNATS) string {
	switch {
	case m.Image != "":
		return m.Image
	case o.NATSImage != "":
		return o.NATSImage
	}
	return DefaultNATSImage
}

// Builder builds one child object of a CometdCluster.
type Builder interface {
	// Build returns an empty object of the child's kind carrying only its name
	// and namespace, ready for a Get.
	Build() client.Object
	// Update makes obj, either fresh from Build or as read from the API
	// server, look like the desired child: labels, spec and the controller
	// reference. It leaves fields it does not own (status, values the API
	// server defaulted or allocated) alone, so updating an object that is
	// already as desired changes nothing.
	Update(obj client.Object) error
}

// Builders returns the cluster's children in the order they are applied:
// the backbone first (managed NATS), then configuration (broker.yaml and the
// compiled channel policy policyDoc, see broker/policy), Services, the broker
// Deployment and its disruption budget. The scheme resolves the owner's kind
// for controller references.
func Builders(cc *v1.CometdCluster, opts Options, scheme *runtime.Scheme, policyDoc []byte) ([]Builder, error) {
	base := base{cc: cc, opts: opts, scheme: scheme}
	var bs []Builder
	if cc.ManagedNATS() {
		bs = append(bs,
			&natsAuthSecretBuilder{base},
			natsConfigMap(base),
			&natsHeadlessServiceBuilder{base},
			&natsServiceBuilder{base},
			&natsStatefulSetBuilder{base},
			&natsNetworkPolicyBuilder{base},
		)
	}
	cfg, err := BrokerConfig(cc)
	if err != nil {
		return nil, err
	}
	bs = append(bs,
		brokerConfigMap(base, cfg),
		policyConfigMap(base, policyDoc),
		&headlessServiceBuilder{base},
		&serviceBuilder{base},
		&deploymentBuilder{base: base, configHash: Hash(cfg)},
		&pdbBuilder{base},
	)
	if CPUAutoscaled(cc) {
		bs = append(bs, &hpaBuilder{base})
	}
	return bs, nil
}

// Obsolete returns the children that must not exist for the cluster as
// specified (the managed NATS objects once spec.nats.managed is removed, the
// HorizontalPodAutoscaler once the cluster no longer scales on CPU), as
// empty objects with name and namespace, ready for a Delete.
func Obsolete(cc *v1.CometdCluster) []client.Object {
	b := base{cc: cc}
	var out []client.Object
	if !CPUAutoscaled(cc) {
		out = append(out, (&hpaBuilder{b}).Build())
	}
	if !cc.ManagedNATS() {
		out = append(out,
			(&natsStatefulSetBuilder{b}).Build(),
			(&natsServiceBuilder{b}).Build(),
			(&natsHeadlessServiceBuilder{b}).Build(),
			natsConfigMap(b).Build(),
			(&natsAuthSecretBuilder{b}).Build(),
			(&natsNetworkPolicyBuilder{b}).Build(),
		)
	}
	return out
}

// base carries what every builder needs.
type base struct {
	cc     *v1.CometdCluster
	opts   Options
	scheme *runtime.Scheme
}

func (b base) meta(suffix string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: b.cc.ChildName(suffix), Namespace: b.cc.Namespace}
}

// own sets the cluster as obj's controller. It changes nothing when it already is.
func (b base) own(obj client.Object) error {
	if err := controllerutil.SetControllerReference(b.cc, obj, b.scheme); err != nil {
		return fmt.Errorf("set owner of %s: %w", obj.GetName(), err)
	}
	return nil
}

// Hash is the first 16 hex digits of the SHA-256 of v's JSON encoding (map
// keys sorted, so it is deterministic).
func Hash(v any) string {
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			// Every value hashed here is a Kubernetes API struct, which always
			// encodes; a failure is a programming error.
			panic(fmt.Sprintf("resources.Hash: %v", err))
		}
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// mergeMeta adds labels and annotations to obj's, keeping keys others set.
func mergeMeta(obj metav1.Object, labels, annotations map[string]string) {
	l := obj.GetLabels()
	if l == nil && len(labels) > 0 {
		l = map[string]string{}
	}
	for k, v := range labels {
		l[k] = v
	}
	obj.SetLabels(l)
	a := obj.GetAnnotations()
	if a == nil && len(annotations) > 0 {
		a = map[string]string{}
	}
	for k, v := range annotations {
		a[k] = v
	}
	obj.SetAnnotations(a)
}

// syncUserAnnotations sets the user's annotations on obj and removes the
// ones a previous spec set that the current one no longer has.
func syncUserAnnotations(obj metav1.Object, user map[string]string) {
	a := obj.GetAnnotations()
	for _, k := range strings.Split(a[AnnotationManagedAnnotations], ",") {
		if _, keep := user[k]; !keep && k != "" {
			delete(a, k)
		}
	}
	keys := slices.Sorted(maps.Keys(user))
	want := map[string]string{}
	maps.Copy(want, user)
	if len(keys) > 0 {
		want[AnnotationManagedAnnotations] = strings.Join(keys, ",")
	} else {
		delete(a, AnnotationManagedAnnotations)
	}
	obj.SetAnnotations(a)
	mergeMeta(obj, nil, want)
}

// specChanged reports whether a child's spec must be replaced by desired. It
// must when desired differs from what the operator last wrote (the hash in
// AnnotationSpecHash: this catches removed fields), or when someone changed a
// field the operator sets (desired is no longer a subset of current). Fields
// the API server defaulted or allocated, absent from desired, do not count.
// It records the new hash on obj. Usually hashed and desired are the same
// value; a builder that copies allocated values into desired hashes the
// value before the copy, so that an allocation does not change the hash.
func specChanged(obj metav1.Object, hashed, desired, current any) bool {
	h := Hash(hashed)
	old := obj.GetAnnotations()[AnnotationSpecHash]
	mergeMeta(obj, nil, map[string]string{AnnotationSpecHash: h})
	return old != h || !equality.Semantic.DeepDerivative(desired, current)
}
