package server

import (
	"encoding/json"
	"errors"
	"sync"
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
	release chan struct{} // closed when a newer connect replaces this one
}

// ackState is the ack extension's per-session bookkeeping.
type ackState struct {
	batch   int64
	unacked []ackEntry
	bytes   int64 // encoded size of unacked, counted against MaxQueueBytes
}

type ackEntry struct {
	batch int64
	msg   *ServerMessage
}

// ServerSession is the server's view of one client session, remote or local.
type ServerSession struct {
	id    string
	srv   *Server
	local *LocalSession

	wake chan struct{} // a token when the queue got non-lazy messages
	done chan struct{} // closed when the session ends

	mu          sync.Mutex
	queue       []*ServerMessage
	queueBytes  int64
	subs        map[*ServerChannel]struct{}
	held        *heldConnect
	ws          *wsConn
	connected   bool
	handshook   bool
	slot        bool // holds one of Config.MaxSessions' slots
	lastActive  time.Time
	reason      error
	attrs       map[string]any
	exts        []SessionExtension
	msgListen   []SessionMessageListener
	rmListen    []SessionRemovedListener
	ack         *ackState
	deliverOnly bool // messages go out only with /meta/connect replies
	lazyTimer   *time.Timer
	lazyGen     uint64 // identifies the current lazyTimer; a stale one does nothing
	lazyDue     bool   // the lazy timer fired: flush lazy messages
	drained     bool   // the drain released the session: answer its connects at once
	browser     string
	connType    string
	userAgent   string
}

func newSession(srv *Server) *ServerSession {
	return &ServerSession{
		id:         newClientID(srv.nodeID),
		srv:        srv,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		lastActive: time.Now(),
	}
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
	return ss.connType
}

// UserAgent is the User-Agent header of the handshake request ("" for local sessions).
func (ss *ServerSession) UserAgent() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.userAgent
}

// SetAttribute stores a value on the session.
func (ss *ServerSession) SetAttribute(name string, v any) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.attrs == nil {
		ss.attrs = map[string]any{}
	}
	ss.attrs[name] = v
}

// Attribute returns a value stored with SetAttribute.
func (ss *ServerSession) Attribute(name string) (any, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	v, ok := ss.attrs[name]
	return v, ok
}

// AddExtension adds a per-session extension.
func (ss *ServerSession) AddExtension(e SessionExtension) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.exts = append(ss.exts, e)
}

func (ss *ServerSession) extensions() []SessionExtension {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.exts
}

// AddMessageListener adds a listener consulted before each message is queued.
func (ss *ServerSession) AddMessageListener(l SessionMessageListener) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.msgListen = append(ss.msgListen, l)
}

// AddRemovedListener adds a listener called when the session ends.
func (ss *ServerSession) AddRemovedListener(l SessionRemovedListener) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.rmListen = append(ss.rmListen, l)
}

// SetMetaConnectDeliveryOnly makes messages go out only with /meta/connect
// replies, as the ack extension requires.
func (ss *ServerSession) SetMetaConnectDeliveryOnly(v bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.deliverOnly = v
}

// Subscriptions returns the channels the session is subscribed to.
func (ss *ServerSession) Subscriptions() []*ServerChannel {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]*ServerChannel, 0, len(ss.subs))
	for c := range ss.subs {
		out = append(out, c)
	}
	return out
}

// wouldSubscribe returns how many channels the session would be subscribed to
// after subscribing to ids.
func (ss *ServerSession) wouldSubscribe(ids []bayeux.ChannelID) int {
	chans := make(map[string]*ServerChannel, len(ids)) // nil: does not exist yet
	for _, id := range ids {
		chans[id.String()] = ss.srv.Channel(id.String())
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := len(ss.subs)
	for _, c := range chans {
		if _, ok := ss.subs[c]; c == nil || !ok {
			n++
		}
	}
	return n
}

// QueueLen is the number of messages waiting for delivery.
func (ss *ServerSession) QueueLen() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.queue)
}

// QueueBytes is the encoded size of the waiting messages.
func (ss *ServerSession) QueueBytes() int64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.queueBytes
}

// Queue returns a snapshot of the waiting messages.
func (ss *ServerSession) Queue() []*ServerMessage {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]*ServerMessage(nil), ss.queue...)
}

// Deliver sends data on channel to this session only, bypassing subscriptions.
// from may be nil (the server).
func (ss *ServerSession) Deliver(from *ServerSession, channel string, data any) error {
	if _, err := bayeux.ParseChannel(channel); err != nil {
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

// deliver runs listeners and outgoing extensions, then queues m (or hands it to a
// local session). It never blocks on the client. It reports whether the session
// accepted the message.
func (ss *ServerSession) deliver(from *ServerSession, m *ServerMessage) bool {
	ss.mu.Lock()
	if ss.reason != nil {
		ss.mu.Unlock()
		return false
	}
	listeners, exts := ss.msgListen, ss.exts
	ss.mu.Unlock()
	for _, l := range listeners {
		if !l(ss, from, m) {
			return false
		}
	}
	if m = ss.srv.outgoing(from, ss, m, exts); m == nil {
		return false
	}
	if ss.local != nil {
		ss.local.dispatch(m)
		return true
	}
	size := m.size()
	ss.mu.Lock()
	if ss.reason != nil {
		ss.mu.Unlock()
		return false
	}
	cfg := &ss.srv.cfg
	pending := ss.queueBytes
	if ss.ack != nil {
		pending += ss.ack.bytes // a client that never acknowledges is a slow consumer too
	}
	if (cfg.MaxQueueBytes > 0 && pending+size > cfg.MaxQueueBytes) ||
		(cfg.MaxQueue > 0 && len(ss.queue) >= cfg.MaxQueue) {
		dropped := len(ss.queue) + 1
		ss.mu.Unlock()
		ss.srv.stats.queueDrops.Add(uint64(dropped))
		ss.srv.removeSession(ss, ErrSlowConsumer)
		return false
	}
	ss.queue = append(ss.queue, m)
	ss.queueBytes += size
	lazy := m.lazy
	if lazy && ss.lazyTimer == nil {
		ss.lazyGen++
		gen := ss.lazyGen
		ss.lazyTimer = time.AfterFunc(cfg.MaxLazyTimeout, func() { ss.lazyFire(gen) })
	}
	ws := ss.ws
	ss.mu.Unlock()
	if !lazy {
		ss.signal(ws)
	}
	return true
}

// releaseForDrain answers the session's held connect and makes its next ones
// return at once.
func (ss *ServerSession) releaseForDrain() {
	ss.mu.Lock()
	ss.drained = true
	ws := ss.ws
	ss.mu.Unlock()
	ss.signal(ws)
}

func (ss *ServerSession) lazyFire(gen uint64) {
	ss.mu.Lock()
	if gen != ss.lazyGen {
		ss.mu.Unlock()
		return // the queue was taken since this timer started
	}
	ss.lazyTimer = nil
	ss.lazyDue = true
	ws := ss.ws
	ss.mu.Unlock()
	ss.signal(ws)
}

// signal wakes whoever waits for the session's messages: a held long-poll, or
// the writer of its websocket (ws, which may be nil).
func (ss *ServerSession) signal(ws *wsConn) {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
	if ws != nil {
		ws.kick()
	}
}

// hasNonLazy reports whether something queued should wake a held connect.
// Lock must be held.
func (ss *ServerSession) hasNonLazyLocked() bool {
	for _, m := range ss.queue {
		if !m.lazy {
			return true
		}
	}
	return false
}

// takeQueue removes and returns every queued message (for direct websocket
// delivery, which ignores the ack extension).
func (ss *ServerSession) takeQueue() []*ServerMessage {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	q := ss.queue
	ss.queue = nil
	ss.queueBytes = 0
	ss.stopLazyLocked()
	return q
}

// requeue puts msgs, taken from the queue but not delivered (their websocket
// write failed), back at the head of the queue, in their order, and wakes
// whoever waits for the session's messages. They are not lost, but they are
// not always first: if the client has meanwhile reconnected and received newer
// messages on another connection, the put-back ones arrive after those. It
// does nothing once the session ended.
func (ss *ServerSession) requeue(msgs []*ServerMessage) {
	ss.mu.Lock()
	if ss.reason != nil {
		ss.mu.Unlock()
		return
	}
	q := make([]*ServerMessage, 0, len(msgs)+len(ss.queue))
	q = append(append(q, msgs...), ss.queue...)
	ss.queue = q
	for _, m := range msgs {
		ss.queueBytes += m.size()
		if m.lazy {
			ss.lazyDue = true // it was due already
		}
	}
	ws := ss.ws
	ss.mu.Unlock()
	ss.signal(ws)
}

// stopLazyLocked forgets the lazy flush: the queue was taken.
// Lock must be held.
func (ss *ServerSession) stopLazyLocked() {
	ss.lazyDue = false
	if ss.lazyTimer != nil {
		ss.lazyTimer.Stop()
		ss.lazyTimer = nil
	}
	ss.lazyGen++
}

// recycle gives back a slice returned by takeQueue once its messages are
// written, so steady traffic does not allocate a queue per message.
func (ss *ServerSession) recycle(q []*ServerMessage) {
	if cap(q) == 0 || cap(q) > 64 {
		return
	}
	clear(q)
	ss.mu.Lock()
	if ss.queue == nil && ss.reason == nil {
		ss.queue = q[:0]
	}
	ss.mu.Unlock()
}

// takeForConnect returns the messages to send with a /meta/connect reply and, for
// sessions using the ack extension, the batch id to send with them (-1 otherwise).
func (ss *ServerSession) takeForConnect() ([]*ServerMessage, int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	q := ss.queue
	ss.queue = nil
	ss.queueBytes = 0
	ss.stopLazyLocked()
	if ss.ack == nil {
		return q, -1
	}
	if len(q) > 0 {
		ss.ack.batch++
		for _, m := range q {
			ss.ack.unacked = append(ss.ack.unacked, ackEntry{ss.ack.batch, m})
			ss.ack.bytes += m.size()
		}
	}
	out := make([]*ServerMessage, len(ss.ack.unacked))
	for i, e := range ss.ack.unacked {
		out[i] = e.msg
	}
	return out, ss.ack.batch
}

// acknowledge drops messages of batches up to and including batch.
func (ss *ServerSession) acknowledge(batch int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ack == nil {
		return
	}
	i := 0
	for i < len(ss.ack.unacked) && ss.ack.unacked[i].batch <= batch {
		ss.ack.bytes -= ss.ack.unacked[i].msg.size()
		i++
	}
	ss.ack.unacked = append(ss.ack.unacked[:0], ss.ack.unacked[i:]...)
}

// Unacknowledged returns how many messages sent with the ack extension wait for
// the client's acknowledgement.
func (ss *ServerSession) Unacknowledged() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ack == nil {
		return 0
	}
	return len(ss.ack.unacked)
}

// AckEnabled reports whether the session negotiated the ack extension.
func (ss *ServerSession) AckEnabled() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.ack != nil
}

func (ss *ServerSession) enableAck() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ack == nil {
		ss.ack = &ackState{}
	}
	ss.deliverOnly = true
}
