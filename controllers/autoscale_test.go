package controllers

import (
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// in is a cluster of current brokers, all answering, between 1 and 10, at
// 100 sessions per broker, watched for an hour, last scaled an hour ago.
func in(current int32, sessions int64) scaleInput {
	return scaleInput{
		Now: t0, Current: current, Min: 1, Max: 10, Target: 100,
		Sessions: sessions, Reported: current, Ready: current,
		Up: defaultScaleUp, Down: defaultScaleDown,
		History: scaleHistory{since: t0.Add(-time.Hour), lastScale: t0.Add(-time.Hour)},
	}
}

func TestDecideScale(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            scaleInput
		want, wantRec int32
		reason        string
	}{
		{name: "on target", in: in(3, 300), want: 3, wantRec: 3},
		{name: "within the tolerance above", in: in(3, 329), want: 3, wantRec: 3},
		{name: "within the tolerance below", in: in(3, 271), want: 3, wantRec: 3},
		{name: "up at once", in: in(2, 450), want: 5, wantRec: 5, reason: "scale up to 5"},
		{name: "up by at most 4 pods or 100%", in: in(2, 5000), want: 6, wantRec: 10},
		{name: "up by 100% beyond 4 pods", in: func() scaleInput { i := in(6, 1500); i.Max = 20; return i }(), want: 12, wantRec: 15},
		{name: "up never past max", in: in(8, 5000), want: 10, wantRec: 10},
		{name: "down by one pod (10% of 3 is less)", in: in(3, 100), want: 2, wantRec: 1, reason: "scale down to 2"},
		{name: "never below min", in: func() scaleInput { i := in(3, 0); i.Min = 2; return i }(), want: 2, wantRec: 2},
		{name: "a bound moved: back within it", in: func() scaleInput { i := in(3, 300); i.Max = 2; return i }(), want: 2, wantRec: 2},
		{name: "up waits the period after a change", in: func() scaleInput { i := in(2, 450); i.History.lastScale = t0.Add(-5 * time.Second); return i }(),
			want: 2, wantRec: 5, reason: "waiting 10s"},
		{name: "down waits its period", in: func() scaleInput { i := in(3, 100); i.History.lastScale = t0.Add(-30 * time.Second); return i }(),
			want: 3, wantRec: 1, reason: "waiting 30s"},
		{name: "silent brokers count as empty to grow", in: func() scaleInput { i := in(4, 450); i.Reported = 2; return i }(), want: 5, wantRec: 5},
		{name: "silent brokers count as full to shrink", in: func() scaleInput { i := in(4, 100); i.Reported = 2; return i }(), want: 3, wantRec: 3},
		{name: "no answer: no change", in: func() scaleInput { i := in(4, 0); i.Reported = 0; return i }(), want: 4, wantRec: 4, reason: "no broker reported"},
		{name: "just started: no scale-down before a full window", in: func() scaleInput { i := in(3, 100); i.History = scaleHistory{}; return i }(),
			want: 3, wantRec: 1, reason: "holding 3 within the scale-down window"},
		{name: "just started: scale-up at once", in: func() scaleInput { i := in(2, 450); i.History = scaleHistory{}; return i }(), want: 5, wantRec: 5},
		{name: "down to the highest recommendation of the window", in: func() scaleInput {
			i := in(5, 100)
			i.History.recs = []recommendation{{t0.Add(-400 * time.Second), 5}, {t0.Add(-200 * time.Second), 4}, {t0.Add(-100 * time.Second), 2}}
			return i
		}(), want: 4, wantRec: 1},
		{name: "up to the lowest recommendation of a window", in: func() scaleInput {
			i := in(2, 900)
			i.Up.window = time.Minute
			i.History.recs = []recommendation{{t0.Add(-30 * time.Second), 3}}
			return i
		}(), want: 3, wantRec: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decideScale(tc.in)
			if d.Desired != tc.want || d.Recommended != tc.wantRec {
				t.Fatalf("desired %d (recommended %d), want %d (%d): %s", d.Desired, d.Recommended, tc.want, tc.wantRec, d.Reason)
			}
			if tc.reason != "" && !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q does not say %q", d.Reason, tc.reason)
			}
		})
	}
}

// A steady load that wobbles within the tolerance, and a load whose
// recommendation flips between two counts, do not make the count oscillate:
// decisions fed back in, one every 15 s for an hour, change it at most once.
func TestDecideScaleDoesNotFlap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   int32
		load    func(step int) int64
		changes int
	}{
		{"steady within the tolerance", 3, func(i int) int64 { return 300 + int64(i%3)*9 - 9 }, 0},
		{"flipping across a boundary", 3, func(i int) int64 { return []int64{250, 360}[i%2] }, 1},
		{"a short dip", 4, func(i int) int64 {
			if i%40 == 20 {
				return 50
			}
			return 400
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur, last := tc.start, t0.Add(-time.Hour)
			hist := scaleHistory{since: t0.Add(-time.Hour)}
			changes := 0
			for step := range 240 {
				i := in(cur, tc.load(step))
				i.Now, i.History = t0.Add(time.Duration(step)*15*time.Second), hist
				i.History.lastScale = last
				d := decideScale(i)
				hist = d.History
				if d.Desired != cur {
					changes++
					cur, last = d.Desired, i.Now
				}
			}
			if changes > tc.changes {
				t.Fatalf("%d changes of the count in an hour, want at most %d", changes, tc.changes)
			}
		})
	}
}

// The history keeps only what the longest window needs.
func TestDecideScaleForgetsOldRecommendations(t *testing.T) {
	i := in(3, 300)
	for k := range 100 {
		i.History.recs = append(i.History.recs, recommendation{t0.Add(-time.Duration(k) * time.Minute), 3})
	}
	d := decideScale(i)
	if n := len(d.History.recs); n != 7 { // 0..5 minutes old, and now
		t.Fatalf("%d recommendations kept, want 7", n)
	}
}

func TestBehaviorDefaultsAndOverrides(t *testing.T) {
	up, down := behaviorOf(&v1.AutoscalingSpec{})
	if up != defaultScaleUp || down != defaultScaleDown {
		t.Fatalf("defaults: %+v %+v", up, down)
	}
	up, down = behaviorOf(&v1.AutoscalingSpec{Behavior: &v1.AutoscalingBehavior{
		ScaleDown: &v1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](10), Pods: ptr.To[int32](3)},
	}})
	if up != defaultScaleUp || down.window != 10*time.Second || down.pods != 3 || down.period != defaultScaleDown.period {
		t.Fatalf("overrides: %+v %+v", up, down)
	}
	if s := (scalingRules{pods: 1, percent: 10}).step(35); s != 4 {
		t.Fatalf("step of 35 at 10%% = %d, want 4", s)
	}
}
