package bayeux

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseChannel(t *testing.T) {
	tests := []struct {
		in   string
		err  error
		wild int
		segs int
	}{
		{"/a", nil, NotWild, 1},
		{"/a/b c/d.e", nil, NotWild, 3},
		{"/a/*", nil, Wild, 2},
		{"/a/**", nil, DeepWild, 2},
		{"/**", nil, DeepWild, 1},
		{"", ErrChannelEmpty, 0, 0},
		{"a", ErrChannelSyntax, 0, 0},
		{"/", ErrChannelSyntax, 0, 0},
		{"/a/", ErrChannelSyntax, 0, 0},
		{"/a//b", ErrChannelSyntax, 0, 0},
		{"/a/*/b", ErrChannelWildcard, 0, 0},
		{"/a/b*", ErrChannelWildcard, 0, 0},
		{"/a/***", ErrChannelWildcard, 0, 0},
		{"/a\x00", ErrChannelChar, 0, 0},
		{"/" + strings.Repeat("x", MaxChannelLength-1), nil, NotWild, 1},
		{"/" + strings.Repeat("x", MaxChannelLength), ErrChannelLong, 0, 0},
		{"/a/" + strings.Repeat("é", MaxChannelLength/2), ErrChannelLong, 0, 0},
	}
	for _, tc := range tests {
		id, err := ParseChannel(tc.in)
		if !errors.Is(err, tc.err) {
			t.Errorf("ParseChannel(%q) err = %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (int(id.wild) != tc.wild || id.Depth() != tc.segs || id.String() != tc.in) {
			t.Errorf("ParseChannel(%q) = %+v", tc.in, id)
		}
	}
	if !MustParseChannel("/meta/connect").IsMeta() || !MustParseChannel("/service/x").IsService() ||
		!MustParseChannel("/chat").IsBroadcast() || MustParseChannel("/metax").IsMeta() {
		t.Fatal("meta/service classification wrong")
	}
}

func TestParsePlainChannel(t *testing.T) {
	for _, tc := range []struct {
		in  string
		err error
	}{
		{"/a/b", nil},
		{"/a/*", ErrChannelNotPlain},
		{"/**", ErrChannelNotPlain},
		{"/a//b", ErrChannelSyntax},
		{"/a/b*", ErrChannelWildcard},
	} {
		id, err := ParsePlainChannel(tc.in)
		if !errors.Is(err, tc.err) || (err == nil && id.String() != tc.in) {
			t.Errorf("ParsePlainChannel(%q) = %v, %v; want error %v", tc.in, id, err, tc.err)
		}
	}
}

// wildcardsRef is the plain definition of the patterns MatchingWildcards walks.
func wildcardsRef(channel string) []string {
	segs := strings.Split(channel[1:], "/")
	out := []string{"/" + strings.Join(append(segs[:len(segs)-1:len(segs)-1], "*"), "/")}
	for k := len(segs) - 1; k >= 0; k-- {
		out = append(out, "/"+strings.Join(append(segs[:k:k], "**"), "/"))
	}
	return out
}

func TestMatchingWildcards(t *testing.T) {
	long := "/" + strings.Repeat("x", wildcardBuf) + "/y/" + strings.Repeat("z", 40)
	for _, ch := range []string{"/a", "/a/b", "/a/b/c", "/chat/room/42/x", long, long + "/w"} {
		var got []string
		it := MatchingWildcards(ch)
		for p, ok := it.Next(); ok; p, ok = it.Next() {
			got = append(got, string(p))
		}
		if want := wildcardsRef(ch); !reflect.DeepEqual(got, want) {
			t.Errorf("MatchingWildcards(%q) = %q, want %q", ch, got, want)
		}
		if w := Wildcards(ch); !reflect.DeepEqual(w, got) {
			t.Errorf("Wildcards(%q) = %q, want %q", ch, w, got)
		}
		for _, p := range got {
			if !Match(p, ch) {
				t.Errorf("%q does not match %q", p, ch)
			}
		}
	}
	subs := map[string]int{"/chat/**": 1}
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		it := MatchingWildcards("/chat/room/42/x")
		for p, ok := it.Next(); ok; p, ok = it.Next() {
			n += subs[string(p)]
		}
	})
	if allocs != 0 || n == 0 {
		t.Fatalf("walking the wildcards of a short channel: %v allocations, %d hits", allocs, n)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, channel string
		want             bool
	}{
		{"/a", "/a", true},
		{"/a", "/ab", false},
		{"/a/*", "/a/b", true},
		{"/a/*", "/a/b/c", false},
		{"/a/*", "/a", false},
		{"/a/*", "/ab/c", false},
		{"/a/**", "/a/b", true},
		{"/a/**", "/a/b/c", true},
		{"/a/**", "/a", false},
		{"/**", "/x/y", true},
		{"/*", "/x", true},
		{"/*", "/x/y", false},
	}
	for _, tc := range tests {
		if got := Match(tc.pattern, tc.channel); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.pattern, tc.channel, got)
		}
	}
	if got := Wildcards("/a/b/c"); !reflect.DeepEqual(got, []string{"/a/b/*", "/a/b/**", "/a/**", "/**"}) {
		t.Fatalf("Wildcards = %v", got)
	}
}

func TestTrie(t *testing.T) {
	tr := NewTrie[string](2)
	patterns := []string{"/a", "/a/b", "/a/*", "/a/**", "/**", "/*", "/a/b/*", "/c/**"}
	for _, p := range patterns {
		tr.Insert(p, p)
	}
	channels := []string{"/a", "/a/b", "/a/b/c", "/c", "/c/d/e", "/z"}
	check := func() {
		t.Helper()
		for _, ch := range channels {
			for range 2 { // second time from the cache
				var want []string
				for _, p := range patterns {
					if Match(p, ch) {
						want = append(want, p)
					}
				}
				got := slices.Clone(tr.Match(ch))
				slices.Sort(got)
				slices.Sort(want)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("Match(%q) = %v, want %v", ch, got, want)
				}
			}
		}
	}
	check()
	if !tr.Remove("/a/*", "/a/*") || tr.Remove("/a/*", "/a/*") || tr.Remove("/nope/x", "x") {
		t.Fatal("Remove results wrong")
	}
	patterns = slices.DeleteFunc(patterns, func(p string) bool { return p == "/a/*" })
	check()
	for _, p := range patterns {
		tr.Remove(p, p)
	}
	patterns = nil
	check()
	if tr.Len() != 0 || len(tr.root.children) != 0 {
		t.Fatalf("trie not pruned: len=%d children=%d", tr.Len(), len(tr.root.children))
	}
}
