package backbone

import (
	"errors"
	"strings"
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

func TestInterested(t *testing.T) {
	cases := []struct {
		channel string
		want    []string // the patterns that match it
	}{
		{"/a", []string{"/a", "/*", "/**"}},
		{"/a/b", []string{"/a/b", "/a/*", "/a/**", "/**"}},
		{"/a/b/c", []string{"/a/b/c", "/a/b/*", "/a/b/**", "/a/**", "/**"}},
	}
	others := []string{"/b", "/a/b/c/d", "/a/c/*", "/b/**", "/a/b/c/*", "/a/b/c/**"}
	for _, c := range cases {
		for _, p := range append(c.want, others...) {
			want := false
			for _, w := range c.want {
				want = want || w == p
			}
			if got := interested(map[string]int{p: 1, "/x/y": 1}, c.channel); got != want {
				t.Errorf("interested(%q in %q) = %v, want %v", c.channel, p, got, want)
			}
		}
	}
}

// TestValidate: the backbone takes the Bayeux grammar (bayeux_test covers it
// case by case) and refuses a wildcard pattern as a publish channel.
func TestValidate(t *testing.T) {
	cases := []struct {
		name           string
		pattern, publi error
	}{
		{"/a/b c/d.e", nil, nil},
		{"/a/*", nil, bayeux.ErrChannelNotPlain},
		{"/**", nil, bayeux.ErrChannelNotPlain},
		{"/a//b", bayeux.ErrChannelSyntax, bayeux.ErrChannelSyntax},
		{"/*/b", bayeux.ErrChannelWildcard, bayeux.ErrChannelWildcard},
		{"/" + strings.Repeat("x", bayeux.MaxChannelLength), bayeux.ErrChannelLong, bayeux.ErrChannelLong},
	}
	for _, c := range cases {
		if err := validatePattern(c.name); !errors.Is(err, c.pattern) || (err == nil) != (c.pattern == nil) {
			t.Errorf("validatePattern(%q) = %v, want %v", c.name, err, c.pattern)
		}
		if err := validateChannel(c.name); !errors.Is(err, c.publi) || (err == nil) != (c.publi == nil) {
			t.Errorf("validateChannel(%q) = %v, want %v", c.name, err, c.publi)
		}
	}
}
