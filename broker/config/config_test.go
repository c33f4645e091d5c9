package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

func TestParseAndValidate(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"empty means defaults", "", ""},
		{"full", "cluster: chat\ntimeoutMs: 20000\ntransports: [websocket]\ndrainRate: 50\nmaxSubscriptionsPerSession: -1\nnats:\n  url: nats://n:4222\n", ""},
		{"unknown field is an error", "timeout: 30s\n", "unknown field"},
		{"malformed", "timeoutMs: [\n", "parse broker config"},
		{"negative duration", "timeoutMs: -1\n", "timeoutMs must not be negative"},
		{"unknown transport", "transports: [sse]\n", `unknown transport "sse"`},
		{"relative mount path", "mountPath: cometd\n", "mountPath must start with '/'"},
		{"maxQueue below -1", "maxQueue: -2\n", "maxQueue must be -1"},
		{"drainRate negative", "drainRate: -2\n", "drainRate must be -1"},
		{"session cap", "maxSessions: 5000\n", ""},
		{"negative session cap", "maxSessions: -1\n", "maxSessions must not be negative"},
		{"subscriptions cap below -1", "maxSubscriptionsPerSession: -5\n", "maxSubscriptionsPerSession must be -1"},
		{"durability defaults", "durability: {}\n", ""},
		{"durability full", "durability:\n  storage: file\n  replicas: 3\n  maxAgeMs: 60000\n  maxBytes: 1048576\n  maxSessionBytes: 4096\n", ""},
		{"durability unknown storage", "durability:\n  storage: disk\n", `durability.storage must be "memory" or "file"`},
		{"durability even replicas", "durability:\n  replicas: 2\n", "durability.replicas must be 1, 3 or 5"},
		{"durability negative age", "durability:\n  maxAgeMs: -1\n", "durability bounds must not be negative"},
		{"durability session over stream", "durability:\n  maxBytes: 1000\n  maxSessionBytes: 2000\n", "exceeds maxBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultsAndRoundTrip(t *testing.T) {
	var f File
	if f.Timeout() != DefaultTimeout || f.MaxInterval() != DefaultMaxInterval || f.Interval() != 0 ||
		f.MaxLazyTimeout() != DefaultMaxLazyTimeout || f.DrainGracePeriod() != DefaultDrainGracePeriod {
		t.Errorf("zero File does not yield the documented defaults")
	}
	if got := f.EnabledTransports(); !reflect.DeepEqual(got, DefaultTransports) {
		t.Errorf("EnabledTransports() = %v, want %v", got, DefaultTransports)
	}
	in := File{Cluster: "chat", TimeoutMs: 45000, Transports: []string{bayeux.TransportLongPolling}, DrainRate: 10,
		MaxSubscriptionsPerSession: 50, MaxSessions: 10000, NATS: NATS{URL: "nats://a:4222,nats://b:4222", CredsFile: "/c"}}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal(f)): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(*out, in) {
		t.Errorf("round trip changed the file:\n got %+v\nwant %+v", *out, in)
	}
	d := Durability{}
	if d.StorageOrDefault() != DurabilityMemory || d.ReplicasOrDefault() != 1 || d.MaxAge() != DefaultDurabilityMaxAge ||
		d.MaxBytesOrDefault() != DefaultDurabilityMaxBytes || d.MaxSessionBytesOrDefault() != DefaultDurableSessionBytes {
		t.Errorf("zero Durability does not yield the documented defaults")
	}
	if out.Timeout() != 45*time.Second {
		t.Errorf("Timeout() = %v, want 45s", out.Timeout())
	}
}
