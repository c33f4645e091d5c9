package server

import (
	"encoding/json"
	"errors"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// DisconnectReason says why a session ended. Every reason implements error.
type DisconnectReason struct {
	// Code is a short stable name, used in logs and metrics.
	Code string
	// Reconnect is the advice given to a client still polling: "handshake" or "none".
	Reconnect string
}

// Error describes the reason.
func (r *DisconnectReason) Error() string { return "session ended: " + r.Code }

// Disconnect reasons.
var (
	ErrClientDisconnect = &DisconnectReason{Code: "client_disconnect", Reconnect: bayeux.ReconnectNone}
	ErrExpired          = &DisconnectReason{Code: "expired", Reconnect: bayeux.ReconnectHandshake}
	ErrSlowConsumer     = &DisconnectReason{Code: "slow_consumer", Reconnect: bayeux.ReconnectHandshake}
	ErrServerDisconnect = &DisconnectReason{Code: "server_disconnect", Reconnect: bayeux.ReconnectHandshake}
	ErrShutdown         = &DisconnectReason{Code: "shutdown", Reconnect: bayeux.ReconnectHandshake}
)

// ErrSessionClosed is returned by operations on a session that has ended.
var ErrSessionClosed = errors.New("server: session closed")

// SessionMessageListener is called before a message is queued to a session;
// returning false drops it for this session.
type SessionMessageListener func(to, from *ServerSession, m *ServerMessage) bool

// SessionRemovedListener is called once when a session ends.
type SessionRemovedListener func(s *ServerSession, reason error)

// heldConnect is a /meta/connect waiting for messages or its timeout.
type heldConnect struct {
	// release is closed when a newer connect replaces this one; nil until a
	// long-poll waits for it (releaseCh), so that a connect held by a
	// websocket writer, which looks instead of waiting, makes none. Guarded
	// by the session's mu.
	release chan struct{}
}

// closedChan is a closed channel.
var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// releaseCh returns a channel closed once a newer connect replaces hc.
func (ss *ServerSession) releaseCh(hc *heldConnect) <-chan struct{} {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.held != hc {
		return closedChan
	}
	if hc.release == nil {
		hc.release = make(chan struct{})
	}
	return hc.release
}

// connection is all a session knows of the transport connection bound to it
// (a websocket; long-polling binds none): something to wake when the session
// has messages to send or has ended.
type connection interface {
	wake()
}

// connRef boxes a connection for an atomic pointer.
type connRef struct{ c connection }

// clientInfo is what a session remembers of its client's requests.
type clientInfo struct {
	browser   string // BAYEUX_BROWSER cookie of the handshake, "" when absent
	connType  string // transport of the last connect
	userAgent string // User-Agent of the handshake
}

// ServerSession is the server's view of one client session, remote or local.
// Its messages wait in its queue (queue.go); the rest of its state is guarded
// by mu, taken before the queue's lock and the channels' never after them.
type ServerSession struct {
	id    string
	srv   *Server
	local *LocalSession
	queue sessionQueue

	// wakeCh gets a token when a held long-poll should look again; nil until
	// a long-poll first waits (wakeChan), so a websocket session has none.
	wakeCh atomic.Pointer[chan struct{}]
	done   chan struct{} // closed when the session ends
	conn   atomic.Pointer[connRef]

	exts      cowList[SessionExtension]
	msgListen cowList[SessionMessageListener]

	// use is read-held while a batch of the session is processed, and
	// write-held while the session moves in or out (handover.go), so that the
	// two never overlap.
	use sync.RWMutex

	mu        sync.Mutex
	subs      chanSet
	held      *heldConnect
	connected bool
	handshook bool
	slot      bool // holds one of Config.MaxSessions' slots
	drained   bool // the drain released the session: answer its connects at once
	// arriving: the session is moving in (handover.go), closed to requests
	// and holding use until its move completes.
	arriving   bool
	lastActive time.Time
	reason     error
	attrs      map[string]any
	rmListen   []SessionRemovedListener
	client     clientInfo
	// An arriving session's move: how many queued messages its snapshot
	// brought, the timer that gives it up, and its end.
	restored     int
	arrivalTimer *time.Timer
	arrivalDone  chan struct{} // closed when the arrival ends

	// Durable sessions (durable.go): the revision of the session's record,
	// whether the record writer has it to write, and when it last wrote it.
	recRev     atomic.Uint64
	recDirty   atomic.Bool
	recUrgent  atomic.Bool
	recWritten atomic.Int64 // Unix nanoseconds
}

func newSession(srv *Server, id string) *ServerSession {
	ss := &ServerSession{
		id:         id,
		srv:        srv,
		done:       make(chan struct{}),
		lastActive: time.Now(),
	}
	ss.queue = sessionQueue{
		maxMsgs:     srv.cfg.MaxQueue,
		maxBytes:    srv.cfg.MaxQueueBytes,
		lazyTimeout: srv.cfg.MaxLazyTimeout,
		wake:        ss.signal,
	}
	if srv.cfg.Durable != nil {
		ss.queue.durable = true
		ss.queue.advanced = func() { srv.markRecord(ss, false) }
	}
	return ss
}

// ID is the session's clientId.
func (ss *ServerSession) ID() string { return ss.id }

// IsLocal reports whether the session belongs to an in-process LocalSession.
func (ss *ServerSession) IsLocal() bool { return ss.local != nil }

// LocalSession returns the in-process client of a local session, or nil.
func (ss *ServerSession) LocalSession() *LocalSession { return ss.local }

// Done is closed when the session ends.
func (ss *ServerSession) Done() <-chan struct{} { return ss.done }

// Err is nil while the session is alive, then its DisconnectReason.
func (ss *ServerSession) Err() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.reason
}

// IsConnected reports whether the session has completed a /meta/connect and not ended.
func (ss *ServerSession) IsConnected() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.connected && ss.reason == nil
}

// ConnectionType is the transport of the last connect.
func (ss *ServerSession) ConnectionType() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.client.connType
}

// UserAgent is the User-Agent header of the handshake request ("" for local sessions).
func (ss *ServerSession) UserAgent() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.client.userAgent
}

// SetAttribute stores a value on the session. A value that encodes to JSON
// moves with the session (see ServerSession.Snapshot).
func (ss *ServerSession) SetAttribute(name string, v any) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.attrs == nil {
		ss.attrs = map[string]any{}
	}
	ss.attrs[name] = v
	ss.srv.markRecord(ss, true)
}

// Attribute returns a value stored with SetAttribute.
func (ss *ServerSession) Attribute(name string) (any, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	v, ok := ss.attrs[name]
	return v, ok
}

// AddExtension adds a per-session extension.
func (ss *ServerSession) AddExtension(e SessionExtension) { ss.exts.add(e) }

func (ss *ServerSession) extensions() []SessionExtension { return ss.exts.list() }

// AddMessageListener adds a listener consulted before each message is queued.
func (ss *ServerSession) AddMessageListener(l SessionMessageListener) { ss.msgListen.add(l) }

// AddRemovedListener adds a listener called when the session ends.
func (ss *ServerSession) AddRemovedListener(l SessionRemovedListener) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.rmListen = append(ss.rmListen, l)
}

// SetMetaConnectDeliveryOnly makes messages go out only with /meta/connect
// replies, as the ack extension requires.
func (ss *ServerSession) SetMetaConnectDeliveryOnly(v bool) { ss.queue.setDeliverOnly(v) }

// Subscriptions returns the channels the session is subscribed to.
func (ss *ServerSession) Subscriptions() []*ServerChannel {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return slices.AppendSeq(make([]*ServerChannel, 0, ss.subs.len()), ss.subs.all())
}

// addSub records a subscription to c; it reports false once the session ended.
func (ss *ServerSession) addSub(c *ServerChannel) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.reason != nil {
		return false
	}
	ss.subs.add(c)
	ss.srv.markRecord(ss, true)
	return true
}

func (ss *ServerSession) dropSub(c *ServerChannel) {
	ss.mu.Lock()
	ss.subs.remove(c)
	ss.mu.Unlock()
	ss.srv.markRecord(ss, true)
}

// wouldSubscribe returns how many channels the session would be subscribed to
// after subscribing to ids.
func (ss *ServerSession) wouldSubscribe(ids []bayeux.ChannelID) int {
	chans := make(map[string]*ServerChannel, len(ids)) // nil: does not exist yet
	for _, id := range ids {
		chans[id.String()] = ss.srv.hub.channel(id.String())
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := ss.subs.len()
	for _, c := range chans {
		if c == nil || !ss.subs.has(c) {
			n++
		}
	}
	return n
}

// chanSet is the set of channels a session subscribes to. Most sessions
// subscribe to one channel, which it holds without a map (a map of one
// costs 192 bytes); from the second on, it holds them in a map. The zero
// chanSet is empty.
type chanSet struct {
	one  *ServerChannel // the member, while many is nil
	many map[*ServerChannel]struct{}
}

func (s *chanSet) len() int {
	switch {
	case s.many != nil:
		return len(s.many)
	case s.one != nil:
		return 1
	}
	return 0
}

func (s *chanSet) has(c *ServerChannel) bool {
	if s.many != nil {
		_, ok := s.many[c]
		return ok
	}
	return c != nil && c == s.one
}

func (s *chanSet) add(c *ServerChannel) {
	switch {
	case s.many != nil:
		s.many[c] = struct{}{}
	case s.one == nil || s.one == c:
		s.one = c
	default:
		s.many = map[*ServerChannel]struct{}{s.one: {}, c: {}}
		s.one = nil
	}
}

func (s *chanSet) remove(c *ServerChannel) {
	switch {
	case s.many != nil:
		delete(s.many, c)
	case s.one == c:
		s.one = nil
	}
}

// all yields the members, in no particular order.
func (s *chanSet) all() iter.Seq[*ServerChannel] {
	return func(yield func(*ServerChannel) bool) {
		if s.many == nil {
			if s.one != nil {
				yield(s.one)
			}
			return
		}
		for c := range s.many {
			if !yield(c) {
				return
			}
		}
	}
}

// QueueLen is the number of messages waiting for delivery.
func (ss *ServerSession) QueueLen() int { return ss.queue.len() }

// QueueBytes is the encoded size of the waiting messages.
func (ss *ServerSession) QueueBytes() int64 { return ss.queue.size() }

// Queue returns a snapshot of the waiting messages.
func (ss *ServerSession) Queue() []*ServerMessage { return ss.queue.snapshotMessages() }

// Unacknowledged returns how many messages sent with the ack extension wait for
// the client's acknowledgement.
func (ss *ServerSession) Unacknowledged() int { return ss.queue.unacknowledged() }

// AckEnabled reports whether the session negotiated the ack extension.
func (ss *ServerSession) AckEnabled() bool { return ss.queue.ackEnabled() }

// Deliver sends data on channel to this session only, bypassing subscriptions.
// from may be nil (the server).
func (ss *ServerSession) Deliver(from *ServerSession, channel string, data any) error {
	if _, err := bayeux.ParsePlainChannel(channel); err != nil {
		return err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	m := NewServerMessage(&bayeux.Mutable{Channel: channel, Data: raw})
	if ss.deliver(from, m) {
		return nil
	}
	return ErrSessionClosed
}

// Disconnect ends the session from the server side; a client still polling is
// told to handshake again.
func (ss *ServerSession) Disconnect() { ss.srv.removeSession(ss, ErrServerDisconnect) }

// DisconnectWith ends the session from the server side for reason, whose
// Code names it in logs and whose Reconnect advice a client still polling
// gets.
func (ss *ServerSession) DisconnectWith(reason *DisconnectReason) { ss.srv.removeSession(ss, reason) }

// deliver runs listeners and outgoing extensions, then queues m (or hands it to
// a local session). It never blocks on the client, and takes no session lock.
// It reports whether the session accepted the message.
func (ss *ServerSession) deliver(from *ServerSession, m *ServerMessage) bool {
	if closed(ss.done) {
		return false
	}
	for _, l := range ss.msgListen.list() {
		if !l(ss, from, m) {
			return false
		}
	}
	if m = ss.srv.outgoing(from, ss, m, ss.exts.list()); m == nil {
		return false
	}
	if ss.local != nil {
		ss.local.dispatch(m)
		return true
	}
	switch ss.queue.push(m) {
	case pushed:
		return true
	case pushFull:
		ss.srv.stats.queueDrops.Add(uint64(ss.queue.len() + 1))
		ss.srv.removeSession(ss, ErrSlowConsumer)
	}
	return false
}

// releaseForDrain answers the session's held connect and makes its next ones
// return at once.
func (ss *ServerSession) releaseForDrain() {
	ss.mu.Lock()
	ss.drained = true
	ss.mu.Unlock()
	ss.signal()
}

// signal wakes whoever waits for the session: a held long-poll, or the writer
// of its bound connection.
func (ss *ServerSession) signal() {
	if ch := ss.wakeCh.Load(); ch != nil {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
	if r := ss.conn.Load(); r != nil {
		r.c.wake()
	}
}

// wakeChan returns the channel that gets a token when a held long-poll
// should look again; a signal before it was made is not in it, so the
// waiter looks once it has it.
func (ss *ServerSession) wakeChan() <-chan struct{} {
	if ch := ss.wakeCh.Load(); ch != nil {
		return *ch
	}
	ch := make(chan struct{}, 1)
	if !ss.wakeCh.CompareAndSwap(nil, &ch) {
		return *ss.wakeCh.Load()
	}
	return ch
}

// bind makes c the session's connection (a handshake or connect arrived on it).
func (ss *ServerSession) bind(c connection) { ss.conn.Store(&connRef{c}) }

// unbind forgets c if it is still the session's connection; the session's
// expiry clock starts again then.
func (ss *ServerSession) unbind(c connection) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if r := ss.conn.Load(); r != nil && r.c == c {
		ss.conn.Store(nil)
		ss.lastActive = time.Now()
	}
}

// boundTo reports whether c is the session's connection.
func (ss *ServerSession) boundTo(c connection) bool {
	r := ss.conn.Load()
	return r != nil && r.c == c
}

// freeze starts a move out: it writes the session out and freezes its queue
// in one instant. The caller holds use.
func (ss *ServerSession) freeze() (SessionSnapshot, map[*ServerMessage]struct{}, error) {
	snap, kept, _, err := ss.snapshot(true, true)
	return snap, kept, err
}

// thaw undoes freeze when the move failed: the session goes on here.
func (ss *ServerSession) thaw() { ss.queue.thaw() }

func (ss *ServerSession) isArriving() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.arriving
}

// arrive opens an arriving session with the tail its old node collected; it
// reports false when the session is not arriving (its move was aborted).
func (ss *ServerSession) arrive(tail []*ServerMessage) bool {
	ss.mu.Lock()
	if !ss.arriving || ss.reason != nil {
		ss.mu.Unlock()
		return false
	}
	restored := ss.restored
	ss.mu.Unlock()
	ss.queue.arrive(restored, tail)
	ss.endArrival()
	return true
}

// endArrival opens the session to requests: its move is complete, or was
// given up (and the session ended).
func (ss *ServerSession) endArrival() {
	ss.mu.Lock()
	was := ss.arriving
	ss.arriving = false
	if ss.arrivalTimer != nil {
		ss.arrivalTimer.Stop()
		ss.arrivalTimer = nil
	}
	if was && ss.arrivalDone != nil {
		close(ss.arrivalDone)
	}
	ss.mu.Unlock()
	if was {
		ss.use.Unlock()
	}
}

// ended reports whether a held connect must be answered whatever the queue
// holds: the session ended, a newer connect replaced hc, or a drain released
// the session.
func (ss *ServerSession) heldEnded(hc *heldConnect) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.reason != nil || ss.held != hc || ss.drained
}
