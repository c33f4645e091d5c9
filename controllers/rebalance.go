package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// brokerLoad is one ready broker's client sessions.
type brokerLoad struct {
	Pod, Node string
	Sessions  int64
}

// shedOrder asks one broker (Pod) to shed as Request says.
type shedOrder struct {
	Pod     string
	Request ShedRequest
}

// planRebalance evens client sessions out over the brokers. When the busiest
// holds more than tolerancePercent above the mean, every broker above that
// line is asked to keep the mean (rounded up) and give its surplus to the
// brokers below the mean, the emptiest first; each is asked for no more than
// it lacks. Brokers within the tolerance are left alone. The plan is a pure
// function of the loads, so asking again with the same loads asks the same.
func planRebalance(loads []brokerLoad, tolerancePercent, rate int32) ([]shedOrder, string) {
	n := int64(len(loads))
	if n < 2 {
		return nil, ""
	}
	var total int64
	for _, l := range loads {
		total += l.Sessions
	}
	if total == 0 {
		return nil, ""
	}
	keep := ceilDiv(total, n)
	line := float64(total) / float64(n) * (1 + float64(tolerancePercent)/100)
	type room struct {
		node string
		n    int64
	}
	var sources []brokerLoad
	var sinks []room
	for _, l := range loads {
		switch {
		case float64(l.Sessions) > line && l.Sessions > keep:
			sources = append(sources, l)
		case l.Sessions < keep:
			sinks = append(sinks, room{l.Node, keep - l.Sessions})
		}
	}
	if len(sources) == 0 || len(sinks) == 0 {
		return nil, ""
	}
	slices.SortFunc(sources, func(a, b brokerLoad) int {
		return cmp.Or(cmp.Compare(b.Sessions, a.Sessions), cmp.Compare(a.Pod, b.Pod))
	})
	slices.SortFunc(sinks, func(a, b room) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.node, b.node)) })
	var orders []shedOrder
	var moved int64
	var desc []string
	for _, src := range sources {
		surplus := src.Sessions - keep
		req := ShedRequest{Keep: keep, To: map[string]int64{}, Rate: rate}
		for i := range sinks {
			if surplus == 0 {
				break
			}
			k := min(surplus, sinks[i].n)
			if k == 0 {
				continue
			}
			req.To[sinks[i].node] += k
			sinks[i].n -= k
			surplus -= k
			moved += k
		}
		if len(req.To) > 0 {
			orders = append(orders, shedOrder{Pod: src.Pod, Request: req})
			desc = append(desc, fmt.Sprintf("%s %d→%d", src.Pod, src.Sessions, keep))
		}
	}
	return orders, fmt.Sprintf("moving %d of %d sessions to even %d brokers out (%s)", moved, total, n, strings.Join(desc, ", "))
}
