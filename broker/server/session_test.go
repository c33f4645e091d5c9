package server

import (
	"slices"
	"testing"
)

// TestChanSet checks the set of a session's channels through its change from
// one member held inline to a map, and back to fewer members.
func TestChanSet(t *testing.T) {
	a, b, c := &ServerChannel{}, &ServerChannel{}, &ServerChannel{}
	type step struct {
		add, remove *ServerChannel
		want        []*ServerChannel
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"empty", nil},
		{"one", []step{{add: a, want: []*ServerChannel{a}}}},
		{"one twice", []step{{add: a}, {add: a, want: []*ServerChannel{a}}}},
		{"one removed", []step{{add: a}, {remove: a}}},
		{"other removed", []step{{add: a}, {remove: b, want: []*ServerChannel{a}}}},
		{"two", []step{{add: a}, {add: b, want: []*ServerChannel{a, b}}}},
		{"three less one", []step{{add: a}, {add: b}, {add: c}, {remove: b, want: []*ServerChannel{a, c}}}},
		{"two less both, then one", []step{{add: a}, {add: b}, {remove: a}, {remove: b}, {add: c, want: []*ServerChannel{c}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s chanSet
			var want []*ServerChannel
			for _, st := range tt.steps {
				if st.add != nil {
					s.add(st.add)
				}
				if st.remove != nil {
					s.remove(st.remove)
				}
				want = st.want
			}
			got := slices.Collect(s.all())
			if len(got) != len(want) || s.len() != len(want) {
				t.Fatalf("members %d, len %d, want %d", len(got), s.len(), len(want))
			}
			for _, m := range want {
				if !slices.Contains(got, m) || !s.has(m) {
					t.Fatalf("member missing")
				}
			}
			for _, m := range []*ServerChannel{a, b, c, nil} {
				if s.has(m) != slices.Contains(want, m) {
					t.Fatalf("has reports a channel that is not a member")
				}
			}
		})
	}
}
