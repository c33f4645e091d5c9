package backbone

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

var _ Liveness = (*NATS)(nil)

// TestNATSSubjectLimit: a channel whose subject would not fit NATS's protocol
// line is refused with ErrSubjectTooLong and costs the node nothing, while the
// longest channel name a Bayeux server accepts (1024 bytes, every byte escaped)
// still travels between nodes.
func TestNATSSubjectLimit(t *testing.T) {
	ns := natsCluster(t, 2)
	a, b := ns[0].(*NATS), ns[1].(*NATS)
	rec := newRecorder(b)

	// 1024 bytes of two-byte characters: every byte becomes three in the subject.
	longest := "/l/" + strings.Repeat("é", (1024-3)/2)
	if s := channelSubject(b.chPrefix, longest); len(s) > MaxSubjectLength || len(s) < 3000 {
		t.Fatalf("subject of the longest channel has %d bytes", len(s))
	}
	mustSub(t, b, longest, "/ok")
	settle(t, a, rec, "/ok")
	mustPub(t, a, longest, "longest")
	rec.waitData(t, "longest")

	tooLong := "/l/" + strings.Repeat("é", 700)
	if err := a.Publish(tooLong, []byte("x"), ""); !errors.Is(err, ErrSubjectTooLong) {
		t.Errorf("Publish on a %d-byte channel: err = %v, want ErrSubjectTooLong", len(tooLong), err)
	}
	if err := b.Subscribe(tooLong + "/**"); !errors.Is(err, ErrSubjectTooLong) {
		t.Errorf("Subscribe to a %d-byte pattern: err = %v, want ErrSubjectTooLong", len(tooLong), err)
	}
	if _, err := a.Request(context.Background(), strings.Repeat("n", 2000), nil); !errors.Is(err, ErrNoNode) {
		t.Errorf("Request to a 2000-byte node ID: err = %v, want ErrNoNode", err)
	}
	// Both nodes are still connected and still carry traffic.
	for _, n := range []*NATS{a, b} {
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
