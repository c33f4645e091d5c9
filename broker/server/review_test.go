package server

import (
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// TestReplacedConnectLeavesMessagesForTheNewOne: a client sends a new
// /meta/connect only when it has given up on the previous one, so a message
// queued while the old connect is being answered must go with the new connect,
// not out on the abandoned request.
func TestReplacedConnectLeavesMessagesForTheNewOne(t *testing.T) {
	ts := newTestServer(t, Config{})
	id := ts.connected(t)
	ss := ts.Session(id)
	connect := func() *pendingConnect {
		m := &ServerMessage{m: &bayeux.Mutable{Channel: bayeux.MetaConnect, ClientID: id, ConnectionType: "long-polling"}}
		return ts.beginConnect(m, ss, reqInfo{transport: "long-polling"})
	}
	old := connect()
	// The message arrives as the client's next connect replaces the held one,
	// before the old connect's goroutine has woken up to answer.
	if err := ss.Deliver(nil, "/chat/a", "m1"); err != nil {
		t.Fatal(err)
	}
	next := connect()
	msgs, reply := ts.finish(old, true)
	if len(msgs) != 0 {
		t.Fatalf("the replaced connect took %d message(s) to an abandoned request", len(msgs))
	}
	if reply == nil || reply.m.Successful != bayeux.True {
		t.Fatalf("replaced connect reply: %+v", reply)
	}
	msgs, _ = ts.finish(next, true)
	if len(msgs) != 1 || string(msgs[0].Data()) != `"m1"` {
		t.Fatalf("the new connect got %d message(s), want the one queued", len(msgs))
	}
}
