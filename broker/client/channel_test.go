package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/client"
)

// TestChannelNamesCheckedBeforeSending: Subscribe and Publish refuse a name
// outside the Bayeux grammar (and Publish a wildcard pattern) on their own, so
// a client that has not even handshaken reports the name, not the session.
func TestChannelNamesCheckedBeforeSending(t *testing.T) {
	c, err := client.NewClient(client.Config{URL: "http://127.0.0.1:1/cometd"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		sub, pub error // nil: the name passes, and the request fails on the session
	}{
		{"/a/b", nil, nil},
		{"/a/**", nil, bayeux.ErrChannelNotPlain},
		{"/a/", bayeux.ErrChannelSyntax, bayeux.ErrChannelSyntax},
		{"/a/b*", bayeux.ErrChannelWildcard, bayeux.ErrChannelWildcard},
		{"/a\n", bayeux.ErrChannelChar, bayeux.ErrChannelChar},
	} {
		wantSub, wantPub := tc.sub, tc.pub
		if wantSub == nil {
			wantSub = client.ErrNotHandshaken
		}
		if wantPub == nil {
			wantPub = client.ErrNotHandshaken
		}
		if _, err := c.Subscribe(ctx, tc.name, func(*client.Message) {}); !errors.Is(err, wantSub) {
			t.Errorf("Subscribe(%q) = %v, want %v", tc.name, err, wantSub)
		}
		if err := c.Publish(ctx, tc.name, "x"); !errors.Is(err, wantPub) {
			t.Errorf("Publish(%q) = %v, want %v", tc.name, err, wantPub)
		}
	}
}
