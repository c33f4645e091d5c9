package server

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
)

// principal stands for an attribute of a type its users assert (as the
// security policy's identity is).
type principal struct {
	Subject string   `json:"subject"`
	Groups  []string `json:"groups"`
}

func decodePrincipal(raw json.RawMessage) (any, error) {
	var p principal
	err := json.Unmarshal(raw, &p)
	return p, err
}

// TestSnapshotRestoreMovesASession moves an ack session with a delivered but
// unacknowledged batch and more messages queued from node A to node B,
// through the snapshot's JSON. On B the client goes on with the same clientId
// and no handshake: the unacknowledged batch comes again first, then the
// queue, in order, under the next batch id; its acknowledgement is honoured;
// its subscriptions hear messages published on another node; its typed
// attribute is back.
func TestSnapshotRestoreMovesASession(t *testing.T) {
	n := memoryNodes(t, backbone.NewMemoryHub(), Config{Timeout: 300 * time.Millisecond}, "node-a", "node-b", "node-c")
	a, b, c := n[0], n[1], n[2]
	for _, s := range []*testServer{a, b} {
		s.AddExtension(AckExtension{})
		s.RegisterAttribute("principal", decodePrincipal)
	}
	hs := a.must(t, `[{"channel":"/meta/handshake","supportedConnectionTypes":["long-polling"],"ext":{"ack":true}}]`)[0]
	id := hs["clientId"].(string)
	connect := func(ts *testServer, ack int) []msg {
		return ts.must(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","ext":{"ack":%d}}]`, id, ack))
	}
	connect(a, 0)
	a.subscribe(t, id, "/orders", "/news/*")
	want := principal{Subject: "alice", Groups: []string{"ops"}}
	a.Session(id).SetAttribute("principal", want)
	for i := 1; i <= 2; i++ {
		if err := a.Publish("/orders", i); err != nil {
			t.Fatal(err)
		}
	}
	first := connect(a, 0) // batch 1: messages 1 and 2, never acknowledged
	if ev := events(first); len(ev) != 2 || last(first)["ext"].(msg)["ack"] != 1.0 {
		t.Fatalf("first batch %v", first)
	}
	for i := 3; i <= 5; i++ {
		if err := a.Publish("/orders", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Publish("/news/today", "lazy or not"); err != nil {
		t.Fatal(err)
	}

	snap, err := a.Session(id).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	wire, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var moved SessionSnapshot
	if err := json.Unmarshal(wire, &moved); err != nil {
		t.Fatal(err)
	}
	if moved.ID != id || len(moved.Queue) != 4 || moved.Ack == nil || moved.Ack.Batch != 1 || len(moved.Ack.Unacked) != 2 {
		t.Fatalf("snapshot %s", wire)
	}
	a.Session(id).Disconnect() // the old owner lets go
	ss, err := b.RestoreSession(moved)
	if err != nil {
		t.Fatal(err)
	}
	if ss.ID() != id || b.Session(id) != ss || !ss.AckEnabled() || ss.Unacknowledged() != 2 || ss.QueueLen() != 4 {
		t.Fatalf("restored session %s: ack %v, %d unacked, %d queued", ss.ID(), ss.AckEnabled(), ss.Unacknowledged(), ss.QueueLen())
	}
	if got, _ := ss.Attribute("principal"); !reflect.DeepEqual(got, want) {
		t.Fatalf("principal attribute %#v, want %#v", got, want)
	}

	// Node C, which never saw the session, publishes: B's restored
	// subscriptions hear it over the backbone.
	if err := c.Publish("/news/tomorrow", "from c"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the publish from node C to reach the restored session", func() bool { return ss.QueueLen() == 5 })

	// The client never acknowledged batch 1: everything comes again, in order.
	out := connect(b, 0)
	var got []any
	for _, m := range events(out) {
		got = append(got, m["data"])
	}
	wantData := []any{1.0, 2.0, 3.0, 4.0, 5.0, "lazy or not", "from c"}
	if !reflect.DeepEqual(got, wantData) {
		t.Fatalf("on node B the client got %v, want %v", got, wantData)
	}
	if r := last(out); r["successful"] != true || r["ext"].(msg)["ack"] != 2.0 {
		t.Fatalf("connect reply on node B %v, want ack batch 2", r)
	}
	connect(b, 2)
	if n := ss.Unacknowledged(); n != 0 {
		t.Fatalf("%d unacknowledged after acknowledging batch 2 on node B", n)
	}
	if st := b.Stats(); st.Sessions != 1 || st.Subscriptions != 2 {
		t.Fatalf("node B stats %+v", st)
	}
	if st := a.Stats(); st.Sessions != 0 || st.Subscriptions != 0 {
		t.Fatalf("node A kept %+v", st)
	}
}

// TestSnapshotRestoreKeepsTheQueueOrder checks the queue alone: messages in
// order, lazy flags kept, bytes counted as on the old node.
func TestSnapshotRestoreKeepsTheQueueOrder(t *testing.T) {
	a := newTestServer(t, Config{})
	b := newTestServer(t, Config{})
	id := a.connected(t)
	a.subscribe(t, id, "/q")
	lazy, err := a.CreateChannel("/lazy", func(c *ServerChannel) { c.SetLazy(true); c.SetPersistent(true) })
	if err != nil {
		t.Fatal(err)
	}
	if err := lazy.Subscribe(a.Session(id)); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		ch := "/q"
		if i%10 == 9 {
			ch = "/lazy"
		}
		if err := a.Publish(ch, i); err != nil {
			t.Fatal(err)
		}
	}
	old := a.Session(id)
	snap, err := old.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ss, err := b.RestoreSession(snap)
	if err != nil {
		t.Fatal(err)
	}
	if ss.QueueBytes() != old.QueueBytes() || ss.QueueLen() != 50 {
		t.Fatalf("restored queue %d messages, %d bytes; was %d, %d", ss.QueueLen(), ss.QueueBytes(), old.QueueLen(), old.QueueBytes())
	}
	for i, m := range ss.Queue() {
		var n int
		if err := json.Unmarshal(m.Data(), &n); err != nil || n != i || m.IsLazy() != (i%10 == 9) {
			t.Fatalf("message %d: data %s lazy %v", i, m.Data(), m.IsLazy())
		}
	}
	// Lazy messages that waited on the old node wait no longer.
	out := b.connect(t, id)
	if ev := events(out); len(ev) != 50 {
		t.Fatalf("connect on node B delivered %d of 50", len(ev))
	}
}

// TestRestoreSessionRefusals: a restore that cannot be done leaves nothing
// behind.
func TestRestoreSessionRefusals(t *testing.T) {
	a := newTestServer(t, Config{})
	id := a.connected(t)
	snap, err := a.Session(id).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	full := newTestServer(t, Config{MaxSessions: 1})
	full.connected(t)
	draining := newTestServer(t, Config{})
	draining.Drain()

	bad := snap
	bad.Subscriptions = []string{"/a/**/b"}
	badQueue := snap
	badQueue.Queue = []QueuedMessage{{Message: json.RawMessage(`{"channel":`)}}
	badAck := snap
	badAck.Ack = &AckSnapshot{Batch: 1, Unacked: []AckedMessage{{Batch: 2, Message: json.RawMessage(`{"channel":"/x","data":1}`)}}}
	noOwner := snap
	noOwner.ID = "no-node-prefix"
	for _, tc := range []struct {
		name string
		ts   *testServer
		snap SessionSnapshot
		want error
	}{
		{"same node, same clientId", a, snap, errSessionExists},
		{"full", full, snap, ErrFull},
		{"draining", draining, snap, ErrDraining},
		{"bad subscription", full, bad, nil},
		{"bad queue", full, badQueue, nil},
		{"ack batch after the last", full, badAck, nil},
		{"clientId without a node", full, noOwner, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.ts.Stats()
			ss, err := tc.ts.RestoreSession(tc.snap)
			if err == nil || ss != nil || tc.want != nil && err != tc.want {
				t.Fatalf("RestoreSession = %v, %v; want error %v", ss, err, tc.want)
			}
			if after := tc.ts.Stats(); after.Sessions != before.Sessions || after.Subscriptions != before.Subscriptions {
				t.Fatalf("a refused restore left %+v (before %+v)", after, before)
			}
		})
	}
	l := a.NewLocalSession("l")
	if err := l.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ServerSession().Snapshot(); err != ErrLocalSession {
		t.Fatalf("snapshot of a local session: %v, want ErrLocalSession", err)
	}
	gone := a.Session(id)
	gone.Disconnect()
	if _, err := gone.Snapshot(); err != ErrSessionClosed {
		t.Fatalf("snapshot of an ended session: %v, want ErrSessionClosed", err)
	}
}
