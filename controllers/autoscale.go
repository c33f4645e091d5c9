package controllers

import (
	"fmt"
	"time"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// The sessions autoscaler decides a broker count from the client sessions the
// ready brokers report, the way a HorizontalPodAutoscaler decides from a
// metric: a recommendation (sessions over the target per pod, unless within
// scaleTolerance of the current count), stabilized over a window (up: the
// lowest recommendation within it; down: the highest), then bounded by a
// step per period. decideScale is that decision as a pure function; the
// reconciler keeps the recommendations between calls (scaleHistory).

// scaleTolerance is how far sessions per pod may be from the target before
// the count changes (the HPA's default tolerance).
const scaleTolerance = 0.1

// scalingRules are one direction's AutoscalingBehavior rules with their
// defaults applied.
type scalingRules struct {
	window, period time.Duration
	pods, percent  int32
}

// The defaults of spec.autoscaling.behavior: up fast, down slowly.
var (
	defaultScaleUp   = scalingRules{window: 0, period: 15 * time.Second, pods: 4, percent: 100}
	defaultScaleDown = scalingRules{window: 300 * time.Second, period: 60 * time.Second, pods: 1, percent: 10}
)

// rulesFor applies the rules a user set over the defaults d.
func rulesFor(r *v1.ScalingRules, d scalingRules) scalingRules {
	if r == nil {
		return d
	}
	if r.StabilizationWindowSeconds != nil {
		d.window = time.Duration(*r.StabilizationWindowSeconds) * time.Second
	}
	if r.PeriodSeconds != nil {
		d.period = time.Duration(*r.PeriodSeconds) * time.Second
	}
	if r.Pods != nil {
		d.pods = *r.Pods
	}
	if r.Percent != nil {
		d.percent = *r.Percent
	}
	return d
}

// behaviorOf is the cluster's scaling rules, defaults applied.
func behaviorOf(a *v1.AutoscalingSpec) (up, down scalingRules) {
	if a.Behavior == nil {
		return defaultScaleUp, defaultScaleDown
	}
	return rulesFor(a.Behavior.ScaleUp, defaultScaleUp), rulesFor(a.Behavior.ScaleDown, defaultScaleDown)
}

// step is the most pods one change may add or remove from current.
func (r scalingRules) step(current int32) int32 {
	byPercent := (int64(current)*int64(r.percent) + 99) / 100
	return max(r.pods, int32(min(byPercent, 1<<30)), 1)
}

// recommendation is one raw recommendation and when it was made.
type recommendation struct {
	at       time.Time
	replicas int32
}

// scaleHistory is what the autoscaler remembers of a cluster between
// decisions: since when it has watched (after an operator restart nothing
// scales down before a full window has passed), its recommendations within
// the longest window, and when it last changed the count (also in the
// status, which a reconcile may read before its own last write shows).
type scaleHistory struct {
	since     time.Time
	recs      []recommendation
	lastScale time.Time
}

// scaleInput is everything a decision depends on.
type scaleInput struct {
	Now time.Time
	// Current is the broker count the cluster runs now: spec.replicas within
	// the bounds.
	Current  int32
	Min, Max int32
	// Target is targetSessionsPerPod.
	Target int32
	// Sessions is the sum of the client sessions the reporting brokers
	// hold; Reported is how many ready brokers answered, of Ready.
	Sessions        int64
	Reported, Ready int32
	Up, Down        scalingRules
	// History holds the earlier recommendations and when the autoscaler
	// last changed the count.
	History scaleHistory
}

// scaleDecision is a decision: the count to run, the raw recommendation it
// started from, why, and the history to keep for the next one.
type scaleDecision struct {
	Desired, Recommended int32
	Reason               string
	History              scaleHistory
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func clamp32(v int64, lo, hi int32) int32 { return int32(max(int64(lo), min(v, int64(hi)))) }

// decideScale decides the broker count. Brokers that did not answer count as
// empty when deciding to grow and as full (at the target) when deciding to
// shrink, so that a missing answer never shrinks the cluster.
func decideScale(in scaleInput) scaleDecision {
	d := scaleDecision{Desired: in.Current, Recommended: in.Current, History: in.History}
	if d.History.since.IsZero() {
		d.History.since = in.Now
	}
	if in.Reported == 0 || in.Target <= 0 {
		d.Reason = "no broker reported its sessions yet"
		return d
	}
	target := int64(in.Target)
	missing := int64(max(in.Ready-in.Reported, 0))
	up := ceilDiv(in.Sessions, target)
	down := ceilDiv(in.Sessions+missing*target, target)
	raw := int64(in.Current)
	ratio := float64(in.Sessions) / float64(int64(max(in.Current, 1))*target)
	if ratio > 1+scaleTolerance && up > raw {
		raw = up
	} else if ratio < 1-scaleTolerance && down < raw {
		raw = down
	}
	d.Recommended = clamp32(raw, in.Min, in.Max)

	// Stabilize over the windows, forgetting what is older than both.
	keep := max(in.Up.window, in.Down.window)
	recs := make([]recommendation, 0, len(in.History.recs)+1)
	for _, r := range in.History.recs {
		if in.Now.Sub(r.at) <= keep {
			recs = append(recs, r)
		}
	}
	recs = append(recs, recommendation{at: in.Now, replicas: d.Recommended})
	d.History.recs = recs
	upRec, downRec := d.Recommended, d.Recommended
	for _, r := range recs {
		age := in.Now.Sub(r.at)
		if age <= in.Up.window {
			upRec = min(upRec, r.replicas)
		}
		if age <= in.Down.window {
			downRec = max(downRec, r.replicas)
		}
	}
	if in.Now.Sub(d.History.since) < in.Down.window {
		downRec = max(downRec, in.Current) // not watched for a whole window yet
	}

	perPod := in.Sessions / int64(max(in.Reported, 1))
	load := fmt.Sprintf("%d sessions on %d ready brokers (%d per broker, target %d)", in.Sessions, in.Ready, perPod, in.Target)
	if missing > 0 {
		load = fmt.Sprintf("%d sessions on the %d of %d ready brokers that answered (target %d per broker)", in.Sessions, in.Reported, in.Ready, in.Target)
	}
	last := in.History.lastScale
	since := in.Now.Sub(last)
	switch {
	case upRec > in.Current:
		if !last.IsZero() && since < in.Up.period {
			d.Reason = fmt.Sprintf("%s: %d brokers wanted; waiting %s after the last change", load, upRec, (in.Up.period - since).Round(time.Second))
			return d
		}
		d.Desired = min(upRec, in.Current+in.Up.step(in.Current))
		d.Reason = fmt.Sprintf("%s: scale up to %d", load, d.Desired)
	case downRec < in.Current:
		if !last.IsZero() && since < in.Down.period {
			d.Reason = fmt.Sprintf("%s: %d brokers wanted; waiting %s after the last change", load, downRec, (in.Down.period - since).Round(time.Second))
			return d
		}
		d.Desired = max(downRec, in.Current-in.Down.step(in.Current))
		d.Reason = fmt.Sprintf("%s: scale down to %d", load, d.Desired)
	case d.Recommended < in.Current:
		d.Reason = fmt.Sprintf("%s: %d brokers would do; holding %d within the scale-down window", load, d.Recommended, in.Current)
	default:
		d.Reason = fmt.Sprintf("%s: %d brokers", load, in.Current)
	}
	return d
}
