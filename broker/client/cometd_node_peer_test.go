package client_test

import (
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/client/clienttest"
)

// TestCometDNodeServer runs the Go client against the CometD project's own
// Node server (npm cometd-nodejs-server), which speaks long-polling only.
// That server sends a session one copy of a message per matching
// subscription (the Java server and ours send one per session), so the
// shared suite's overlapping-subscription cases do not apply; these cases
// use disjoint channels.
func TestCometDNodeServer(t *testing.T) {
	s := clienttest.StartCometDNode(t, 0)
	tr := bayeux.TransportLongPolling
	t.Run("SubscribeChan", func(t *testing.T) { testSubscribeChan(t, s.URL, tr) })
	t.Run("Unsubscribe", func(t *testing.T) {
		ctx := ctxT(t)
		sub, _ := newTestClient(t, s.URL, tr)
		pub, _ := newTestClient(t, s.URL, tr)
		gone, stays := newInbox("/n/a"), newInbox("/n/b")
		h, err := sub.Subscribe(ctx, "/n/a", gone.handler)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Subscribe(ctx, "/n/b", stays.handler); err != nil {
			t.Fatal(err)
		}
		for i, ch := range []string{"/n/a", "/n/b"} {
			if err := pub.Publish(ctx, ch, payload{i}); err != nil {
				t.Fatal(err)
			}
		}
		if n := decodeN(t, gone.next(t, ctx)); n != 0 {
			t.Fatalf("/n/a got n=%d", n)
		}
		if n := decodeN(t, stays.next(t, ctx)); n != 1 {
			t.Fatalf("/n/b got n=%d", n)
		}
		if err := h.Unsubscribe(ctx); err != nil {
			t.Fatalf("unsubscribe: %v", err)
		}
		for i, ch := range []string{"/n/a", "/n/b"} {
			if err := pub.Publish(ctx, ch, payload{2 + i}); err != nil {
				t.Fatal(err)
			}
		}
		// /n/b's message was published after /n/a's, on the same connection.
		if n := decodeN(t, stays.next(t, ctx)); n != 3 {
			t.Fatalf("/n/b got n=%d, want 3", n)
		}
		gone.empty(t)
	})
	t.Run("PublishOnMetaFails", func(t *testing.T) {
		c, _ := newTestClient(t, s.URL, tr)
		if err := c.Publish(ctxT(t), "/meta/nope", payload{0}); err == nil {
			t.Fatal("publish on a meta channel succeeded")
		}
	})
}

func TestCometDNodeServerReconnectAfterRestart(t *testing.T) {
	s := clienttest.StartCometDNode(t, 0)
	testReconnectAfterRestart(t, s.URL, bayeux.TransportLongPolling, func() {
		s.Kill()
		clienttest.StartCometDNode(t, s.Port)
	})
}
