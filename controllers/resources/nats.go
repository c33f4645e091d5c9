package resources

import (
	"fmt"
	"maps"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// Managed NATS ports and files.
const (
	NATSClientPort       = 4222
	NATSMonitorPort      = 8222
	defaultNATSRoutePort = 6222
	natsContainer        = "nats"
	natsConfigKey        = "nats.conf"
	natsAuthVolume       = "auth"
	natsConfigDir        = "/etc/nats/config"
	defaultNATSReplicas  = 3
)

// NATSURL is the managed NATS client URL the brokers connect to: tls:// when
// the managed NATS has a certificate.
func NATSURL(cc *v1.CometdCluster) string {
	scheme := "nats"
	if natsTLS(cc) != nil {
		scheme = "tls"
	}
	return fmt.Sprintf("%s://%s.%s.svc:%d", scheme, cc.ChildName(SuffixNATS), cc.Namespace, NATSClientPort)
}

func natsTLS(cc *v1.CometdCluster) *v1.NATSTLS {
	if !cc.ManagedNATS() {
		return nil
	}
	return cc.Spec.NATS.Managed.TLS
}

// Where the managed NATS's certificate is mounted, in the NATS pods and (the
// CA only) in the broker pods.
const (
	natsTLSDir    = "/etc/nats/tls"
	natsTLSVolume = "tls"
	// NATSCAPath is where brokers read the CA that signed the managed NATS's
	// certificate.
	NATSCAPath = "/etc/cometd/nats-tls/ca.crt"
	natsCAVol  = "nats-tls"
)

// NATSReplicas is the number of managed NATS servers the cluster asks for (0
// without managed NATS).
func NATSReplicas(cc *v1.CometdCluster) int32 {
	if !cc.ManagedNATS() {
		return 0
	}
	return natsReplicas(cc.Spec.NATS.Managed)
}

func natsReplicas(m *v1.ManagedNATS) int32 {
	if m.Replicas != nil {
		return *m.Replicas
	}
	return defaultNATSReplicas
}

func natsRoutePort(m *v1.ManagedNATS) int32 {
	if m.Cluster.Port != 0 {
		return m.Cluster.Port
	}
	return defaultNATSRoutePort
}

// NATSConfig renders the managed NATS server configuration: client and
// monitoring ports, JetStream with spec.durability (durability.go), and the
// auth Secret's auth.conf, which holds the client token and the cluster
// block, whose routes name every server of the StatefulSet through the
// headless Service (a server ignores its own route). The server name is the
// pod's, unique in the StatefulSet, as a JetStream cluster needs.
func NATSConfig(cc *v1.CometdCluster) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by cometd-operator for CometdCluster %s/%s.\n", cc.Namespace, cc.Name)
	fmt.Fprintf(&b, "server_name: $POD_NAME\nport: %d\nhttp_port: %d\n", NATSClientPort, NATSMonitorPort)
	if natsTLS(cc) != nil {
		fmt.Fprintf(&b, "tls {\n%s  timeout: 5\n}\n", natsTLSFiles())
	}
	b.WriteString(natsJetStream(cc))
	fmt.Fprintf(&b, "include %q\n", "../auth/"+natsAuthConfigKey)
	return b.String()
}

// natsServiceBuilder builds the managed NATS client Service.
type natsServiceBuilder struct{ base }

func (b *natsServiceBuilder) Build() client.Object {
	return &corev1.Service{ObjectMeta: b.meta(SuffixNATS)}
}

func (b *natsServiceBuilder) Update(obj client.Object) error {
	svc := obj.(*corev1.Service)
	mergeMeta(svc, NATSLabels(b.cc), nil)
	applyServiceSpec(svc, corev1.ServiceSpec{
		Type:     corev1.ServiceTypeClusterIP,
		Selector: NATSSelector(b.cc),
		Ports: []corev1.ServicePort{{Name: "client", Port: NATSClientPort, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromString("client")}},
	})
	return b.own(svc)
}

// natsHeadlessServiceBuilder builds the headless Service that gives each NATS
// server the stable DNS name its peers route to. Servers are published before
// they are ready, so that routes form while they start.
type natsHeadlessServiceBuilder struct{ base }

func (b *natsHeadlessServiceBuilder) Build() client.Object {
	return &corev1.Service{ObjectMeta: b.meta(SuffixNATSHeadless)}
}

func (b *natsHeadlessServiceBuilder) Update(obj client.Object) error {
	svc := obj.(*corev1.Service)
	mergeMeta(svc, NATSLabels(b.cc), nil)
	port := natsRoutePort(b.cc.Spec.NATS.Managed)
	applyServiceSpec(svc, corev1.ServiceSpec{
		Type:                     corev1.ServiceTypeClusterIP,
		ClusterIP:                corev1.ClusterIPNone,
		PublishNotReadyAddresses: true,
		Selector:                 NATSSelector(b.cc),
		Ports: []corev1.ServicePort{
			{Name: "client", Port: NATSClientPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("client")},
			{Name: "cluster", Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("cluster")},
			{Name: "monitor", Port: NATSMonitorPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("monitor")},
		},
	})
	return b.own(svc)
}

// natsStatefulSetBuilder builds the managed NATS servers.
type natsStatefulSetBuilder struct{ base }

func (b *natsStatefulSetBuilder) Build() client.Object {
	return &appsv1.StatefulSet{ObjectMeta: b.meta(SuffixNATS)}
}

func (b *natsStatefulSetBuilder) Update(obj client.Object) error {
	sts := obj.(*appsv1.StatefulSet)
	mergeMeta(sts, NATSLabels(b.cc), nil)
	desired := b.spec()
	if specChanged(sts, desired, desired, sts.Spec) {
		// Only some StatefulSet fields may change; the others are equal by
		// construction (names and selector are derived from the cluster's name).
		sts.Spec = desired
	}
	return b.own(sts)
}

// natsTLSFiles is the certificate part of a NATS tls block.
func natsTLSFiles() string {
	return fmt.Sprintf("  cert_file: %q\n  key_file: %q\n  ca_file: %q\n",
		natsTLSDir+"/tls.crt", natsTLSDir+"/tls.key", natsTLSDir+"/ca.crt")
}

func (b *natsStatefulSetBuilder) spec() appsv1.StatefulSetSpec {
	cc := b.cc
	m := cc.Spec.NATS.Managed
	mounts := []corev1.VolumeMount{
		{Name: configVolume, MountPath: natsConfigDir, ReadOnly: true},
		{Name: natsAuthVolume, MountPath: natsAuthDir, ReadOnly: true},
	}
	volumes := []corev1.Volume{{
		Name: configVolume,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cc.ChildName(SuffixNATSConfig)},
		}},
	}, {
		Name: natsAuthVolume,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: cc.ChildName(SuffixNATSAuth),
			Items:      []corev1.KeyToPath{{Key: natsAuthConfigKey, Path: natsAuthConfigKey}},
		}},
	}}
	if t := m.TLS; t != nil {
		mounts = append(mounts, corev1.VolumeMount{Name: natsTLSVolume, MountPath: natsTLSDir, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: natsTLSVolume,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: t.SecretName}}})
	}
	labels := maps.Clone(NATSLabels(cc))
	probe := func(failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromString("monitor"), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: probePeriod, TimeoutSeconds: probeTimeout, SuccessThreshold: 1, FailureThreshold: failures,
		}
	}
	spec := appsv1.StatefulSetSpec{
		Replicas:            ptr.To(natsReplicas(m)),
		ServiceName:         cc.ChildName(SuffixNATSHeadless),
		PodManagementPolicy: appsv1.ParallelPodManagement,
		Selector:            &metav1.LabelSelector{MatchLabels: NATSSelector(cc)},
		UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{
				Labels:      labels,
				Annotations: map[string]string{AnnotationConfigHash: Hash(NATSConfig(cc) + NATSAuthConfig(cc, "", ""))},
			},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{
					Name:            natsContainer,
					Image:           b.opts.natsImage(m),
					ImagePullPolicy: corev1.PullIfNotPresent,
					Args:            []string{"--config", natsConfigDir + "/" + natsConfigKey},
					Ports: []corev1.ContainerPort{
						{Name: "client", ContainerPort: NATSClientPort, Protocol: corev1.ProtocolTCP},
						{Name: "cluster", ContainerPort: natsRoutePort(m), Protocol: corev1.ProtocolTCP},
						{Name: "monitor", ContainerPort: NATSMonitorPort, Protocol: corev1.ProtocolTCP},
					},
					Env:            []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: fieldRef("metadata.name")}},
					Resources:      m.Resources,
					ReadinessProbe: probe(1),
					LivenessProbe:  probe(livenessFailures),
					VolumeMounts:   mounts,
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: ptr.To(false),
						ReadOnlyRootFilesystem:   ptr.To(true),
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
				}},
				Volumes:          volumes,
				ImagePullSecrets: cc.Spec.ImagePullSecrets,
				SecurityContext: &corev1.PodSecurityContext{
					RunAsNonRoot:   ptr.To(true),
					RunAsUser:      ptr.To[int64](brokerRunAsUser),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			},
		},
	}
	withDurability(cc, &spec.Template.Spec)
	return spec
}
