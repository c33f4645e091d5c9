package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEventSourceRelay: a stream opened on a node that does not hold the
// session (a Service sent it there) carries the session's messages, pulled
// from the owner; the owner keeps the session.
func TestEventSourceRelay(t *testing.T) {
	a, b := twoNodes(t)
	out := a.must(t, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":`+fayeTypes+`}]`)
	id := out[0]["clientId"].(string)
	a.subscribe(t, id, "/chat/*")
	sc, code := b.openSSE(t, id, nil)
	if code != http.StatusOK {
		t.Fatalf("relayed stream: status %d", code)
	}
	if ev, err := sc.next(); err != nil || ev != "retry: 5000" {
		t.Fatalf("first line %q, %v", ev, err)
	}
	waitFor(t, "the owner to bind the relay's pull", func() bool { return a.Session(id).conn.Load() != nil })
	for i := range 3 {
		if err := b.Publish("/chat/room", i); err != nil { // enters on B, reaches A over the backbone
			t.Fatal(err)
		}
		got := sc.messages()
		if len(got) != 1 || got[0]["data"] != float64(i) {
			t.Fatalf("event %d: %v", i, got)
		}
	}
	if a.Session(id) == nil || b.Session(id) != nil {
		t.Fatal("the session moved: a relayed stream must leave it on its owner")
	}

	// A stream opened on the owner ends the relayed one.
	local, code := a.openSSE(t, id, nil)
	if code != http.StatusOK {
		t.Fatalf("local stream: status %d", code)
	}
	if ev, _ := local.next(); ev != "retry: 5000" {
		t.Fatalf("first line %q", ev)
	}
	sc.ended()
	if err := a.Publish("/chat/room", "local"); err != nil {
		t.Fatal(err)
	}
	if got := local.messages(); len(got) != 1 || got[0]["data"] != "local" {
		t.Fatalf("local stream: %v", got)
	}

	// While the owner's stream is open, a relayed one is refused; once it
	// closed, a relayed one carries the session again, until it ends.
	if _, code := b.openSSE(t, id, nil); code != http.StatusNotFound {
		t.Fatalf("relayed stream next to the owner's: status %d", code)
	}
	local.resp.Body.Close()
	waitFor(t, "the owner's stream to end", func() bool { return a.Session(id).conn.Load() == nil })
	relayed, code := b.openSSE(t, id, nil)
	if code != http.StatusOK {
		t.Fatalf("second relayed stream: status %d", code)
	}
	if ev, _ := relayed.next(); ev != "retry: 5000" {
		t.Fatalf("first line %q", ev)
	}
	a.must(t, fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, id))
	relayed.ended()
}

func TestEventSourceRelayUnknownSession(t *testing.T) {
	_, b := twoNodes(t)
	for _, id := range []string{"node-a~nosuchsession0000000000", "node-gone~abcdefghijklmnop", strings.Repeat("x", 300)} {
		if _, code := b.openSSE(t, id, nil); code != http.StatusNotFound {
			t.Fatalf("stream of %.20s…: status %d", id, code)
		}
	}
}

// TestEventSourceRelayRequeues: messages the relay pulled and could not write
// go back to the owner's queue.
func TestEventSourceRelayRequeues(t *testing.T) {
	a, _ := twoNodes(t)
	id := a.handshake(t)
	a.subscribe(t, id, "/q")
	for i := range 3 {
		if err := a.Publish("/q", i); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := a.servePull(t.Context(), id, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"data":0`) || a.Session(id).QueueLen() != 0 {
		t.Fatalf("pull %s left %d queued", raw, a.Session(id).QueueLen())
	}
	body := raw[strings.IndexByte(string(raw), '\n')+1:]
	if _, err := a.serveRequeue(append([]byte(id+"\n"), body...)); err != nil {
		t.Fatal(err)
	}
	if n := a.Session(id).QueueLen(); n != 3 {
		t.Fatalf("requeued %d, want 3", n)
	}
	// Hostile requeues change nothing.
	for _, bad := range []string{"", "no newline", id + "\n{not json", "node-a~nobody\n[]"} {
		if _, err := a.serveRequeue([]byte(bad)); err != nil {
			t.Fatalf("requeue %q: %v", bad, err)
		}
	}
	if n := a.Session(id).QueueLen(); n != 3 {
		t.Fatalf("queue %d after hostile requeues", n)
	}
	// A pull for a session that ends is answered at once.
	start := time.Now()
	a.Session(id).Disconnect()
	if raw, _ := a.servePull(t.Context(), id, true); !strings.Contains(string(raw), `"s":410`) || time.Since(start) > sseKeepAlive/2 {
		t.Fatalf("pull of an ended session: %s", raw)
	}
}
