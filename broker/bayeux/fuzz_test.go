package bayeux

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeBatch feeds the decoder arbitrary input, whole and in two halves (the
// shape of a body read in two chunks): it must never panic, must agree with
// encoding/json on validity for accepted input, and must re-encode what it
// accepted into valid JSON that decodes to the same messages.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket","long-polling"],"id":"1"}]`,
		`{"channel":"/meta/connect","clientId":"abc","connectionType":"long-polling","advice":{"timeout":0}}`,
		`[{"channel":"/meta/subscribe","subscription":["/a/*","/b/**"],"clientId":"x"},{"channel":"/a/b","data":{"t":"\u00e9\ud83d\ude00"}}]`,
		`{"channel":"/x","ext":{"ack":true,"timesync":{"tc":1,"l":0,"o":0}},"id":7}`,
		`[{"channel":"/a","data":[1,-2.5e-3,true,false,null,"s\n"]}]`,
		`[`, `{"channel":`, `[{"channel":"/a"},]`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		half := len(b) / 2
		for _, in := range [][]byte{b, b[:half], b[half:]} {
			msgs, err := DecodeBatch(in)
			if err != nil {
				continue
			}
			if !json.Valid(in) {
				t.Fatalf("accepted invalid JSON %q", in)
			}
			for _, m := range msgs {
				enc := m.AppendJSON(nil)
				if !json.Valid(enc) {
					t.Fatalf("re-encoded invalid JSON %q from %q", enc, in)
				}
				again, err := Decode(enc)
				if err != nil {
					t.Fatalf("re-decode %q: %v", enc, err)
				}
				if string(again.AppendJSON(nil)) != string(enc) {
					t.Fatalf("encoding not stable: %q vs %q", again.AppendJSON(nil), enc)
				}
			}
		}
	})
}

// FuzzMatch checks the trie against the reference matcher for arbitrary patterns
// and channels built from the fuzzer's strings.
func FuzzMatch(f *testing.F) {
	f.Add("/a/*", "/a/b")
	f.Add("/a/**", "/a/b/c")
	f.Add("/**", "/x")
	f.Add("/a/b", "/a/b")
	f.Add("/a/*", "/a/b/c")
	f.Add("/chat/*", "/chat")
	f.Fuzz(func(t *testing.T, pattern, channel string) {
		pid, perr := ParseChannel(pattern)
		cid, cerr := ParseChannel(channel)
		if perr != nil || cerr != nil || cid.IsWildcard() {
			return
		}
		want := Match(pattern, channel)
		tr := NewTrie[int](0)
		tr.Insert(pattern, 1)
		got := len(tr.Match(channel)) == 1
		if got != want {
			t.Fatalf("trie says %v, Match says %v for %q ~ %q", got, want, pattern, channel)
		}
		// Cross-check with Wildcards: a wildcard pattern matches iff it is listed.
		if pid.IsWildcard() {
			listed := false
			for _, w := range Wildcards(channel) {
				if w == pattern {
					listed = true
				}
			}
			if listed != want {
				t.Fatalf("Wildcards(%q) listed=%v, Match=%v for %q", channel, listed, want, pattern)
			}
		} else if want != (pattern == channel) {
			t.Fatalf("plain pattern mismatch")
		}
	})
}
