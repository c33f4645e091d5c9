package backbone

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

var _ Liveness = (*NATS)(nil)

// TestNATSSubjectLimit: the longest channel name a Bayeux server accepts (1024
// bytes, every byte escaped) travels between nodes; a longer name is refused by
// the Bayeux grammar; a subject that would not fit NATS's protocol line (a valid
// channel under a long subject prefix) is refused with ErrSubjectTooLong. No
// refusal costs a node anything.
func TestNATSSubjectLimit(t *testing.T) {
	s := startNATS(t, 0, nil)
	cfg := func(id, prefix string) NATSConfig {
		return NATSConfig{URL: s.ClientURL(), Cluster: t.Name(), NodeID: id, SubjectPrefix: prefix, FailFast: true}
	}
	a, b := newNATS(t, cfg("nats-0", "")), newNATS(t, cfg("nats-1", ""))
	longPrefix := newNATS(t, cfg("nats-2", strings.Repeat("p", 600)))
	rec := newRecorder(b)

	// 1024 bytes of two-byte characters: every byte becomes three in the subject.
	longest := "/l/" + strings.Repeat("é", (bayeux.MaxChannelLength-3)/2)
	if s := channelSubject(b.chPrefix, longest); len(s) > MaxSubjectLength || len(s) < 3000 {
		t.Fatalf("subject of the longest channel has %d bytes", len(s))
	}
	mustSub(t, b, longest, "/ok")
	settle(t, a, rec, "/ok")
	mustPub(t, a, longest, "longest")
	rec.waitData(t, "longest")

	tooLong := "/l/" + strings.Repeat("é", 700)
	if err := a.Publish(tooLong, []byte("x"), ""); !errors.Is(err, bayeux.ErrChannelLong) {
		t.Errorf("Publish on a %d-byte channel: err = %v, want bayeux.ErrChannelLong", len(tooLong), err)
	}
	if err := b.Subscribe(tooLong + "/**"); !errors.Is(err, bayeux.ErrChannelLong) {
		t.Errorf("Subscribe to a %d-byte pattern: err = %v, want bayeux.ErrChannelLong", len(tooLong), err)
	}
	if err := longPrefix.Publish(longest, []byte("x"), ""); !errors.Is(err, ErrSubjectTooLong) {
		t.Errorf("Publish on the longest channel under a 600-byte prefix: err = %v, want ErrSubjectTooLong", err)
	}
	deepest := "/l/" + strings.Repeat("é", (bayeux.MaxChannelLength-6)/2) + "/**"
	if err := longPrefix.Subscribe(deepest); !errors.Is(err, ErrSubjectTooLong) {
		t.Errorf("Subscribe to a %d-byte pattern under a 600-byte prefix: err = %v, want ErrSubjectTooLong", len(deepest), err)
	}
	if _, err := a.Request(context.Background(), strings.Repeat("n", 2000), nil); !errors.Is(err, ErrNoNode) {
		t.Errorf("Request to a 2000-byte node ID: err = %v, want ErrNoNode", err)
	}
	// Every node is still connected and still carries traffic.
	for _, n := range []*NATS{a, b, longPrefix} {
		if err := n.Healthy(); err != nil {
			t.Errorf("%s unhealthy after refused names: %v", n.NodeID(), err)
		}
		if err := n.Alive(); err != nil {
			t.Errorf("%s not alive after refused names: %v", n.NodeID(), err)
		}
	}
	mustPub(t, a, "/ok", "after")
	rec.waitData(t, "after")
}

// TestNATSAlive: when the client closes the connection on its own (here, a
// server with a short max_control_line ends it over a long subject), the node
// reports itself dead, for good, while a node closed by Close is not.
func TestNATSAlive(t *testing.T) {
	s := startNATS(t, 0, func(o *server.Options) { o.MaxControlLine = 256 })
	n := newNATS(t, NATSConfig{URL: s.ClientURL(), Cluster: t.Name(), NodeID: "alive", FailFast: true})
	if err := n.Alive(); err != nil {
		t.Fatalf("Alive on a fresh connection: %v", err)
	}
	// Under MaxSubjectLength, over this server's limit.
	_ = n.Publish("/"+strings.Repeat("x", 400), []byte("x"), "")
	waitCond(t, "the server to close the connection", func() bool { return n.Alive() != nil })
	if err := n.Healthy(); err == nil {
		t.Error("Healthy = nil on a connection closed for good")
	}

	closed := newNATS(t, NATSConfig{URL: s.ClientURL(), Cluster: t.Name(), NodeID: "closed", FailFast: true})
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closed.Alive(); err != nil {
		t.Errorf("Alive after Close = %v, want nil", err)
	}
}
