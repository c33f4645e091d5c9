package backbone

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// TestNATSMutualTLS connects over TLS with a client certificate, as configured
// by CAFile, CertFile and KeyFile, to a server that requires one.
func TestNATSMutualTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := testutil.WriteCert(t, dir, "ca", &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	testutil.WriteCert(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	testutil.WriteCert(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	file := func(n string) string { return filepath.Join(dir, n) }

	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: file("server.crt"), KeyFile: file("server.key"), CaFile: file("ca.crt"), Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := startNATS(t, 0, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, tc, 5
	})
	url := "tls://" + s.Addr().String()

	if n, err := NewNATS(NATSConfig{URL: url, CAFile: file("ca.crt"), FailFast: true}); err == nil {
		n.Close()
		t.Fatal("connected without a client certificate")
	}
	cfg := NATSConfig{URL: url, CAFile: file("ca.crt"), CertFile: file("client.crt"), KeyFile: file("client.key"), FailFast: true}
	cfg.NodeID = "a"
	a := newNATS(t, cfg)
	cfg.NodeID = "b"
	b := newNATS(t, cfg)
	rec := newRecorder(b)
	mustSub(t, b, "/tls")
	mustPub(t, a, "/tls", "secret")
	rec.waitData(t, "secret")
}
