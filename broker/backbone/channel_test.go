package backbone

import (
	"slices"
	"testing"
)

func TestMatchingPatterns(t *testing.T) {
	cases := []struct {
		channel string
		want    []string
	}{
		{"/a", []string{"/a", "/*", "/**"}},
		{"/a/b", []string{"/a/b", "/a/*", "/a/**", "/**"}},
		{"/a/b/c", []string{"/a/b/c", "/a/b/*", "/a/b/**", "/a/**", "/**"}},
	}
	for _, c := range cases {
		var got []string
		matchingPatterns(c.channel, func(p string) bool { got = append(got, p); return false })
		if !slices.Equal(got, c.want) {
			t.Errorf("matchingPatterns(%q) = %q, want %q", c.channel, got, c.want)
		}
		var first []string
		matchingPatterns(c.channel, func(p string) bool { first = append(first, p); return true })
		if len(first) != 1 {
			t.Errorf("matchingPatterns(%q) did not stop when told: %q", c.channel, first)
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name           string
		pattern, publi bool
	}{
		{"/a", true, true},
		{"/a/b c/d.e", true, true},
		{"/a/*", true, false},
		{"/a/**", true, false},
		{"/*", true, false},
		{"/**", true, false},
		{"/a/b*", true, true},
		{"/a/***", true, true},
		{"", false, false},
		{"a/b", false, false},
		{"/", false, false},
		{"/a/", false, false},
		{"/a//b", false, false},
		{"/*/b", false, false},
		{"/**/b", false, false},
	}
	for _, c := range cases {
		if err := validatePattern(c.name); (err == nil) != c.pattern {
			t.Errorf("validatePattern(%q) = %v, want ok=%v", c.name, err, c.pattern)
		}
		if err := validateChannel(c.name); (err == nil) != c.publi {
			t.Errorf("validateChannel(%q) = %v, want ok=%v", c.name, err, c.publi)
		}
	}
}
