package main

import (
	"reflect"
	"testing"
)

func TestSplitNamespaces(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"team-a", []string{"team-a"}},
		{" team-a , ,team-b,", []string{"team-a", "team-b"}},
	} {
		if got := splitNamespaces(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitNamespaces(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
