package server

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// broadcastEncodes counts encodings of non-meta messages; tests use it to prove
// that one publish is encoded once however many subscribers receive it.
var broadcastEncodes atomic.Uint64

// ServerMessage is a message as the server handles it: the wire fields, whether it
// is lazy, the request it answers (for replies), and its encoded form, computed
// once and shared by every recipient.
type ServerMessage struct {
	m          *bayeux.Mutable
	lazy       bool
	associated *ServerMessage
	receivedAt time.Time
	uid        msgID  // the message's ID across the cluster; zero when not published
	seq        uint64 // its sequence in the durable stream; 0 when not stored (durable.go)

	once    sync.Once
	encoded []byte
}

// NewServerMessage wraps m. m must not be changed once Encoded has been called.
func NewServerMessage(m *bayeux.Mutable) *ServerMessage {
	return &ServerMessage{m: m}
}

// newEncodedMessage wraps a message whose encoding is already known (received
// from the backbone).
func newEncodedMessage(m *bayeux.Mutable, encoded []byte) *ServerMessage {
	sm := &ServerMessage{m: m, encoded: encoded}
	sm.once.Do(func() {})
	return sm
}

// Message returns the read-only view of the message.
func (sm *ServerMessage) Message() bayeux.Message { return sm.m.View() }

// Mutable returns the changeable message. Only extensions and listeners that are
// documented as allowed to change a message may use it, and never after the
// message has been queued to a session.
func (sm *ServerMessage) Mutable() *bayeux.Mutable { return sm.m }

// Channel is the message's channel.
func (sm *ServerMessage) Channel() string { return sm.m.Channel }

// Data is the raw JSON data.
func (sm *ServerMessage) Data() json.RawMessage { return sm.m.Data }

// ClientID is the clientId field.
func (sm *ServerMessage) ClientID() string { return sm.m.ClientID }

// ID is the id field.
func (sm *ServerMessage) ID() string { return sm.m.ID }

// IsMeta reports whether the message is on a /meta/ channel.
func (sm *ServerMessage) IsMeta() bool { return bayeux.IsMeta(sm.m.Channel) }

// IsLazy reports whether delivery may wait for the next flush (up to MaxLazyTimeout).
func (sm *ServerMessage) IsLazy() bool { return sm.lazy }

// SetLazy marks the message lazy. Call it before the message is published.
func (sm *ServerMessage) SetLazy(lazy bool) { sm.lazy = lazy }

// Associated is the request a reply answers, or nil.
func (sm *ServerMessage) Associated() *ServerMessage { return sm.associated }

// ReceivedAt is when the server read the message from the network (zero for
// messages created on the server).
func (sm *ServerMessage) ReceivedAt() time.Time { return sm.receivedAt }

// Copy returns an unshared copy of the message that may be changed.
func (sm *ServerMessage) Copy() *ServerMessage {
	return &ServerMessage{m: sm.m.Clone(), lazy: sm.lazy, associated: sm.associated, receivedAt: sm.receivedAt}
}

// Encoded returns the JSON encoding of the message, computed on the first call and
// shared afterwards. The result must not be modified.
func (sm *ServerMessage) Encoded() []byte {
	sm.once.Do(func() {
		sm.encoded = sm.m.AppendJSON(make([]byte, 0, 128+len(sm.m.Data)))
		if !bayeux.IsMeta(sm.m.Channel) {
			broadcastEncodes.Add(1)
		}
	})
	return sm.encoded
}

// size is the queue accounting size of the message.
func (sm *ServerMessage) size() int64 { return int64(len(sm.Encoded())) }
