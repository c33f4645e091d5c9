package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// SessionSnapshot is one session written out: what another node needs to
// rebuild it so that its client sees no difference. It carries the clientId,
// the subscriptions, the queue in order, the ack extension's unacknowledged
// batches with their batch ids, what the session remembers of its client, and
// the attributes (the security policy's identity among them). It encodes to
// JSON, so it can cross the backbone.
//
// Code is not state: per-session extensions and listeners added with
// AddExtension, AddMessageListener and AddRemovedListener stay behind; the
// restoring node's own server-wide extensions and listeners apply.
type SessionSnapshot struct {
	ID             string                     `json:"id"`
	Subscriptions  []string                   `json:"subscriptions,omitempty"`
	Queue          []QueuedMessage            `json:"queue,omitempty"`
	Ack            *AckSnapshot               `json:"ack,omitempty"`
	DeliverOnly    bool                       `json:"deliverOnly,omitempty"`
	Connected      bool                       `json:"connected,omitempty"`
	ConnectionType string                     `json:"connectionType,omitempty"`
	UserAgent      string                     `json:"userAgent,omitempty"`
	Browser        string                     `json:"browser,omitempty"`
	Attributes     map[string]json.RawMessage `json:"attributes,omitempty"`
	// Record is the revision of the session's durable record (durable.go)
	// the adopting node writes over; 0 without durability.
	Record uint64 `json:"record,omitempty"`
}

// QueuedMessage is a message waiting in a session's queue, encoded as it
// will be sent.
type QueuedMessage struct {
	Message json.RawMessage `json:"message"`
	Lazy    bool            `json:"lazy,omitempty"`
	// ID identifies a published message across the cluster, so that a node
	// the session moves to keeps one copy of a message it also received
	// itself.
	ID string `json:"uid,omitempty"`
}

// AckSnapshot is the ack extension's state: the id of the last batch sent and
// the messages of the batches the client has not acknowledged, oldest first.
type AckSnapshot struct {
	Batch   int64          `json:"batch"`
	Unacked []AckedMessage `json:"unacked,omitempty"`
}

// AckedMessage is a message sent in batch Batch and not yet acknowledged.
type AckedMessage struct {
	Batch   int64           `json:"batch"`
	Message json.RawMessage `json:"message"`
	ID      string          `json:"uid,omitempty"`
}

// AttributeDecoder rebuilds an attribute's value from the JSON its snapshot
// holds. Attributes without one come back as json.RawMessage.
type AttributeDecoder func(raw json.RawMessage) (any, error)

// RegisterAttribute makes RestoreSession rebuild the attribute name with
// decode, so that its value has the type its users expect.
func (s *Server) RegisterAttribute(name string, decode AttributeDecoder) {
	s.attrTypes.Store(name, decode)
}

// Errors of Snapshot and RestoreSession.
var (
	ErrLocalSession = errors.New("server: a local session cannot move")
	ErrDraining     = errors.New("server: the node is draining")
	ErrFull         = errors.New("server: the node has no room for another session (Config.MaxSessions)")
)

// Snapshot writes the session out, consistently: nothing is queued, taken or
// acknowledged while it runs. It fails for a session that ended, a local
// session, and an attribute that does not encode to JSON. The session goes on
// as before: moving it is the caller's business (stop it from being served,
// restore the snapshot elsewhere, then end it here).
func (ss *ServerSession) Snapshot() (SessionSnapshot, error) {
	snap, _, _, err := ss.snapshot(false, true)
	return snap, err
}

// snapshot writes the session out and, with freeze, freezes its queue in the
// same instant (see handover.go); it also returns the queued messages the
// snapshot holds and the session's durable position (durable.go). Without
// messages, it leaves the queue and the unacknowledged messages out (a
// durable record's form).
func (ss *ServerSession) snapshot(freeze, messages bool) (SessionSnapshot, map[*ServerMessage]struct{}, uint64, error) {
	if ss.local != nil {
		return SessionSnapshot{}, nil, 0, ErrLocalSession
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.reason != nil || ss.arriving {
		return SessionSnapshot{}, nil, 0, ErrSessionClosed
	}
	snap := SessionSnapshot{
		ID:             ss.id,
		Connected:      ss.connected,
		ConnectionType: ss.client.connType,
		UserAgent:      ss.client.userAgent,
		Browser:        ss.client.browser,
	}
	for c := range ss.subs.all() {
		snap.Subscriptions = append(snap.Subscriptions, c.Name())
	}
	slices.Sort(snap.Subscriptions)
	for name, v := range ss.attrs {
		raw, err := json.Marshal(v)
		if err != nil {
			return SessionSnapshot{}, nil, 0, fmt.Errorf("server: attribute %q of session %s does not encode: %w", name, ss.id, err)
		}
		if snap.Attributes == nil {
			snap.Attributes = map[string]json.RawMessage{}
		}
		snap.Attributes[name] = raw
	}
	q := &ss.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	snap.DeliverOnly = q.deliverOnly
	snap.Record = ss.recRev.Load()
	pos := q.positionLocked()
	if a := q.ack; a != nil {
		snap.Ack = &AckSnapshot{Batch: a.batch}
	}
	if !messages {
		return snap, nil, pos, nil
	}
	kept := make(map[*ServerMessage]struct{}, len(q.msgs))
	for _, m := range q.msgs {
		snap.Queue = append(snap.Queue, queuedMessage(m))
		kept[m] = struct{}{}
	}
	if a := q.ack; a != nil {
		for _, e := range a.unacked {
			snap.Ack.Unacked = append(snap.Ack.Unacked, AckedMessage{Batch: e.batch, Message: e.msg.Encoded(), ID: e.msg.uid.String()})
		}
	}
	if freeze {
		q.frozen = true
	}
	return snap, kept, pos, nil
}

// RestoreSession rebuilds a session from its snapshot on this node: same
// clientId, subscriptions (with this node's backbone interest in place when it
// returns), queue, ack batches and attributes. The client's next request
// finds it as if nothing happened. The security policy is not asked again:
// the node that wrote the snapshot admitted the session and its
// subscriptions. It fails while the node drains, when Config.MaxSessions
// sessions are live (ErrFull), when a session with the ID exists, and for a
// snapshot that does not decode; nothing is left behind then.
func (s *Server) RestoreSession(snap SessionSnapshot) (*ServerSession, error) {
	return s.restoreSession(snap, false)
}

// restoreSession restores snap; an arriving session (a handover's) stays
// closed to requests, with its use lock held, until arrive or endArrival.
func (s *Server) restoreSession(snap SessionSnapshot, arriving bool) (*ServerSession, error) {
	if OwnerOf(snap.ID) == "" {
		return nil, fmt.Errorf("server: snapshot clientId %q names no node", snap.ID)
	}
	if s.draining.Load() {
		return nil, ErrDraining
	}
	ids := make([]bayeux.ChannelID, 0, len(snap.Subscriptions))
	for _, name := range snap.Subscriptions {
		id, err := bayeux.ParseChannel(name)
		if err != nil {
			return nil, fmt.Errorf("server: snapshot subscription %q: %w", name, err)
		}
		ids = append(ids, id)
	}
	queue, err := decodeQueued("snapshot queue", snap.Queue)
	if err != nil {
		return nil, err
	}
	var ack *ackState
	if a := snap.Ack; a != nil {
		ack = &ackState{batch: a.Batch}
		for i, e := range a.Unacked {
			if e.Batch > a.Batch || i > 0 && e.Batch < a.Unacked[i-1].Batch {
				return nil, fmt.Errorf("server: snapshot unacknowledged message %d has batch %d out of order", i, e.Batch)
			}
			m, err := decodeSnapshotMessage(e.Message, e.ID)
			if err != nil {
				return nil, fmt.Errorf("server: snapshot unacknowledged message %d: %w", i, err)
			}
			ack.unacked = append(ack.unacked, ackEntry{batch: e.Batch, msg: m})
			ack.bytes += m.size()
		}
	}
	attrs := make(map[string]any, len(snap.Attributes))
	for name, raw := range snap.Attributes {
		var v any = raw
		if d, ok := s.attrTypes.Load(name); ok {
			var err error
			if v, err = d.(AttributeDecoder)(raw); err != nil {
				return nil, fmt.Errorf("server: snapshot attribute %q: %w", name, err)
			}
		}
		attrs[name] = v
	}
	if !s.takeSlot() {
		return nil, ErrFull
	}
	ss := newSession(s, snap.ID)
	ss.recRev.Store(snap.Record)
	ss.slot = s.cfg.MaxSessions > 0
	ss.connected = snap.Connected
	ss.client = clientInfo{browser: snap.Browser, connType: snap.ConnectionType, userAgent: snap.UserAgent}
	if len(attrs) > 0 {
		ss.attrs = attrs
	}
	q := &ss.queue
	q.msgs = queue
	for _, m := range queue {
		q.bytes += m.size()
		if m.lazy {
			q.lazyDue = true // it waited on the other node already
		}
	}
	q.deliverOnly = snap.DeliverOnly
	q.ack = ack
	if arriving {
		ss.use.Lock()
		ss.arriving = true
		ss.arrivalDone = make(chan struct{})
		ss.restored = len(queue)
	}
	fail := func(err error) (*ServerSession, error) {
		if arriving {
			ss.endArrival()
		}
		return nil, err
	}
	if err := s.addSession(ss, nil); err != nil {
		s.giveBackSlot(ss)
		return fail(err)
	}
	for _, id := range ids {
		if err := s.hub.subscribe(s, ss, id, nil); err != nil {
			s.removeSession(ss, ErrServerDisconnect)
			return fail(fmt.Errorf("server: restoring subscription %s: %w", id, err))
		}
	}
	if arriving {
		ss.mu.Lock()
		ss.arrivalTimer = time.AfterFunc(2*s.cfg.HandoverTimeout, func() { s.abortArrival(ss.id) })
		ss.mu.Unlock()
	}
	ss.mu.Lock()
	ss.lastActive = time.Now()
	ss.mu.Unlock()
	if len(queue) > 0 {
		ss.signal()
	}
	return ss, nil
}

// queuedMessage writes a queued message out.
func queuedMessage(m *ServerMessage) QueuedMessage {
	return QueuedMessage{Message: m.Encoded(), Lazy: m.lazy, ID: m.uid.String()}
}

// decodeQueued rebuilds queued messages, the i-th error naming what.
func decodeQueued(what string, qms []QueuedMessage) ([]*ServerMessage, error) {
	out := make([]*ServerMessage, 0, len(qms))
	for i, qm := range qms {
		m, err := decodeSnapshotMessage(qm.Message, qm.ID)
		if err != nil {
			return nil, fmt.Errorf("server: %s message %d: %w", what, i, err)
		}
		m.lazy = qm.Lazy
		out = append(out, m)
	}
	return out, nil
}

// decodeSnapshotMessage rebuilds a message with its ID from its encoded
// form, which it keeps, so it is sent byte for byte as the other node would
// have.
func decodeSnapshotMessage(raw json.RawMessage, id string) (*ServerMessage, error) {
	raw = bytes.TrimSpace(raw)
	m, err := bayeux.Decode(raw)
	if err != nil {
		return nil, err
	}
	sm := newEncodedMessage(m, raw)
	sm.uid = parseMsgID(id)
	return sm, nil
}
