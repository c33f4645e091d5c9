package resources

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// The managed NATS is closed to anyone without the cluster's credentials: a
// Secret the operator generates once holds a token for NATS clients (the
// brokers) and a password for the routes between the NATS servers, and the
// part of the NATS configuration that uses them (auth.conf, included by the
// ConfigMap's nats.conf). A NetworkPolicy lets only the cluster's brokers
// reach the client port, and only its NATS servers the route port.

// Keys of the managed NATS auth Secret.
const (
	NATSTokenKey         = "token"
	natsRoutePasswordKey = "route-password"
	natsAuthConfigKey    = "auth.conf"
	natsRouteUser        = "route"
	natsAuthDir          = "/etc/nats/auth"
	natsSecretBytes      = 32
)

// NATSTokenPath is where brokers of a managed NATS read its token.
var NATSTokenPath = NATSCredsDir + "/" + NATSTokenKey

// NATSAuthConfig renders auth.conf: the client token, and the cluster block
// whose routes authenticate with the route password (none for a lone server
// with durability, see natsJetStreamCluster). Rendered with empty secrets it
// is the shape the StatefulSet's config hash follows.
func NATSAuthConfig(cc *v1.CometdCluster, token, routePassword string) string {
	m := cc.Spec.NATS.Managed
	port := natsRoutePort(m)
	var routes []string
	for i := range natsReplicas(m) {
		routes = append(routes, fmt.Sprintf("    \"nats://%s:%s@%s-%d.%s.%s.svc:%d\"", natsRouteUser, routePassword,
			cc.ChildName(SuffixNATS), i, cc.ChildName(SuffixNATSHeadless), cc.Namespace, port))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by cometd-operator for CometdCluster %s/%s. Secret: do not copy.\n", cc.Namespace, cc.Name)
	fmt.Fprintf(&b, "authorization {\n  token: %q\n}\n", token)
	if !natsJetStreamCluster(cc) {
		return b.String()
	}
	routeTLS := ""
	if natsTLS(cc) != nil {
		routeTLS = "  tls {\n" + strings.ReplaceAll(natsTLSFiles(), "  ", "    ") + "    timeout: 5\n  }\n"
	}
	fmt.Fprintf(&b, "cluster {\n  name: %q\n  port: %d\n%s  authorization {\n    user: %q\n    password: %q\n  }\n  routes: [\n%s\n  ]\n}\n",
		cc.ChildName(SuffixNATS), port, routeTLS, natsRouteUser, routePassword, strings.Join(routes, "\n"))
	return b.String()
}

// natsAuthSecretBuilder builds the managed NATS auth Secret. It generates the
// token and the route password when the Secret has none (or a malformed
// one), and keeps them otherwise, so that applying it again changes nothing.
type natsAuthSecretBuilder struct{ base }

func (b *natsAuthSecretBuilder) Build() client.Object {
	return &corev1.Secret{ObjectMeta: b.meta(SuffixNATSAuth)}
}

func (b *natsAuthSecretBuilder) Update(obj client.Object) error {
	s := obj.(*corev1.Secret)
	mergeMeta(s, NATSLabels(b.cc), nil)
	s.Type = corev1.SecretTypeOpaque
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for _, k := range []string{NATSTokenKey, natsRoutePasswordKey} {
		if !validSecret(s.Data[k]) {
			v, err := randomHex()
			if err != nil {
				return err
			}
			s.Data[k] = []byte(v)
		}
	}
	s.Data[natsAuthConfigKey] = []byte(NATSAuthConfig(b.cc, string(s.Data[NATSTokenKey]), string(s.Data[natsRoutePasswordKey])))
	return b.own(s)
}

// validSecret reports whether v is a secret this builder generated: hex, of
// the full length (it goes into a URL and the NATS configuration unquoted).
func validSecret(v []byte) bool {
	if len(v) != 2*natsSecretBytes {
		return false
	}
	_, err := hex.DecodeString(string(v))
	return err == nil
}

func randomHex() (string, error) {
	b := make([]byte, natsSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a NATS secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// natsNetworkPolicyBuilder builds the NetworkPolicy of the managed NATS
// pods: the client port from the cluster's brokers, the route port from its
// NATS servers, the monitoring port (read-only: /healthz, /routez, which the
// kubelet and the operator read) from anywhere.
type natsNetworkPolicyBuilder struct{ base }

func (b *natsNetworkPolicyBuilder) Build() client.Object {
	return &networkingv1.NetworkPolicy{ObjectMeta: b.meta(SuffixNATS)}
}

func (b *natsNetworkPolicyBuilder) Update(obj client.Object) error {
	np := obj.(*networkingv1.NetworkPolicy)
	mergeMeta(np, NATSLabels(b.cc), nil)
	port := func(p int32) []networkingv1.NetworkPolicyPort {
		return []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(p))}}
	}
	from := func(sel map[string]string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: sel}}}
	}
	desired := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: NATSSelector(b.cc)},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{Ports: port(NATSClientPort), From: from(BrokerSelector(b.cc))},
			{Ports: port(natsRoutePort(b.cc.Spec.NATS.Managed)), From: from(NATSSelector(b.cc))},
			{Ports: port(NATSMonitorPort)},
		},
	}
	if specChanged(np, desired, desired, np.Spec) {
		np.Spec = desired
	}
	return b.own(np)
}
