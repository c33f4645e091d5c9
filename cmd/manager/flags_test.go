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

func TestCheckWorkers(t *testing.T) {
	for _, tt := range []struct {
		name                                         string
		clusterWorkers, policyWorkers, probes, burst int
		qps                                          float64
		ok                                           bool
	}{
		{"defaults", defaultClusterWorkers, defaultPolicyWorkers, 64, defaultBurst, defaultQPS, true},
		{"no limit", 1, 1, 1, 0, -1, true},
		{"no cluster worker", 0, 1, 1, 10, 5, false},
		{"no policy worker", 1, 0, 1, 10, 5, false},
		{"no probe", 1, 1, 0, 10, 5, false},
		{"zero qps", 1, 1, 1, 10, 0, false},
		{"no burst", 1, 1, 1, 0, 5, false},
	} {
		err := checkWorkers(tt.clusterWorkers, tt.policyWorkers, tt.probes, tt.burst, tt.qps)
		if (err == nil) != tt.ok {
			t.Errorf("%s: checkWorkers = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
