// Package server is the Bayeux 1.0 server: sessions, channels, the subscription
// trie, per-session queues, the meta-channel handlers, extensions, security
// hooks, in-process LocalSessions, and the HTTP and websocket transports that
// carry it (long-polling, callback-polling, websocket).
//
// Its API follows the CometD 2 server design: ServerMessage, ServerSession,
// ServerChannel, LocalSession and SessionChannel, listeners, Extensions and a
// SecurityPolicy. A Server may be given a backbone.Backbone to fan publishes out
// to other nodes; without one it is a single node.
package server

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

const numShards = 64

type sessionShard struct {
	mu sync.RWMutex
	m  map[string]*ServerSession
}

type channelShard struct {
	mu sync.RWMutex
	m  map[string]*ServerChannel
}

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
	// HandshakesRefused counts handshakes refused with 503::too_many_sessions
	// because Config.MaxSessions remote sessions were live.
	HandshakesRefused uint64
}

type counters struct {
	sessions, subscriptions, channels atomic.Int64
	remote                            atomic.Int64 // sessions that are not LocalSessions
	messagesIn, messagesOut           atomic.Uint64
	published, queueDrops, slow       atomic.Uint64
	slots                             atomic.Int64 // Config.MaxSessions slots taken
	refused                           atomic.Uint64
}

// Server is one Bayeux node.
type Server struct {
	cfg        Config
	nodeID     string
	log        *slog.Logger
	transports map[string]bool

	sessions [numShards]sessionShard
	channels [numShards]channelShard
	trie     *bayeux.Trie[*ServerChannel]

	exts      atomic.Pointer[[]Extension]
	extMu     sync.Mutex
	listeners atomic.Pointer[[]ServerListener]
	lisMu     sync.Mutex

	browserMu sync.Mutex
	browsers  map[string]int

	wsMu    sync.Mutex
	wsConns map[*wsConn]struct{}

	stats counters

	draining  atomic.Bool
	drainOnce sync.Once
	emptied   chan struct{} // a token when the last remote session ends
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
		switch t {
		case "websocket", "long-polling", "callback-polling":
		default:
			return nil, fmt.Errorf("server: unknown transport %q", t)
		}
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
		trie:       bayeux.NewTrie[*ServerChannel](0),
		browsers:   map[string]int{},
		wsConns:    map[*wsConn]struct{}{},
		emptied:    make(chan struct{}, 1),
		newTicker:  newTimeTicker,
		closeCh:    make(chan struct{}),
	}
	for _, t := range cfg.Transports {
		s.transports[t] = true
	}
	for i := range s.sessions {
		s.sessions[i].m = map[string]*ServerSession{}
		s.channels[i].m = map[string]*ServerChannel{}
	}
	if cfg.Backbone != nil {
		cfg.Backbone.SetHandler(s.onRemote)
		if rq, ok := cfg.Backbone.(backbone.Requester); ok {
			rq.HandleRequests(s.serveNodeRequest) // forward.go
		}
	}
	s.wg.Add(1)
	go s.sweep()
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
		Sessions:      s.stats.sessions.Load(),
		Subscriptions: s.stats.subscriptions.Load(),
		Channels:      s.stats.channels.Load(),
		MessagesIn:    s.stats.messagesIn.Load(),
		MessagesOut:   s.stats.messagesOut.Load(),
		Published:     s.stats.published.Load(),
		QueueDrops:    s.stats.queueDrops.Load(),
		SlowConsumers: s.stats.slow.Load(),

		HandshakesRefused: s.stats.refused.Load(),
	}
}

func shardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % numShards)
}

// AddExtension adds a server-wide extension.
func (s *Server) AddExtension(e Extension) {
	s.extMu.Lock()
	defer s.extMu.Unlock()
	var l []Extension
	if p := s.exts.Load(); p != nil {
		l = slices.Clone(*p)
	}
	l = append(l, e)
	s.exts.Store(&l)
}

func (s *Server) extensionList() []Extension {
	if p := s.exts.Load(); p != nil {
		return *p
	}
	return nil
}

// AddListener adds a server-wide listener.
func (s *Server) AddListener(l ServerListener) {
	s.lisMu.Lock()
	defer s.lisMu.Unlock()
	var ls []ServerListener
	if p := s.listeners.Load(); p != nil {
		ls = slices.Clone(*p)
	}
	ls = append(ls, l)
	s.listeners.Store(&ls)
}

func (s *Server) listenerList() []ServerListener {
	if p := s.listeners.Load(); p != nil {
		return *p
	}
	return nil
}

// Session returns the live session with the given clientId, or nil.
func (s *Server) Session(id string) *ServerSession {
	sh := &s.sessions[shardOf(id)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[id]
}

// Sessions returns every live session.
func (s *Server) Sessions() []*ServerSession {
	var out []*ServerSession
	for i := range s.sessions {
		sh := &s.sessions[i]
		sh.mu.RLock()
		for _, ss := range sh.m {
			out = append(out, ss)
		}
		sh.mu.RUnlock()
	}
	return out
}

func (s *Server) addSession(ss *ServerSession, hs *ServerMessage) {
	sh := &s.sessions[shardOf(ss.id)]
	sh.mu.Lock()
	sh.m[ss.id] = ss
	sh.mu.Unlock()
	ss.mu.Lock()
	ss.handshook = true
	ss.lastActive = time.Now()
	ss.mu.Unlock()
	s.stats.sessions.Add(1)
	if ss.local == nil {
		s.stats.remote.Add(1)
	}
	for _, l := range s.listenerList() {
		if l.SessionAdded != nil {
			l.SessionAdded(ss, hs)
		}
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
	subs := make([]*ServerChannel, 0, len(ss.subs))
	for c := range ss.subs {
		subs = append(subs, c)
	}
	registered := ss.handshook
	slot := registered && ss.slot // an unregistered one is the handshake's to give back
	if slot {
		ss.slot = false
	}
	rm := ss.rmListen
	ws := ss.ws
	dropped := len(ss.queue)
	ss.queue, ss.queueBytes = nil, 0
	ss.stopLazyLocked()
	ss.mu.Unlock()
	close(ss.done)
	if ws != nil {
		ws.kick()
	}
	if reason == ErrSlowConsumer {
		s.stats.slow.Add(1)
	} else if dropped > 0 && reason != ErrClientDisconnect {
		s.stats.queueDrops.Add(uint64(dropped))
	}
	if !registered {
		return
	}
	sh := &s.sessions[shardOf(ss.id)]
	sh.mu.Lock()
	delete(sh.m, ss.id)
	sh.mu.Unlock()
	for _, c := range subs {
		s.unsubscribe(ss, c)
	}
	s.stats.sessions.Add(-1)
	if slot { // after the session count, so Stats().Sessions never passes MaxSessions
		s.stats.slots.Add(-1)
	}
	if ss.local == nil && s.stats.remote.Add(-1) == 0 {
		select {
		case s.emptied <- struct{}{}:
		default:
		}
	}
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

// Channel returns the channel object named name, or nil if it does not exist.
func (s *Server) Channel(name string) *ServerChannel {
	sh := &s.channels[shardOf(name)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[name]
}

// Channels returns every channel object.
func (s *Server) Channels() []*ServerChannel {
	var out []*ServerChannel
	for i := range s.channels {
		sh := &s.channels[i]
		sh.mu.RLock()
		for _, c := range sh.m {
			out = append(out, c)
		}
		sh.mu.RUnlock()
	}
	return out
}

// CreateChannel returns the channel named name, creating it (and running init on
// it, before anyone else can see it) if needed. A created channel with no
// subscribers, listeners or authorizers is removed again unless init makes it
// persistent.
func (s *Server) CreateChannel(name string, init ...func(*ServerChannel)) (*ServerChannel, error) {
	id, err := bayeux.ParseChannel(name)
	if err != nil {
		return nil, err
	}
	c, _ := s.getOrCreateChannel(id, init...)
	return c, nil
}

func (s *Server) getOrCreateChannel(id bayeux.ChannelID, init ...func(*ServerChannel)) (*ServerChannel, bool) {
	name := id.String()
	sh := &s.channels[shardOf(name)]
	sh.mu.RLock()
	c := sh.m[name]
	sh.mu.RUnlock()
	if c != nil {
		return c, false
	}
	sh.mu.Lock()
	if c = sh.m[name]; c != nil {
		sh.mu.Unlock()
		return c, false
	}
	c = &ServerChannel{id: id, srv: s, subs: map[*ServerSession]struct{}{}}
	for _, f := range init {
		f(c)
	}
	sh.m[name] = c
	s.trie.Insert(name, c)
	sh.mu.Unlock()
	s.stats.channels.Add(1)
	for _, l := range s.listenerList() {
		if l.ChannelAdded != nil {
			l.ChannelAdded(c)
		}
	}
	return c, true
}

func (s *Server) maybeRemoveChannel(c *ServerChannel) {
	c.mu.Lock()
	if c.removed || len(c.subs) > 0 || len(c.listeners) > 0 || len(c.authorizers) > 0 || c.persistent {
		c.mu.Unlock()
		return
	}
	c.removed = true
	name := c.Name()
	sh := &s.channels[shardOf(name)]
	sh.mu.Lock()
	if sh.m[name] == c {
		delete(sh.m, name)
	}
	sh.mu.Unlock()
	s.trie.Remove(name, c)
	c.mu.Unlock()
	s.stats.channels.Add(-1)
	for _, l := range s.listenerList() {
		if l.ChannelRemoved != nil {
			l.ChannelRemoved(c)
		}
	}
}

// subscribe adds ss to the channel name (created if needed).
func (s *Server) subscribe(ss *ServerSession, name string, m *ServerMessage) error {
	id, err := bayeux.ParseChannel(name)
	if err != nil {
		return err
	}
	for {
		c, _ := s.getOrCreateChannel(id)
		c.interestMu.Lock()
		c.mu.Lock()
		if c.removed {
			c.mu.Unlock()
			c.interestMu.Unlock()
			continue
		}
		ss.mu.Lock()
		if ss.reason != nil {
			ss.mu.Unlock()
			c.mu.Unlock()
			c.interestMu.Unlock()
			s.maybeRemoveChannel(c)
			return ErrSessionClosed
		}
		if ss.subs == nil {
			ss.subs = map[*ServerChannel]struct{}{}
		}
		ss.subs[c] = struct{}{}
		ss.mu.Unlock()
		_, already := c.subs[ss]
		first := false
		if !already {
			c.subs[ss] = struct{}{}
			c.snap.Store(nil)
			s.stats.subscriptions.Add(1)
			first = len(c.subs) == 1
		}
		c.mu.Unlock()
		// The backbone may take a round trip: publishes, which need c.mu, go on
		// meanwhile; interestMu keeps the backbone calls in the order of the
		// changes they follow.
		if first && s.cfg.Backbone != nil && c.id.IsBroadcast() {
			if err := s.cfg.Backbone.Subscribe(name); err != nil {
				s.log.Warn("backbone subscribe failed", "channel", name, "err", err)
			}
		}
		c.interestMu.Unlock()
		if !already {
			for _, l := range s.listenerList() {
				if l.Subscribed != nil {
					l.Subscribed(ss, c, m)
				}
			}
		}
		return nil
	}
}

func (s *Server) unsubscribe(ss *ServerSession, c *ServerChannel) {
	c.interestMu.Lock()
	c.mu.Lock()
	ss.mu.Lock()
	delete(ss.subs, c)
	ss.mu.Unlock()
	_, was := c.subs[ss]
	last := false
	if was {
		delete(c.subs, ss)
		c.snap.Store(nil)
		s.stats.subscriptions.Add(-1)
		last = len(c.subs) == 0
	}
	c.mu.Unlock()
	if last && s.cfg.Backbone != nil && c.id.IsBroadcast() {
		if err := s.cfg.Backbone.Unsubscribe(c.Name()); err != nil {
			s.log.Warn("backbone unsubscribe failed", "channel", c.Name(), "err", err)
		}
	}
	c.interestMu.Unlock()
	if was {
		for _, l := range s.listenerList() {
			if l.Unsubscribed != nil {
				l.Unsubscribed(ss, c)
			}
		}
	}
	s.maybeRemoveChannel(c)
}

var seenPool = sync.Pool{New: func() any { return map[*ServerSession]struct{}{} }}

// publish runs channel listeners (for local publishes), delivers to every
// matching subscriber once, and forwards broadcast messages to the backbone.
// It reports false when a channel listener vetoed the message.
func (s *Server) publish(from *ServerSession, m *ServerMessage, remote bool) bool {
	name := m.m.Channel
	chans := s.trie.Match(name)
	if !remote {
		for _, c := range chans {
			for _, l := range c.listenerList() {
				if !(*l)(from, c, m) {
					return false
				}
			}
		}
		if c := s.Channel(name); c != nil && c.IsLazy() {
			m.lazy = true
		}
	}
	out := m
	if m.m.ClientID != "" {
		// Subscribers never see the publisher's clientId.
		out = &ServerMessage{m: &bayeux.Mutable{Channel: name, ID: m.m.ID, Data: m.m.Data, Ext: m.m.Ext}, lazy: m.lazy}
	}
	s.stats.published.Add(1)
	service := bayeux.IsService(name)
	var only *ServerChannel
	nonEmpty := 0
	for _, c := range chans {
		if len(c.subscribers()) > 0 {
			nonEmpty++
			only = c
		}
	}
	switch {
	case nonEmpty == 1:
		for _, ss := range only.subscribers() {
			if service && ss.local == nil {
				continue
			}
			ss.deliver(from, out)
		}
	case nonEmpty > 1:
		seen := seenPool.Get().(map[*ServerSession]struct{})
		for _, c := range chans {
			for _, ss := range c.subscribers() {
				if _, dup := seen[ss]; dup || (service && ss.local == nil) {
					continue
				}
				seen[ss] = struct{}{}
				ss.deliver(from, out)
			}
		}
		clear(seen)
		seenPool.Put(seen)
	}
	if !remote && !service && s.cfg.Backbone != nil {
		if err := s.cfg.Backbone.Publish(name, out.Encoded()); err != nil {
			s.log.Warn("backbone publish failed", "channel", name, "err", err)
		}
	}
	return true
}

// onRemote delivers a message another node published.
func (s *Server) onRemote(msg backbone.Message) {
	m, err := bayeux.Decode(msg.Data)
	if err != nil {
		s.log.Warn("undecodable message from backbone", "origin", msg.Origin, "err", err)
		return
	}
	if _, err := bayeux.ParseChannel(m.Channel); err != nil || bayeux.IsMeta(m.Channel) || bayeux.IsService(m.Channel) {
		s.log.Warn("invalid channel from backbone", "origin", msg.Origin, "channel", m.Channel)
		return
	}
	s.publish(nil, newEncodedMessage(m, msg.Data), true)
}

// Publish publishes data on channel from the server (creating no channel object).
func (s *Server) Publish(channel string, data any) error {
	id, err := bayeux.ParseChannel(channel)
	if err != nil {
		return err
	}
	if id.IsWildcard() || id.IsMeta() {
		return fmt.Errorf("server: cannot publish to %q", channel)
	}
	raw, err := jsonMarshal(data)
	if err != nil {
		return err
	}
	s.publish(nil, NewServerMessage(&bayeux.Mutable{Channel: channel, Data: raw}), false)
	return nil
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
		for i := range s.sessions {
			sh := &s.sessions[i]
			sh.mu.RLock()
			for _, ss := range sh.m {
				ss.mu.Lock()
				// A websocket that stays open without connects does not keep
				// its session: lastActive moves with connects (and detaches).
				if ss.local == nil && ss.held == nil && ss.lastActive.Before(deadline) {
					expired = append(expired, ss)
				}
				ss.mu.Unlock()
			}
			sh.mu.RUnlock()
		}
		for _, ss := range expired {
			s.removeSession(ss, ErrExpired)
		}
	}
}

// Drain stops accepting handshakes and releases the sessions at the paced
// rate of Config.DrainRate: each one's held /meta/connect (or its next one) is
// answered with advice to retry, so clients reconnect to another node behind a
// Service, a few at a time. Shutdown drains with a deadline.
func (s *Server) Drain() { s.drain(time.Time{}) }

func (s *Server) drain(deadline time.Time) {
	s.drainOnce.Do(func() {
		s.draining.Store(true)
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
	for {
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
				ss.releaseForDrain()
			}
			queue = queue[k:]
		}
		stop()
	}
}

// Close ends every session and websocket connection and stops the sweeper.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closeCh)
		for _, ss := range s.Sessions() {
			s.removeSession(ss, ErrShutdown)
		}
		s.wsMu.Lock()
		conns := make([]*wsConn, 0, len(s.wsConns))
		for c := range s.wsConns {
			conns = append(conns, c)
		}
		s.wsMu.Unlock()
		for _, c := range conns {
			c.close()
		}
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
