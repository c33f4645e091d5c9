package resources

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// startRenderedNATS starts a real NATS server from the configuration the
// builders render for a managed NATS (nats.conf including the Secret's
// auth.conf, laid out as the StatefulSet mounts them), on free ports, with
// routes to the given URLs instead of the pods' DNS names.
func startRenderedNATS(t *testing.T, conf, auth string, routes ...*url.URL) *natsserver.Server {
	t.Helper()
	return startRenderedNATSWith(t, conf, auth, func(o *natsserver.Options) { o.Routes = routes })
}

// startRenderedNATSWith is startRenderedNATS with the options (ports, routes)
// adjusted by adjust after the rendered configuration is loaded. A server
// whose configuration has a cluster block listens for routes on a free
// loopback port; one without stays without.
func startRenderedNATSWith(t *testing.T, conf, auth string, adjust func(*natsserver.Options)) *natsserver.Server {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"config/nats.conf": conf, "auth/auth.conf": auth} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("POD_NAME", fmt.Sprintf("nats-%d", time.Now().UnixNano()))
	opts, err := natsserver.ProcessConfigFile(filepath.Join(dir, "config/nats.conf"))
	if err != nil {
		t.Fatalf("the rendered NATS configuration does not load: %v", err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, -1
	if opts.Cluster.Port != 0 {
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", -1
	}
	opts.NoLog, opts.NoSigs = true, true
	adjust(opts)
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// A NATS server run from the rendered configuration refuses a client without
// the token or with a wrong one, accepts the brokers' token, accepts a route
// that has the route password and refuses one that has not.
func TestRenderedNATSRequiresCredentials(t *testing.T) {
	objs := build(t, cluster(managed), Options{})
	conf := find[*corev1.ConfigMap](t, objs, "chat-nats-config").Data["nats.conf"]
	secret := find[*corev1.Secret](t, objs, "chat-nats-auth")
	auth, token, pass := string(secret.Data["auth.conf"]), string(secret.Data["token"]), string(secret.Data["route-password"])
	a := startRenderedNATS(t, conf, auth)

	for name, opts := range map[string][]nats.Option{"no token": nil, "a wrong token": {nats.Token("guess")}} {
		if nc, err := nats.Connect(a.ClientURL(), opts...); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Errorf("a client with %s: %v, want an authorization error", name, err)
		}
	}
	nc, err := nats.Connect(a.ClientURL(), nats.Token(token))
	if err != nil {
		t.Fatalf("the brokers' token is refused: %v", err)
	}
	nc.Close()

	route := func(user *url.Userinfo) *url.URL {
		return &url.URL{Scheme: "nats", User: user, Host: a.ClusterAddr().String()}
	}
	b := startRenderedNATS(t, conf, auth, route(url.UserPassword("route", pass)))
	testutil.Eventually(t, 10*time.Second, "a route with the password", func(context.Context) (bool, string) {
		return a.NumRoutes() > 0 && b.NumRoutes() > 0, fmt.Sprintf("routes %d, %d", a.NumRoutes(), b.NumRoutes())
	})
	logs := &errorLog{}
	a.SetLogger(logs, false, false)
	c := startRenderedNATS(t, conf, auth, route(url.UserPassword("route", "guess")))
	testutil.Eventually(t, 10*time.Second, "a to refuse c's route", func(context.Context) (bool, string) {
		return logs.saw(`authentication error - user "route"`), fmt.Sprintf("routes a %d, c %d; a logged %q", a.NumRoutes(), c.NumRoutes(), logs.all())
	})
	if c.NumRoutes() != 0 {
		t.Fatalf("a route with a wrong password was accepted")
	}
}

// errorLog keeps a NATS server's log lines (notices and above).
type errorLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *errorLog) add(format string, v ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, strings.ToLower(fmt.Sprintf(format, v...)))
	l.mu.Unlock()
}

func (l *errorLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *errorLog) saw(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (l *errorLog) Noticef(string, ...any)         {}
func (l *errorLog) Warnf(string, ...any)           {}
func (l *errorLog) Debugf(string, ...any)          {}
func (l *errorLog) Tracef(string, ...any)          {}
func (l *errorLog) Fatalf(format string, v ...any) { l.add(format, v...) }
func (l *errorLog) Errorf(format string, v ...any) { l.add(format, v...) }

// writeTestCerts writes a CA and a server certificate for 127.0.0.1 signed
// by it, as tls.crt, tls.key and ca.crt, into dir.
func writeTestCerts(t *testing.T, dir string) {
	t.Helper()
	valid := func(c *x509.Certificate) *x509.Certificate {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		return c
	}
	ca, caKey := testutil.WriteCert(t, dir, "ca", valid(&x509.Certificate{SerialNumber: big.NewInt(1),
		Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}), nil, nil)
	testutil.WriteCert(t, dir, "tls", valid(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}), ca, caKey)
}

// With spec.nats.managed.tls, a NATS server run from the rendered
// configuration (the Secret's files where the pod mounts them) accepts only
// TLS clients that also have the token, and its routes run over TLS; the
// brokers are told a tls:// URL and the CA.
func TestRenderedNATSWithTLS(t *testing.T) {
	cc := cluster(managed, func(cc *v1.CometdCluster) { cc.Spec.NATS.Managed.TLS = &v1.NATSTLS{SecretName: "nats-cert"} })
	objs := build(t, cc, Options{})
	certs := t.TempDir()
	writeTestCerts(t, certs)
	mounted := func(s string) string { return strings.ReplaceAll(s, "/etc/nats/tls", certs) }
	conf := mounted(find[*corev1.ConfigMap](t, objs, "chat-nats-config").Data["nats.conf"])
	secret := find[*corev1.Secret](t, objs, "chat-nats-auth")
	auth, token, pass := mounted(string(secret.Data["auth.conf"])), string(secret.Data["token"]), string(secret.Data["route-password"])
	a := startRenderedNATS(t, conf, auth)

	if nc, err := nats.Connect(a.ClientURL(), nats.Token(token)); err == nil {
		nc.Close()
		t.Fatal("a client without TLS was accepted")
	}
	secure := []nats.Option{nats.Token(token), nats.RootCAs(filepath.Join(certs, "ca.crt"))}
	nc, err := nats.Connect(strings.Replace(a.ClientURL(), "nats://", "tls://", 1), secure...)
	if err != nil {
		t.Fatalf("a TLS client with the token: %v", err)
	}
	nc.Close()
	b := startRenderedNATS(t, conf, auth, &url.URL{Scheme: "nats", User: url.UserPassword("route", pass), Host: a.ClusterAddr().String()})
	testutil.Eventually(t, 10*time.Second, "a TLS route", func(context.Context) (bool, string) {
		return a.NumRoutes() > 0 && b.NumRoutes() > 0, fmt.Sprintf("routes %d, %d", a.NumRoutes(), b.NumRoutes())
	})
	vz, err := a.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !vz.Cluster.TLSRequired || !vz.TLSRequired {
		t.Errorf("TLS not required: clients %v, routes %v", vz.TLSRequired, vz.Cluster.TLSRequired)
	}

	f := BrokerConfigFile(cc)
	if f.NATS.URL != "tls://chat-nats.ns1.svc:4222" || f.NATS.CAFile != NATSCAPath || f.NATS.TokenFile != NATSTokenPath {
		t.Fatalf("broker NATS settings %+v", f.NATS)
	}
}
