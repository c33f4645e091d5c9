package server

import (
	"context"
	"errors"
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
)

// TestShedMovesSurplusToTargets: a node asked to keep 10 of its 40 sessions
// gives 20 to one node and 10 to another, as the plan caps them, and stops;
// every moved session goes on with its clientId and gets what is published
// after the move.
func TestShedMovesSurplusToTargets(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := cluster(t, hub, "node-a", "node-b", "node-c", "node-d")
	a, b, c, d := nodes[0], nodes[1], nodes[2], nodes[3]
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = a.connected(t)
		a.subscribe(t, ids[i], "/shed")
	}
	if err := a.Shed(ShedPlan{Keep: 10, To: map[string]int{"node-b": 20, "node-c": 10, "node-a": 5}, Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the shed to end", func() bool { return !a.ShedStatus().Active })
	if got := [4]int64{a.Stats().ClientSessions, b.Stats().ClientSessions, c.Stats().ClientSessions, d.Stats().ClientSessions}; got != [4]int64{10, 20, 10, 0} {
		t.Fatalf("sessions per node after the shed: %v, want [10 20 10 0]", got)
	}
	if st := a.ShedStatus(); st.Moved != 30 || st.Failed != 0 {
		t.Fatalf("shed status %+v, want 30 moved", st)
	}
	if err := d.Publish("/shed", "after"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		// Through any node, as a Service sends requests.
		out := d.connect(t, id)
		if ev := events(out); len(ev) != 1 || ev[0]["data"] != "after" {
			t.Fatalf("session %s after the shed: %v", id, out)
		}
	}
}

// TestShedStopsAtKeepAndIsReplaced: a plan whose targets have more room than
// the surplus stops at Keep; asking again with the same plan moves nothing
// more; a later plan with a lower Keep moves more.
func TestShedStopsAtKeepAndIsReplaced(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := cluster(t, hub, "node-a", "node-b")
	a, b := nodes[0], nodes[1]
	for range 12 {
		a.connected(t)
	}
	plan := ShedPlan{Keep: 8, To: map[string]int{"node-b": 100}, Rate: 1000}
	for range 2 {
		if err := a.Shed(plan); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the shed to end", func() bool { return !a.ShedStatus().Active })
		if got := a.Stats().ClientSessions; got != 8 {
			t.Fatalf("%d sessions left, want 8", got)
		}
	}
	plan.Keep = 5
	if err := a.Shed(plan); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second shed to end", func() bool { return !a.ShedStatus().Active })
	if a.Stats().ClientSessions != 5 || b.Stats().ClientSessions != 7 {
		t.Fatalf("sessions a=%d b=%d, want 5 and 7", a.Stats().ClientSessions, b.Stats().ClientSessions)
	}
}

// TestShedGivesUpOnARefusingTarget: a draining target refuses adoptions; the
// shed stops sending it sessions after a few refusals, loses none, and moves
// the rest to the target that takes them.
func TestShedGivesUpOnARefusingTarget(t *testing.T) {
	hub := backbone.NewMemoryHub()
	nodes := cluster(t, hub, "node-a", "node-b", "node-c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	for range 20 {
		a.connected(t)
	}
	b.Drain()
	if err := a.Shed(ShedPlan{Keep: 0, To: map[string]int{"node-b": 10, "node-c": 5}, Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the shed to end", func() bool { return !a.ShedStatus().Active })
	st := a.ShedStatus()
	// Moves run shedConcurrency at a time: a few more may fail before the
	// shed gives up, never more than the target's room.
	if st.Moved != 5 || st.Failed < maxShedTargetFailures || st.Failed > 10 {
		t.Fatalf("shed status %+v, want 5 moved and %d to 10 failed", st, maxShedTargetFailures)
	}
	if a.Stats().ClientSessions != 15 || c.Stats().ClientSessions != 5 || b.Stats().ClientSessions != 0 {
		t.Fatalf("sessions a=%d b=%d c=%d, want 15, 0 and 5", a.Stats().ClientSessions, b.Stats().ClientSessions, c.Stats().ClientSessions)
	}
}

// TestShedRefusals: bad plans, a node without handover and a draining node
// are refused with errors that say so.
func TestShedRefusals(t *testing.T) {
	hub := backbone.NewMemoryHub()
	a := cluster(t, hub, "node-a")[0]
	for _, p := range []ShedPlan{{Keep: -1}, {Rate: -2}, {To: map[string]int{"bad node": 1}}} {
		if err := a.Shed(p); !errors.Is(err, ErrShedPlan) {
			t.Errorf("Shed(%+v) = %v, want ErrShedPlan", p, err)
		}
	}
	alone := newTestServer(t, Config{})
	if err := alone.Shed(ShedPlan{To: map[string]int{"node-b": 1}}); !errors.Is(err, ErrNoHandover) {
		t.Errorf("Shed without a backbone = %v, want ErrNoHandover", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	_ = a.Shutdown(ctx)
	if err := a.Shed(ShedPlan{To: map[string]int{"node-b": 1}}); !errors.Is(err, ErrDraining) {
		t.Errorf("Shed while draining = %v, want ErrDraining", err)
	}
}
