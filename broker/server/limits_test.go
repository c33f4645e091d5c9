package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// TestOwnerOf: only a clientId whose prefix is a valid node ID names an owner;
// anything else (a forged, over-long or garbled prefix) names none, so it is
// never used to address a backbone request.
func TestOwnerOf(t *testing.T) {
	tests := []struct{ id, want string }{
		{newClientID("node-a"), "node-a"},
		{"pod.ns_1~abc", "pod.ns_1"},
		{"a~b~c", ""},
		{"~abc", ""},
		{"abc", ""},
		{strings.Repeat("n", 129) + "~abc", ""},
		{strings.Repeat("n", 128) + "~abc", strings.Repeat("n", 128)},
		{"no spaces~abc", ""},
		{"nœud~abc", ""},
		{"a.b>c~abc", ""},
	}
	for _, tc := range tests {
		if got := OwnerOf(tc.id); got != tc.want {
			t.Errorf("OwnerOf(%.40q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

// TestOverlongNames: a channel over bayeux.MaxChannelLength is refused on
// subscribe and publish with 405::channel_invalid, and a clientId with an
// over-long owner prefix is an unknown session; the longest valid channel
// still carries messages, between nodes too.
func TestOverlongNames(t *testing.T) {
	a, b := twoNodes(t)
	id := a.connected(t)
	long := "/l/" + strings.Repeat("x", bayeux.MaxChannelLength)
	for _, body := range []string{
		fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":%q}]`, id, long),
		fmt.Sprintf(`[{"channel":%q,"clientId":%q,"data":1}]`, long, id),
	} {
		out := a.must(t, body)
		if len(out) != 1 || out[0]["successful"] != false || out[0]["error"] != bayeux.ErrChannelInvalid {
			t.Errorf("reply to %.80s…: %v", body, out)
		}
	}
	forged := strings.Repeat("n", 5000) + "~abcdefghijklmnop"
	if out := b.connect(t, forged); len(out) != 1 || out[0]["error"] != "402::session_unknown" {
		t.Errorf("connect with a forged clientId: %v", out)
	}

	longest := "/l/" + strings.Repeat("é", (bayeux.MaxChannelLength-3)/2)
	sub := b.connected(t)
	b.subscribe(t, sub, longest)
	held := b.connectAsync(sub)
	if r := a.publish(t, id, longest, `"far"`); r["successful"] != true {
		t.Fatalf("publish on the longest channel: %v", r)
	}
	got := events(recv(t, held))
	if len(got) != 1 || got[0]["channel"] != longest || got[0]["data"] != "far" {
		t.Errorf("subscriber on the other node got %v", got)
	}
}
