package server

import (
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Extension sees every message entering and leaving the server.
//
// Incoming is called for every message a client sends, before the server acts on
// it; it may change the message through m.Mutable() and returns false to drop it
// (the client gets an unsuccessful reply). from is the sending session (for a
// handshake, the session about to be created).
//
// Outgoing is called for each message about to reach a session: replies and
// published messages. A published message is shared by every recipient: an
// extension that wants to change it must return m.Copy() changed. Returning nil
// drops the message for that recipient.
type Extension interface {
	Incoming(from *ServerSession, m *ServerMessage) bool
	Outgoing(from, to *ServerSession, m *ServerMessage) *ServerMessage
}

// SessionExtension is an Extension bound to one session (added with
// ServerSession.AddExtension). It runs after the server-wide extensions on the
// way in and before them on the way out.
type SessionExtension interface {
	Incoming(session *ServerSession, m *ServerMessage) bool
	Outgoing(session *ServerSession, m *ServerMessage) *ServerMessage
}

func (srv *Server) incoming(from *ServerSession, m *ServerMessage) bool {
	for _, e := range srv.extensionList() {
		if !e.Incoming(from, m) {
			return false
		}
	}
	if from != nil {
		for _, e := range from.extensions() {
			if !e.Incoming(from, m) {
				return false
			}
		}
	}
	return true
}

// outgoing runs session then server extensions; exts are to's session extensions.
func (srv *Server) outgoing(from, to *ServerSession, m *ServerMessage, exts []SessionExtension) *ServerMessage {
	for _, e := range exts {
		if m = e.Outgoing(to, m); m == nil {
			return nil
		}
	}
	for _, e := range srv.extensionList() {
		if m = e.Outgoing(from, to, m); m == nil {
			return nil
		}
	}
	return m
}

// AckExtension implements the Bayeux ack extension: a client that sends
// ext.ack=true in its handshake gets messages only with /meta/connect replies,
// each reply carrying a batch id in ext.ack; the client acknowledges the last
// batch it received in its next connect, and unacknowledged messages are sent
// again, in order, until acknowledged (for example after a dropped connect).
type AckExtension struct{}

// Incoming enables acks on handshake and records acknowledgements on connect.
func (AckExtension) Incoming(from *ServerSession, m *ServerMessage) bool {
	if from == nil {
		return true
	}
	switch m.Channel() {
	case bayeux.MetaHandshake:
		var on bool
		if m.Message().ExtField("ack", &on) && on {
			from.queue.enableAck()
		}
	case bayeux.MetaConnect:
		var batch int64
		if m.Message().ExtField("ack", &batch) {
			from.queue.acknowledge(batch)
		}
	}
	return true
}

// Outgoing confirms ack support in the handshake reply.
func (AckExtension) Outgoing(_, to *ServerSession, m *ServerMessage) *ServerMessage {
	if to != nil && m.Channel() == bayeux.MetaHandshake && m.m.Successful == bayeux.True && to.AckEnabled() {
		_ = m.m.SetExtField("ack", true)
	}
	return m
}

// TimesyncExtension implements the timesync extension: for a handshake or
// connect carrying ext.timesync {tc, l, o}, the reply carries
// {tc, ts, p, a}: the server time ts, the processing time p and the offset a,
// all in milliseconds.
type TimesyncExtension struct {
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

type timesyncIn struct {
	TC int64 `json:"tc"`
	L  int64 `json:"l"`
	O  int64 `json:"o"`
}

type timesyncOut struct {
	TC int64 `json:"tc"`
	TS int64 `json:"ts"`
	P  int64 `json:"p"`
	A  int64 `json:"a"`
}

// Incoming accepts every message.
func (TimesyncExtension) Incoming(*ServerSession, *ServerMessage) bool { return true }

// Outgoing adds the timesync reply to meta replies whose request asked for it.
func (t TimesyncExtension) Outgoing(_, _ *ServerSession, m *ServerMessage) *ServerMessage {
	req := m.associated
	if req == nil || !m.IsMeta() {
		return m
	}
	var in timesyncIn
	if !req.Message().ExtField("timesync", &in) {
		return m
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	n := now()
	ts := n.UnixMilli()
	p := int64(0)
	if !req.receivedAt.IsZero() {
		p = n.Sub(req.receivedAt).Milliseconds()
	}
	_ = m.m.SetExtField("timesync", timesyncOut{TC: in.TC, TS: ts, P: p, A: ts - in.TC - in.L})
	return m
}
