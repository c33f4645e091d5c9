package resources

import (
	"maps"
	"path"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// Volume and container names in the broker pod.
const (
	BrokerContainer  = "broker"
	configVolume     = "config"
	policyVolume     = "policy"
	authKeysVolume   = "auth-keys"
	natsCredsVolume  = "nats-credentials"
	brokerRunAsUser  = 65532
	probePeriod      = 10
	probeTimeout     = 2
	livenessFailures = 3
)

// BrokerMaxSurge is how many brokers beyond the desired count a rolling
// update starts (none is stopped before its replacement is available).
const BrokerMaxSurge = 1

// DesiredReplicas is the number of broker pods the cluster should run: the
// spec's replicas, kept within the autoscaling bounds when autoscaling is set.
func DesiredReplicas(cc *v1.CometdCluster) int32 {
	r := int32(1)
	if cc.Spec.Replicas != nil {
		r = *cc.Spec.Replicas
	}
	if a := cc.Spec.Autoscaling; a != nil {
		lo := int32(1)
		if a.MinReplicas != nil {
			lo = *a.MinReplicas
		}
		r = max(lo, min(r, max(a.MaxReplicas, lo)))
	}
	return r
}

// deploymentBuilder builds the broker Deployment.
type deploymentBuilder struct {
	base
	configHash string
}

func (b *deploymentBuilder) Build() client.Object {
	return &appsv1.Deployment{ObjectMeta: b.meta("")}
}

func (b *deploymentBuilder) Update(obj client.Object) error {
	d := obj.(*appsv1.Deployment)
	mergeMeta(d, BrokerLabels(b.cc), nil)
	desired := b.spec()
	if specChanged(d, desired, desired, d.Spec) {
		d.Spec = desired
	}
	return b.own(d)
}

func (b *deploymentBuilder) spec() appsv1.DeploymentSpec {
	cc := b.cc
	annotations := maps.Clone(cc.Spec.Pod.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationConfigHash] = b.configHash
	return appsv1.DeploymentSpec{
		Replicas: ptr.To(DesiredReplicas(cc)),
		Selector: &metav1.LabelSelector{MatchLabels: BrokerSelector(cc)},
		// Keep every broker serving while a new one starts: sessions drain
		// from the old pod to the others through the protocol.
		Strategy: appsv1.DeploymentStrategy{
			Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr.To(intstr.FromInt32(0)),
				MaxSurge:       ptr.To(intstr.FromInt32(BrokerMaxSurge)),
			},
		},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: brokerPodLabels(cc), Annotations: annotations},
			Spec:       b.podSpec(),
		},
	}
}

func (b *deploymentBuilder) podSpec() corev1.PodSpec {
	cc := b.cc
	p := cc.Spec.Pod
	volumes := []corev1.Volume{{
		Name: configVolume,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cc.ChildName(SuffixConfig)},
		}},
	}}
	// The policy ConfigMap is mounted whole (no subPath), so that the kubelet
	// updates the file in place and brokers reload it.
	volumes = append(volumes, corev1.Volume{
		Name: policyVolume,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cc.ChildName(SuffixPolicy)},
		}},
	})
	mounts := []corev1.VolumeMount{
		{Name: configVolume, MountPath: ConfigDir, ReadOnly: true},
		{Name: policyVolume, MountPath: PolicyDir, ReadOnly: true},
	}
	if au := cc.Spec.Access.Auth; au != nil && au.KeysSecret != "" {
		// The whole Secret: the policy document names the files, so changing
		// which keys are used, or rotating them, needs no new pod.
		volumes = append(volumes, corev1.Volume{
			Name:         authKeysVolume,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: au.KeysSecret}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: authKeysVolume, MountPath: AuthKeysDir, ReadOnly: true})
	}
	if n := cc.Spec.NATS; n != nil && n.URL != "" && n.CredentialsSecret != nil {
		volumes = append(volumes, corev1.Volume{
			Name: natsCredsVolume,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: n.CredentialsSecret.Name,
				Items:      []corev1.KeyToPath{{Key: credsKey(n.CredentialsSecret), Path: credsKey(n.CredentialsSecret)}},
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: natsCredsVolume, MountPath: NATSCredsDir, ReadOnly: true})
	}
	if cc.ManagedNATS() {
		volumes = append(volumes, corev1.Volume{
			Name: natsCredsVolume,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: cc.ChildName(SuffixNATSAuth),
				Items:      []corev1.KeyToPath{{Key: NATSTokenKey, Path: NATSTokenKey}},
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: natsCredsVolume, MountPath: NATSCredsDir, ReadOnly: true})
		if t := cc.Spec.NATS.Managed.TLS; t != nil {
			volumes = append(volumes, corev1.Volume{Name: natsCAVol, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: t.SecretName, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}}})
			mounts = append(mounts, corev1.VolumeMount{Name: natsCAVol, MountPath: path.Dir(NATSCAPath), ReadOnly: true})
		}
	}

	security := p.SecurityContext
	if security == nil {
		security = &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To[int64](brokerRunAsUser),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	}
	pullPolicy := cc.Spec.ImagePullPolicy
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name:            BrokerContainer,
			Image:           b.opts.brokerImage(cc),
			ImagePullPolicy: pullPolicy,
			// JSON logs: what log pipelines parse (the broker's default is text).
			Args: []string{"--config", ConfigPath, "--log-format", "json"},
			Ports: []corev1.ContainerPort{
				{Name: BrokerPortName, ContainerPort: BrokerPort, Protocol: corev1.ProtocolTCP},
				{Name: AdminPortName, ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
			},
			Env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: fieldRef("metadata.name")},
				{Name: "POD_NAMESPACE", ValueFrom: fieldRef("metadata.namespace")},
			},
			Resources:      cc.Spec.Resources,
			ReadinessProbe: httpProbe("/readyz", 1),
			LivenessProbe:  httpProbe("/healthz", livenessFailures),
			VolumeMounts:   mounts,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
		Volumes:                       volumes,
		TerminationGracePeriodSeconds: ptr.To(gracePeriod(cc)),
		SecurityContext:               security,
		ImagePullSecrets:              cc.Spec.ImagePullSecrets,
		Affinity:                      p.Affinity,
		Tolerations:                   p.Tolerations,
		NodeSelector:                  p.NodeSelector,
		TopologySpreadConstraints:     p.TopologySpreadConstraints,
		PriorityClassName:             p.PriorityClassName,
	}
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
}

// httpProbe probes path on the admin port, with every field the API server
// would otherwise default spelled out.
func httpProbe(path string, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString(AdminPortName), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    probePeriod,
		TimeoutSeconds:   probeTimeout,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}
