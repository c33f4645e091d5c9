package server

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
)

// Shedding: a node that holds more sessions than its share hands some of
// them over to named nodes, at a paced rate, while their clients go on. It is
// the drain's handover aimed at chosen nodes: the operator rebalances a
// cluster after a scale-up by asking its busiest brokers to shed their surplus
// to the emptiest ones. A moved websocket session's connection is closed after
// a reply that advises the client to reconnect at once; it comes back through
// the Service and finds its session, with its clientId and its messages, on
// the node that took it. A long-polling client's next request does the same.

// DefaultShedRate is the sessions per second a shed moves when its plan
// names no rate.
const DefaultShedRate = 100

// shedConcurrency bounds the handovers a shed runs at once.
const shedConcurrency = 8

// maxShedTargetFailures is how many handovers in a row a target may refuse
// before the shed stops sending it sessions.
const maxShedTargetFailures = 3

// ShedPlan asks a node to hand sessions over to other nodes until it holds at
// most Keep client sessions. It replaces any plan under way, so asking again
// with the same plan changes nothing.
type ShedPlan struct {
	// Keep is the number of client sessions (not LocalSessions) to stop at.
	Keep int `json:"keep"`
	// To caps the sessions each named node may be given.
	To map[string]int `json:"to"`
	// Rate is the sessions moved per second; 0 means DefaultShedRate.
	Rate float64 `json:"rate,omitempty"`
}

// ShedStatus tells what a node's shed is doing.
type ShedStatus struct {
	// Active is true while a plan is being carried out.
	Active bool `json:"active"`
	// Keep is the active plan's Keep.
	Keep int `json:"keep,omitempty"`
	// Moved and Failed count this node's shed handovers, over its life.
	Moved  uint64 `json:"moved"`
	Failed uint64 `json:"failed"`
}

// ErrShedPlan reports a plan Shed refuses.
var ErrShedPlan = errors.New("server: invalid shed plan")

// shedder carries out the latest ShedPlan on one goroutine.
type shedder struct {
	mu       sync.Mutex
	plan     ShedPlan // To's counts go down as sessions move
	gen      uint64   // bumped by every Shed
	running  bool
	inFlight int            // moves under way, counted as gone already
	refusals map[string]int // failed moves in a row, by target
	limiter  *rate.Limiter

	moved, failed atomic.Uint64
}

// Shed starts carrying out p, or replaces the plan under way with it. Sessions
// move to the nodes of p.To (never this one), the node with the most room
// first, at p.Rate, until at most p.Keep client sessions are left here or the
// targets have taken all they may. A target that refuses several sessions in
// a row (it drains, or is full) is given no more. A drain stops the shed.
func (s *Server) Shed(p ShedPlan) error {
	if p.Keep < 0 || p.Rate < 0 {
		return fmt.Errorf("%w: keep %d and rate %v must not be negative", ErrShedPlan, p.Keep, p.Rate)
	}
	to := make(map[string]int, len(p.To))
	for node, n := range p.To {
		if err := validNodeID(node); err != nil {
			return fmt.Errorf("%w: %v", ErrShedPlan, err)
		}
		if n > 0 && node != s.nodeID {
			to[node] = n
		}
	}
	p.To = to
	if p.Rate == 0 {
		p.Rate = DefaultShedRate
	}
	if rq, ro := s.router(); rq == nil || ro == nil {
		return ErrNoHandover
	}
	if s.draining.Load() {
		return ErrDraining
	}
	sh := &s.shed
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.plan = p
	sh.gen++
	sh.refusals = map[string]int{}
	if sh.limiter == nil {
		sh.limiter = rate.NewLimiter(rate.Limit(p.Rate), 1)
	} else {
		sh.limiter.SetLimit(rate.Limit(p.Rate))
	}
	if !sh.running && len(p.To) > 0 {
		sh.running = true
		s.wg.Add(1)
		go s.runShed()
	}
	return nil
}

// ShedStatus reports the shed.
func (s *Server) ShedStatus() ShedStatus {
	sh := &s.shed
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := ShedStatus{Active: sh.running, Moved: sh.moved.Load(), Failed: sh.failed.Load()}
	if sh.running {
		st.Keep = sh.plan.Keep
	}
	return st
}

// nextTarget picks the target with the most room left (by name among equals)
// and takes one session's room from it. It returns "" when the plan is done:
// few enough sessions are left here, or no target has room.
func (s *Server) nextTarget() (string, uint64) {
	sh := &s.shed
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s.draining.Load() || closed(s.closeCh) || int(s.stats.remote.Load())-sh.inFlight <= sh.plan.Keep {
		return "", sh.gen
	}
	node, best := "", 0
	for n, room := range sh.plan.To {
		if room > best || room == best && room > 0 && n < node {
			node, best = n, room
		}
	}
	if node != "" {
		sh.plan.To[node]--
		sh.inFlight++
	}
	return node, sh.gen
}

// moveDone settles one move to node of plan generation gen: the session
// left, or it stays and the target's room comes back, unless the target
// failed too often or a newer plan replaced this one.
func (s *Server) moveDone(node string, gen uint64, err error) {
	sh := &s.shed
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.inFlight--
	switch {
	case err == nil:
		sh.moved.Add(1)
		sh.refusals[node] = 0
		return
	case errors.Is(err, ErrSessionClosed):
		return // it ended meanwhile: nothing moved, nothing failed
	}
	sh.failed.Add(1)
	s.handover.failed.Add(1)
	if sh.gen != gen {
		return
	}
	if _, ok := sh.plan.To[node]; !ok {
		return // given up on already, by a move that failed before this one
	}
	sh.refusals[node]++
	if sh.refusals[node] >= maxShedTargetFailures || errors.Is(err, backbone.ErrNoNode) {
		delete(sh.plan.To, node)
		s.log.Warn("shed: a target refused sessions; it gets no more of them", "target", node, "err", err)
		return
	}
	sh.plan.To[node]++
}

// runShed moves sessions, round after round, until a round moves nothing
// and no newer plan came in.
func (s *Server) runShed() {
	defer s.wg.Done()
	sh := &s.shed
	ctx, cancel := s.untilClose(0)
	defer cancel()
	sem := make(chan struct{}, shedConcurrency)
	var wg sync.WaitGroup
	for {
		sh.mu.Lock()
		round := sh.gen // the plan this round started with
		sh.mu.Unlock()
		started := 0
		for _, ss := range s.undrained() {
			if ss.isArriving() {
				continue // still moving here: not this node's to give yet
			}
			node, gen := s.nextTarget()
			if node == "" {
				break
			}
			if err := sh.limiter.Wait(ctx); err != nil {
				s.moveDone(node, gen, ErrSessionClosed)
				break
			}
			sem <- struct{}{}
			wg.Add(1)
			started++
			go func() {
				defer func() { <-sem; wg.Done() }()
				_, err := s.handOver(ctx, ss, node)
				s.moveDone(node, gen, err)
			}()
		}
		wg.Wait()
		sh.mu.Lock()
		if started == 0 && sh.gen == round || ctx.Err() != nil {
			sh.running = false
			sh.mu.Unlock()
			return
		}
		sh.mu.Unlock()
	}
}
