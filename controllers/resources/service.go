package resources

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

const defaultServicePort = 80

// ServicePort is the client Service's port.
func ServicePort(cc *v1.CometdCluster) int32 {
	if cc.Spec.Service.Port != 0 {
		return cc.Spec.Service.Port
	}
	return defaultServicePort
}

// Endpoint is the URL Bayeux clients inside the Kubernetes cluster connect to.
func Endpoint(cc *v1.CometdCluster) string {
	host := fmt.Sprintf("%s.%s.svc", cc.ChildName(""), cc.Namespace)
	if p := ServicePort(cc); p != defaultServicePort {
		host = fmt.Sprintf("%s:%d", host, p)
	}
	return "http://" + host + MountPath
}

// serviceBuilder builds the client Service in front of the ready brokers.
type serviceBuilder struct{ base }

func (b *serviceBuilder) Build() client.Object {
	return &corev1.Service{ObjectMeta: b.meta("")}
}

func (b *serviceBuilder) Update(obj client.Object) error {
	svc := obj.(*corev1.Service)
	mergeMeta(svc, BrokerLabels(b.cc), nil)
	syncUserAnnotations(svc, b.cc.Spec.Service.Annotations)
	typ := b.cc.Spec.Service.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	desired := corev1.ServiceSpec{
		Type:     typ,
		Selector: BrokerSelector(b.cc),
		Ports: []corev1.ServicePort{{
			Name: BrokerPortName, Port: ServicePort(b.cc), Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromString(BrokerPortName),
		}},
	}
	applyServiceSpec(svc, desired)
	return b.own(svc)
}

// headlessServiceBuilder builds the brokers' headless Service: one DNS record
// per ready broker, for the admin endpoints (status, metrics).
type headlessServiceBuilder struct{ base }

func (b *headlessServiceBuilder) Build() client.Object {
	return &corev1.Service{ObjectMeta: b.meta(SuffixHeadless)}
}

func (b *headlessServiceBuilder) Update(obj client.Object) error {
	svc := obj.(*corev1.Service)
	mergeMeta(svc, BrokerLabels(b.cc), nil)
	applyServiceSpec(svc, corev1.ServiceSpec{
		Type:      corev1.ServiceTypeClusterIP,
		ClusterIP: corev1.ClusterIPNone,
		Selector:  BrokerSelector(b.cc),
		Ports: []corev1.ServicePort{
			{Name: BrokerPortName, Port: BrokerPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString(BrokerPortName)},
			{Name: AdminPortName, Port: AdminPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString(AdminPortName)},
		},
	})
	return b.own(svc)
}

// applyServiceSpec replaces svc's spec with desired when it must, keeping what
// the API server allocated (cluster IPs, IP families, node ports), which a
// Service update may not clear.
func applyServiceSpec(svc *corev1.Service, desired corev1.ServiceSpec) {
	hashed := desired
	cur := svc.Spec
	desired.Ports = append([]corev1.ServicePort(nil), desired.Ports...)
	if desired.ClusterIP == "" {
		desired.ClusterIP, desired.ClusterIPs = cur.ClusterIP, cur.ClusterIPs
	} else if desired.ClusterIP == cur.ClusterIP {
		desired.ClusterIPs = cur.ClusterIPs
	}
	desired.IPFamilies, desired.IPFamilyPolicy = cur.IPFamilies, cur.IPFamilyPolicy
	if desired.Type != corev1.ServiceTypeClusterIP {
		for i := range desired.Ports {
			for _, p := range cur.Ports {
				if p.Name == desired.Ports[i].Name && desired.Ports[i].NodePort == 0 {
					desired.Ports[i].NodePort = p.NodePort
				}
			}
		}
	}
	if specChanged(svc, hashed, desired, cur) {
		svc.Spec = desired
	}
}
