// Package server is the Bayeux 1.0 server: sessions, channels, the subscription
// trie, per-session queues, the meta-channel handlers, extensions, security
// hooks, in-process LocalSessions, and the HTTP and websocket transports that
// carry it (long-polling, callback-polling, websocket, and Faye's
// cross-origin-long-polling and eventsource).
//
// Where things are:
//   - server.go: the node (Server): configuration, session lifecycle, drain
//     and shutdown.
//   - hub.go: the registry: sessions and channels in sharded maps, the
//     subscription trie, subscribe and unsubscribe.
//   - session.go: one session's state; queue.go: its outgoing queue (where a
//     message waits, with the ack extension's batches); snapshot.go: a
//     session written out and rebuilt elsewhere.
//   - protocol.go: the Bayeux meta channels (handshake, connect, subscribe,
//     publish, disconnect) and how a held /meta/connect is answered.
//   - publish.go: fan-out of a published message to local subscribers and the
//     backbone.
//   - handover.go: a session moving to another node; durable.go: sessions
//     kept in the backbone's stream, adopted by another node when theirs dies.
//   - longpoll.go, websocket.go and eventsource.go: the transports, where
//     messages are written; forward*.go and eventsource_relay.go: relaying a
//     session's requests and streams to the node that owns it.
//
// Its API follows the CometD 2 server design: ServerMessage, ServerSession,
// ServerChannel, LocalSession and SessionChannel, listeners, Extensions and a
// SecurityPolicy. A Server may be given a backbone.Backbone to fan publishes out
// to other nodes; without one it is a single node.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// ServerListener receives server-wide events. Any field may be nil. Callbacks run
// synchronously on the goroutine that caused the event and must not block.
type ServerListener struct {
	SessionAdded   func(s *ServerSession, handshake *ServerMessage)
	SessionRemoved func(s *ServerSession, reason error)
	ChannelAdded   func(c *ServerChannel)
	ChannelRemoved func(c *ServerChannel)
	Subscribed     func(s *ServerSession, c *ServerChannel, m *ServerMessage)
	Unsubscribed   func(s *ServerSession, c *ServerChannel)
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Sessions is the number of live sessions.
	Sessions int64
	// ClientSessions is the number of live sessions of clients (Sessions
	// without the LocalSessions): what a drain moves, and what load a node
	// carries.
	ClientSessions int64
	// Subscriptions is the number of (session, channel) subscriptions.
	Subscriptions int64
	// Channels is the number of channel objects.
	Channels int64
	// MessagesIn counts messages received from clients.
	MessagesIn uint64
	// MessagesOut counts messages (replies and deliveries) written to clients.
	MessagesOut uint64
	// Published counts messages published (locally or received from the backbone).
	Published uint64
	// QueueDrops counts messages dropped by slow-consumer disconnects.
	QueueDrops uint64
	// SlowConsumers counts sessions ended because their queue overflowed.
	SlowConsumers uint64
	// SlowConnections counts websocket connections closed because their
	// pending output passed Config.MaxPendingBytes (ErrSlowConnection).
	SlowConnections uint64
	// HandshakesRefused counts handshakes refused with 503::too_many_sessions
	// because Config.MaxSessions remote sessions were live.
	HandshakesRefused uint64
	// HandedOver counts sessions this node moved to another node.
	HandedOver uint64
	// HandoversFailed counts moves that failed (no node adopted the session,
	// or the adopting node refused it); the drain released those sessions.
	HandoversFailed uint64
	// HandoversTimedOut counts moves that did not finish within
	// Config.HandoverTimeout or the drain's deadline.
	HandoversTimedOut uint64
	// Adopted counts sessions other nodes moved here.
	Adopted uint64
	// Located counts sessions found on another node by asking every node.
	Located uint64
	// DrainDuration is how long the drain has taken so far, or took once no
	// session was left; 0 before a drain.
	DrainDuration time.Duration
	// DurableAdopted counts durable sessions this node adopted from their
	// records after their node died.
	DurableAdopted uint64
	// DurableGaps counts durable sessions that could not be adopted because
	// messages they had not received were gone from the stream.
	DurableGaps uint64
	// DurableFenced counts sessions this node ended because another node had
	// adopted them.
	DurableFenced uint64
	// DurableWrites and DurableWriteErrors count record writes.
	DurableWrites, DurableWriteErrors uint64
	// DurableNotStored counts publishes the durable stream refused.
	DurableNotStored uint64
}

type counters struct {
	sessions, subscriptions, channels atomic.Int64
	remote                            atomic.Int64 // sessions that are not LocalSessions
	messagesIn, messagesOut           atomic.Uint64
	published, queueDrops, slow       atomic.Uint64
	slots                             atomic.Int64 // Config.MaxSessions slots taken
	refused                           atomic.Uint64
	slowConns                         atomic.Uint64 // websockets closed as ErrSlowConnection
}

// Server is one Bayeux node.
type Server struct {
	cfg        Config
	nodeID     string
	log        *slog.Logger
	transports map[string]bool
	origins    origins // compiled Config.AllowedOrigins

	hub       *hub
	exts      cowList[Extension]
	listeners cowList[ServerListener]
	attrTypes sync.Map // attribute name → AttributeDecoder (snapshot.go)

	browserMu sync.Mutex
	browsers  map[string]int

	conns connSet // open transport connections, closed by Close

	// Handover (handover.go).
	msgNode   uint64        // this process's number in message IDs
	msgSeq    atomic.Uint64 // numbers this node's published messages
	moved     routeTable    // sessions this node handed over → their node
	routes    routeTable    // sessions located elsewhere → their node
	askLimit  *rate.Limiter // Asks (handover.go)
	handover  handoverStats
	relays    relaySet  // connects forwarded from here (forward_http.go)
	nodeWatch nodeWatch // nodes requests wait on (liveness.go)
	shed      shedder   // shed.go

	// Durable sessions (durable.go).
	records      recordWriter
	durableStats durableStats
	adoptions    singleflight.Group
	adoptSem     chan struct{}

	stats counters

	draining   atomic.Bool
	drainOnce  sync.Once
	drainStart atomic.Int64  // Unix nanoseconds
	drainEnd   atomic.Int64  // Unix nanoseconds, once no remote session is left
	emptied    chan struct{} // a token when the last remote session ends
	// newTicker paces a drain; tests replace it to drive the drain by hand.
	newTicker func(time.Duration) (<-chan time.Time, func())
	closeCh   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// NewServer returns a running Server (its session sweeper is started); stop it
// with Shutdown or Close.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	for _, t := range cfg.Transports {
		if !bayeux.IsTransport(t) {
			return nil, fmt.Errorf("server: unknown transport %q", t)
		}
	}
	allowed, err := compileOrigins(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	nodeID := cfg.NodeID
	if nodeID == "" && cfg.Backbone != nil {
		nodeID = cfg.Backbone.NodeID()
	}
	if nodeID == "" {
		nodeID = "node-" + randomToken(5)
	}
	if err := validNodeID(nodeID); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		nodeID:     nodeID,
		log:        cfg.Logger.With("node", nodeID),
		transports: map[string]bool{},
		origins:    allowed,
		browsers:   map[string]int{},
		conns:      connSet{m: map[closer]struct{}{}},
		msgNode:    mrand.Uint64(),
		askLimit:   rate.NewLimiter(askRate, askRate),
		emptied:    make(chan struct{}, 1),
		newTicker:  newTimeTicker,
		closeCh:    make(chan struct{}),
		adoptSem:   make(chan struct{}, adoptConcurrency),
	}
	for _, t := range cfg.Transports {
		s.transports[t] = true
	}
	s.hub = newHub(&s.stats, &s.listeners, s.interest)
	if cfg.Backbone != nil {
		cfg.Backbone.SetHandler(s.onRemote)
		if rq, ok := cfg.Backbone.(backbone.Requester); ok {
			rq.HandleRequests(s.serveNodeRequest) // forward.go
		}
	}
	s.wg.Add(1)
	go s.sweep()
	if cfg.Durable != nil {
		s.wg.Add(1)
		go s.recordLoop() // durable.go
	}
	go s.announceStart() // liveness.go
	return s, nil
}

// NodeID is the ID that prefixes this node's clientIds.
func (s *Server) NodeID() string { return s.nodeID }

// Config returns the effective configuration (defaults applied).
func (s *Server) Config() Config { return s.cfg }

// Draining reports whether Drain has been called.
func (s *Server) Draining() bool { return s.draining.Load() }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Sessions:       s.stats.sessions.Load(),
		ClientSessions: s.stats.remote.Load(),
		Subscriptions:  s.stats.subscriptions.Load(),
		Channels:       s.stats.channels.Load(),
		MessagesIn:     s.stats.messagesIn.Load(),
		MessagesOut:    s.stats.messagesOut.Load(),
		Published:      s.stats.published.Load(),
		QueueDrops:     s.stats.queueDrops.Load(),
		SlowConsumers:  s.stats.slow.Load(),

		SlowConnections:   s.stats.slowConns.Load(),
		HandshakesRefused: s.stats.refused.Load(),
		HandedOver:        s.handover.out.Load(),
		HandoversFailed:   s.handover.failed.Load(),
		HandoversTimedOut: s.handover.timedOut.Load(),
		Adopted:           s.handover.adopted.Load(),
		Located:           s.handover.located.Load(),
		DrainDuration:     s.drainDuration(),

		DurableAdopted:     s.durableStats.adopted.Load(),
		DurableGaps:        s.durableStats.gaps.Load(),
		DurableFenced:      s.durableStats.fenced.Load(),
		DurableWrites:      s.durableStats.writes.Load(),
		DurableWriteErrors: s.durableStats.writeErrors.Load(),
		DurableNotStored:   s.durableStats.notStored.Load(),
	}
}

// AddExtension adds a server-wide extension.
func (s *Server) AddExtension(e Extension) { s.exts.add(e) }

func (s *Server) extensionList() []Extension { return s.exts.list() }

// AddListener adds a server-wide listener.
func (s *Server) AddListener(l ServerListener) { s.listeners.add(l) }

func (s *Server) listenerList() []ServerListener { return s.listeners.list() }

// Session returns the live session with the given clientId, or nil.
func (s *Server) Session(id string) *ServerSession { return s.hub.session(id) }

// Sessions returns every live session.
func (s *Server) Sessions() []*ServerSession { return s.hub.sessions.values() }

// Channel returns the channel object named name, or nil if it does not exist.
func (s *Server) Channel(name string) *ServerChannel { return s.hub.channel(name) }

// Channels returns every channel object.
func (s *Server) Channels() []*ServerChannel { return s.hub.channels.values() }

// CreateChannel returns the channel named name, creating it if needed. A
// channel this call creates is in the server when init runs, so init may
// subscribe sessions to it or change its flags; anyone else asking for it
// waits until init is done. init must not create the same channel again. A
// created channel stays until something that kept it (a subscriber, listener
// or authorizer) goes away, unless it is persistent.
func (s *Server) CreateChannel(name string, init ...func(*ServerChannel)) (*ServerChannel, error) {
	id, err := bayeux.ParseChannel(name)
	if err != nil {
		return nil, err
	}
	c, _ := s.hub.channelFor(s, id, init...)
	return c, nil
}

// interest tells the backbone that a broadcast channel got its first local
// subscriber or lost its last one (the hub's interest hook).
func (s *Server) interest(channel string, subscribed bool) {
	bb := s.cfg.Backbone
	if bb == nil {
		return
	}
	if subscribed {
		if err := bb.Subscribe(channel); err != nil {
			s.log.Warn("backbone subscribe failed", "channel", channel, "err", err)
		}
		return
	}
	if err := bb.Unsubscribe(channel); err != nil {
		s.log.Warn("backbone unsubscribe failed", "channel", channel, "err", err)
	}
}

// errSessionExists: a session with the same clientId is already registered.
var errSessionExists = errors.New("server: a session with this clientId exists")

// addSession registers a handshaken (or restored) session.
func (s *Server) addSession(ss *ServerSession, hs *ServerMessage) error {
	ss.mu.Lock()
	ss.handshook = true
	ss.lastActive = time.Now()
	ss.mu.Unlock()
	if _, ok := s.hub.sessions.putIfAbsent(ss.id, ss); !ok {
		ss.mu.Lock()
		ss.handshook = false
		ss.mu.Unlock()
		return errSessionExists
	}
	s.stats.sessions.Add(1)
	if ss.local == nil {
		s.stats.remote.Add(1)
	}
	for _, l := range s.listenerList() {
		if l.SessionAdded != nil {
			l.SessionAdded(ss, hs)
		}
	}
	s.markRecord(ss, true) // durable.go
	return nil
}

// closer is a transport connection the server closes when it closes.
type closer interface{ close() }

// connSet is the set of open transport connections.
type connSet struct {
	mu sync.Mutex
	m  map[closer]struct{}
}

func (cs *connSet) add(c closer) {
	cs.mu.Lock()
	cs.m[c] = struct{}{}
	cs.mu.Unlock()
}

func (cs *connSet) remove(c closer) {
	cs.mu.Lock()
	delete(cs.m, c)
	cs.mu.Unlock()
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	all := make([]closer, 0, len(cs.m))
	for c := range cs.m {
		all = append(all, c)
	}
	cs.mu.Unlock()
	for _, c := range all {
		c.close()
	}
}

// takeSlot takes one of the Config.MaxSessions slots for a remote session
// being handshaken and reports whether it could; with no limit it takes none
// and reports true. The compare-and-swap keeps concurrent handshakes from
// passing the limit together. The handshake marks the session that holds the
// slot (ServerSession.slot); removeSession gives it back once the session was
// added, giveBackSlot when the handshake fails before that.
func (s *Server) takeSlot() bool {
	limit := int64(s.cfg.MaxSessions)
	if limit <= 0 {
		return true
	}
	for {
		n := s.stats.slots.Load()
		if n >= limit {
			return false
		}
		if s.stats.slots.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// giveBackSlot returns the slot of a session whose handshake failed.
func (s *Server) giveBackSlot(ss *ServerSession) {
	ss.mu.Lock()
	slot := ss.slot
	ss.slot = false
	ss.mu.Unlock()
	if slot {
		s.stats.slots.Add(-1)
	}
}

// removeSession ends ss with reason; the first call wins.
func (s *Server) removeSession(ss *ServerSession, reason error) {
	ss.mu.Lock()
	if ss.reason != nil {
		ss.mu.Unlock()
		return
	}
	ss.reason = reason
	subs := slices.AppendSeq(make([]*ServerChannel, 0, ss.subs.len()), ss.subs.all())
	registered := ss.handshook
	slot := registered && ss.slot // an unregistered one is the handshake's to give back
	if slot {
		ss.slot = false
	}
	rm := ss.rmListen
	ss.mu.Unlock()
	dropped := ss.queue.close()
	close(ss.done)
	ss.signal()
	if reason == ErrSlowConsumer {
		s.stats.slow.Add(1)
	} else if dropped > 0 && reason != ErrClientDisconnect {
		s.stats.queueDrops.Add(uint64(dropped))
	}
	if !registered {
		return
	}
	s.hub.sessions.deleteIf(ss.id, ss)
	for _, c := range subs {
		s.hub.unsubscribe(ss, c)
	}
	s.stats.sessions.Add(-1)
	if slot { // after the session count, so Stats().Sessions never passes MaxSessions
		s.stats.slots.Add(-1)
	}
	if ss.local == nil && s.stats.remote.Add(-1) == 0 {
		if s.draining.Load() {
			s.drainEnd.CompareAndSwap(0, time.Now().UnixNano())
		}
		select {
		case s.emptied <- struct{}{}:
		default:
		}
	}
	s.markRecord(ss, true) // durable.go: the record goes, or stays, with the reason
	for _, l := range rm {
		l(ss, reason)
	}
	for _, l := range s.listenerList() {
		if l.SessionRemoved != nil {
			l.SessionRemoved(ss, reason)
		}
	}
	if ss.local != nil {
		ss.local.ended(reason)
	}
}

func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closeCh:
			return
		case <-t.C:
		}
		deadline := time.Now().Add(-(s.cfg.MaxInterval + s.cfg.Interval))
		var expired []*ServerSession
		s.hub.sessions.each(func(ss *ServerSession) {
			ss.mu.Lock()
			// A websocket that stays open without connects does not keep
			// its session: lastActive moves with connects (and detaches).
			if ss.local == nil && ss.held == nil && ss.lastActive.Before(deadline) {
				expired = append(expired, ss)
			}
			ss.mu.Unlock()
		})
		for _, ss := range expired {
			s.removeSession(ss, ErrExpired)
		}
		now := time.Now()
		s.moved.sweep(now)
		s.routes.sweep(now)
	}
}

// Drain stops accepting handshakes and releases the sessions at the paced
// rate of Config.DrainRate: each one's held /meta/connect (or its next one) is
// answered with advice to retry, so clients reconnect to another node behind a
// Service, a few at a time. Shutdown drains with a deadline.
func (s *Server) Drain() { s.drain(time.Time{}) }

func (s *Server) drain(deadline time.Time) {
	s.drainOnce.Do(func() {
		start := time.Now().UnixNano()
		s.drainStart.Store(start)
		s.draining.Store(true)
		if s.stats.remote.Load() == 0 {
			s.drainEnd.CompareAndSwap(0, start) // nothing to drain
		}
		s.relays.releaseAll()
		s.wg.Add(1)
		go s.paceDrain(deadline)
	})
}

func newTimeTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// drainPace returns the ticker period and the sessions released per tick that
// release n sessions at rate per second, or faster when that would not release
// them all within drainSpread of left (when left > 0). A period of 0 means all
// at once.
func drainPace(n int, rate float64, left time.Duration) (period time.Duration, batch int) {
	const minPeriod = 10 * time.Millisecond
	if rate < 0 || n == 0 {
		return 0, n
	}
	if left > 0 {
		rate = max(rate, float64(n)/(left.Seconds()*drainSpread))
	}
	period = max(time.Duration(float64(time.Second)/rate), minPeriod)
	batch = max(int(math.Round(rate*period.Seconds())), 1)
	return period, batch
}

// undrained returns the remote sessions not yet released by the drain.
func (s *Server) undrained() []*ServerSession {
	var out []*ServerSession
	for _, ss := range s.Sessions() {
		ss.mu.Lock()
		if ss.local == nil && !ss.drained && ss.reason == nil {
			out = append(out, ss)
		}
		ss.mu.Unlock()
	}
	return out
}

// paceDrain releases every remote session, batch by batch on a ticker. It takes
// a new snapshot when one is done, for sessions a handshake racing Drain added.
func (s *Server) paceDrain(deadline time.Time) {
	defer s.wg.Done()
	mv := s.newMover(deadline)
	defer mv.wait()
	for {
		mv.wait() // sessions still moving are not in the next round
		queue := s.undrained()
		if len(queue) == 0 {
			return
		}
		var left time.Duration
		if !deadline.IsZero() {
			left = max(time.Until(deadline), time.Millisecond)
		}
		period, batch := drainPace(len(queue), s.cfg.DrainRate, left)
		var tick <-chan time.Time
		stop := func() {}
		if period > 0 {
			tick, stop = s.newTicker(period)
		}
		for len(queue) > 0 {
			if tick != nil {
				select {
				case <-s.closeCh:
					stop()
					return
				case <-tick:
				}
			}
			k := min(batch, len(queue))
			for _, ss := range queue[:k] {
				mv.move(ss)
			}
			queue = queue[k:]
		}
		stop()
	}
}

// mover hands a draining node's sessions over to other nodes, a few at a time,
// and releases those it cannot move (see Drain).
type mover struct {
	s        *Server
	deadline time.Time
	sem      chan struct{}
	wg       sync.WaitGroup
	noTarget atomic.Bool // nobody adopts: release everything left
}

func (s *Server) newMover(deadline time.Time) *mover {
	mv := &mover{s: s, deadline: deadline, sem: make(chan struct{}, s.cfg.HandoverConcurrency)}
	if _, ro := s.router(); ro == nil {
		mv.noTarget.Store(true)
		s.log.Info("draining without handover: sessions are released", "reason", "the backbone cannot route sessions or handover is disabled")
	} else if err := ro.TakeWork(false); err != nil {
		s.log.Warn("cannot leave the backbone's work queue; other nodes may still hand sessions here", "err", err)
	}
	return mv
}

// move hands ss over on a goroutine of its own, waiting while
// HandoverConcurrency moves are under way; when that is not possible, it
// releases ss as a drain without handover does.
func (mv *mover) move(ss *ServerSession) {
	if mv.noTarget.Load() {
		ss.releaseForDrain()
		return
	}
	mv.sem <- struct{}{}
	mv.wg.Add(1)
	go func() {
		defer func() { <-mv.sem; mv.wg.Done() }()
		ctx := context.Background()
		if !mv.deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, mv.deadline)
			defer cancel()
		}
		_, err := mv.s.handOver(ctx, ss, "")
		switch {
		case err == nil:
			return
		case errors.Is(err, ErrSessionClosed):
			return // it ended meanwhile
		case errors.Is(err, backbone.ErrNoNode):
			if !mv.noTarget.Swap(true) {
				mv.s.log.Warn("no other node adopts sessions: the drain releases them, and their clients handshake again elsewhere")
			}
			mv.s.handover.failed.Add(1)
		case errors.Is(err, context.DeadlineExceeded):
			mv.s.handover.timedOut.Add(1)
			mv.s.log.Warn("a session handover timed out; the session is released", "session", ss.id, "err", err)
		default:
			mv.s.handover.failed.Add(1)
			mv.s.log.Warn("a session handover failed; the session is released", "session", ss.id, "err", err)
		}
		ss.releaseForDrain()
	}()
}

func (mv *mover) wait() { mv.wg.Wait() }

func (s *Server) drainDuration() time.Duration {
	start := s.drainStart.Load()
	if start == 0 {
		return 0
	}
	end := s.drainEnd.Load()
	if end == 0 {
		return time.Since(time.Unix(0, start)) // under way
	}
	return time.Duration(end - start)
}

// Close ends every session and websocket connection and stops the sweeper.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closeCh)
		for _, ss := range s.Sessions() {
			s.removeSession(ss, ErrShutdown)
		}
		s.conns.closeAll()
	})
	s.wg.Wait()
}

// Shutdown drains (paced to release every session within ctx's deadline, if it
// has one), then closes once ctx ends or no remote session is left (LocalSessions
// do not hold it up). Ending the remaining sessions when ctx ends is the expected
// outcome, not an error.
func (s *Server) Shutdown(ctx context.Context) error {
	deadline, _ := ctx.Deadline()
	s.drain(deadline)
wait:
	for s.stats.remote.Load() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-s.emptied:
		}
	}
	s.Close()
	return nil
}

// untilClose returns a context that ends when the server closes, or after
// timeout (0: no timeout).
func (s *Server) untilClose(timeout time.Duration) (context.Context, context.CancelFunc) {
	var ctx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	go func() {
		select {
		case <-s.closeCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// closed reports whether ch is closed (it is only ever closed, never sent on).
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
