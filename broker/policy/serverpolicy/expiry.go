package serverpolicy

import (
	"sync"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// Tokens have a lifetime: a session authenticated by a token ends when the
// token expires (plus the policy's leeway), with advice to handshake again,
// unless its client sends a fresh token before then. A fresh token rides in
// the ext of a /meta/connect, as at handshake:
//
//	{"channel":"/meta/connect", ..., "ext":{"auth":{"token":"<JWT>"}}}
//
// It must verify and name the same subject; the session's identity (groups,
// claims) and expiry are then replaced. The connect's reply says what holds:
// ext.auth.expires (Unix seconds) when the session has an expiry, and
// ext.auth.error when the token sent with that connect was refused (the
// session keeps its old expiry). A session handed over to another broker
// keeps its expiry there.

// ErrTokenExpired ends a session whose token expired.
var ErrTokenExpired = &server.DisconnectReason{Code: "token_expired", Reconnect: bayeux.ReconnectHandshake}

// Refusals of a refresh token, in the reply's ext.auth.error.
const (
	RefreshInvalid       = "invalid_token"
	RefreshOtherSubject  = "subject_changed"
	RefreshNotAuthorized = "handshake_denied"
)

// expiries ends sessions when their tokens expire.
type expiries struct {
	mu      sync.Mutex
	timers  map[*server.ServerSession]*time.Timer
	refused map[*server.ServerSession]string // a refresh refused, until the reply says so
	leeway  func() time.Duration
}

// schedule (re)arms ss's expiry from its identity.
func (e *expiries) schedule(ss *server.ServerSession, id policy.Identity) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.timers[ss]; t != nil {
		t.Stop()
		delete(e.timers, ss)
	}
	if id.Expires.IsZero() || ss.IsLocal() {
		return
	}
	select {
	case <-ss.Done():
		return // it ended: SessionRemoved has run or will find nothing
	default:
	}
	e.timers[ss] = time.AfterFunc(time.Until(id.Expires)+e.leeway(), func() { ss.DisconnectWith(ErrTokenExpired) })
}

func (e *expiries) forget(ss *server.ServerSession) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.timers[ss]; t != nil {
		t.Stop()
	}
	delete(e.timers, ss)
	delete(e.refused, ss)
}

func (e *expiries) refuse(ss *server.ServerSession, why string) {
	e.mu.Lock()
	e.refused[ss] = why
	e.mu.Unlock()
}

func (e *expiries) takeRefusal(ss *server.ServerSession) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	why := e.refused[ss]
	delete(e.refused, ss)
	return why
}

// tokenRefresh is the server extension that takes fresh tokens on
// /meta/connect and reports the expiry in the reply.
type tokenRefresh struct{ s *Security }

// Incoming verifies a token sent with a connect and, when it holds for the
// same subject, makes it the session's identity.
func (r tokenRefresh) Incoming(from *server.ServerSession, m *server.ServerMessage) bool {
	if from == nil || from.IsLocal() || m.Channel() != bayeux.MetaConnect || !hasExt(m.Message(), "auth") {
		return true
	}
	var auth struct {
		Token string `json:"token"`
	}
	if !m.Message().ExtField("auth", &auth) || auth.Token == "" {
		r.s.exp.refuse(from, RefreshInvalid)
		r.s.denied.refreshes.Add(1)
		return true
	}
	p := r.s.src.Policy()
	id, d, err := p.Handshake(auth.Token)
	why := ""
	switch {
	case err != nil:
		why = RefreshInvalid
	case !d.Allowed:
		why = RefreshNotAuthorized
	case id.Subject != IdentityOf(from).Subject:
		why = RefreshOtherSubject
	default:
		from.SetAttribute(IdentityAttribute, id)
		r.s.exp.schedule(from, id)
		r.s.refreshed.Add(1)
		return true
	}
	r.s.exp.refuse(from, why)
	r.s.denied.refreshes.Add(1)
	r.s.logDenial(&r.s.hsLog, "token refresh refused", "session", from.ID(), "reason", why, "policy", p.Version())
	return true
}

// Outgoing adds ext.auth to a connect's reply of a session with an expiry.
func (r tokenRefresh) Outgoing(_, to *server.ServerSession, m *server.ServerMessage) *server.ServerMessage {
	if to == nil || to.IsLocal() || m.Channel() != bayeux.MetaConnect {
		return m
	}
	id := IdentityOf(to)
	why := r.s.exp.takeRefusal(to)
	if id.Expires.IsZero() && why == "" {
		return m
	}
	out := map[string]any{}
	if !id.Expires.IsZero() {
		out["expires"] = id.Expires.Unix()
	}
	if why != "" {
		out["error"] = why
	}
	_ = m.Mutable().SetExtField("auth", out)
	return m
}
