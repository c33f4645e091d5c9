package controllers

import (
	"fmt"
	"maps"
	"testing"
)

func loads(sessions ...int64) []brokerLoad {
	out := make([]brokerLoad, len(sessions))
	for i, s := range sessions {
		out[i] = brokerLoad{Pod: fmt.Sprintf("pod-%d", i), Node: fmt.Sprintf("node-%d", i), Sessions: s}
	}
	return out
}

func TestPlanRebalance(t *testing.T) {
	for _, tc := range []struct {
		name  string
		loads []brokerLoad
		want  map[string]ShedRequest
	}{
		{name: "one broker", loads: loads(500)},
		{name: "no sessions", loads: loads(0, 0, 0)},
		{name: "even", loads: loads(100, 100, 100)},
		{name: "within the tolerance", loads: loads(115, 95, 90)},
		{name: "after a scale-up: two new empty brokers", loads: loads(300, 300, 0, 0),
			want: map[string]ShedRequest{
				"pod-0": {Keep: 150, To: map[string]int64{"node-2": 150}, Rate: 50},
				"pod-1": {Keep: 150, To: map[string]int64{"node-3": 150}, Rate: 50},
			}},
		{name: "one hot broker feeds the emptiest first", loads: loads(400, 90, 10),
			want: map[string]ShedRequest{"pod-0": {Keep: 167, To: map[string]int64{"node-2": 157, "node-1": 76}, Rate: 50}}},
		{name: "the mean rounds up", loads: loads(3, 0),
			want: map[string]ShedRequest{"pod-0": {Keep: 2, To: map[string]int64{"node-1": 1}, Rate: 50}}},
		{name: "a broker above the mean but within the tolerance keeps its sessions", loads: loads(130, 110, 60),
			want: map[string]ShedRequest{"pod-0": {Keep: 100, To: map[string]int64{"node-2": 30}, Rate: 50}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orders, what := planRebalance(tc.loads, 20, 50)
			got := map[string]ShedRequest{}
			for _, o := range orders {
				got[o.Pod] = o.Request
			}
			if len(got) != len(tc.want) {
				t.Fatalf("orders %+v, want %+v", got, tc.want)
			}
			for pod, w := range tc.want {
				g := got[pod]
				if g.Keep != w.Keep || g.Rate != w.Rate || !maps.Equal(g.To, w.To) {
					t.Fatalf("%s: %+v, want %+v (%s)", pod, g, w, what)
				}
			}
		})
	}
}

// Carried out, a plan leaves every broker within the tolerance, and no
// broker is asked to take more than it lacks.
func TestPlanRebalanceEvensOut(t *testing.T) {
	for _, l := range [][]int64{{1000, 0, 0, 0, 0}, {700, 650, 20, 5}, {90, 91, 500, 2, 2, 2, 2}, {1, 0, 0}} {
		ls := loads(l...)
		orders, _ := planRebalance(ls, 20, 100)
		byNode := map[string]int{}
		for i, b := range ls {
			byNode[b.Node] = i
		}
		after := append([]int64(nil), l...)
		for _, o := range orders {
			for node, n := range o.Request.To {
				after[byNode[node]] += n
				src := byNode["node-"+o.Pod[len("pod-"):]]
				after[src] -= n
			}
		}
		var total int64
		for _, s := range after {
			total += s
		}
		mean := float64(total) / float64(len(after))
		for i, s := range after {
			if float64(s) > mean*1.2+1 {
				t.Fatalf("loads %v → %v: broker %d still over the tolerance", l, after, i)
			}
		}
		if again, _ := planRebalance(loads(after...), 20, 100); len(again) != 0 {
			t.Fatalf("loads %v → %v: a second plan still moves sessions: %+v", l, after, again)
		}
	}
}
