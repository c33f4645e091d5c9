// Package serverpolicy enforces a broker/policy document in a broker/server
// Server: it is the server's SecurityPolicy, backed by the policy a Watcher
// keeps in force, and it removes the subscriptions a reloaded policy forbids.
//
// It lives apart from broker/policy so that the operator, which imports
// broker/policy for the document format, does not pull in the Bayeux server.
package serverpolicy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// IdentityAttribute is the session attribute holding the session's
// policy.Identity, set at handshake.
const IdentityAttribute = "cometd.policy.identity"

// Source yields the policy in force; *policy.Watcher is one.
type Source interface {
	Policy() *policy.Policy
}

// Config configures a Security.
type Config struct {
	// Source yields the policy in force. Required.
	Source Source
	// Logger receives denials (at Info, at most 10 lines a second of each
	// kind) and revocations. Nil means slog.Default().
	Logger *slog.Logger
}

// Security is a server.SecurityPolicy enforcing the policy of its Source. A
// channel operation must be allowed by the policy and by the channel's
// authorizers (server.Server.Authorize), so server-side authorizers still
// apply. Local (in-process) sessions are always allowed.
type Security struct {
	src Source
	log *slog.Logger

	denied       denialCounters
	hsLog, opLog logLimiter // denial lines (ratelog.go)
	exp          *expiries  // token lifetimes (expiry.go)
	refreshed    atomic.Uint64
}

var _ server.SecurityPolicy = (*Security)(nil)

// New returns a Security.
func New(cfg Config) (*Security, error) {
	if cfg.Source == nil {
		return nil, errors.New("serverpolicy: no policy source")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Security{src: cfg.Source, log: cfg.Logger}
	s.exp = &expiries{timers: map[*server.ServerSession]*time.Timer{}, refused: map[*server.ServerSession]string{},
		leeway: func() time.Duration { return s.src.Policy().Leeway() }}
	return s, nil
}

// Stats returns the denial counters.
func (s *Security) Stats() Stats {
	return Stats{
		HandshakesDenied: s.denied.handshakes.Load(),
		OperationsDenied: s.denied.operations.Load(),
		LogsSuppressed:   s.denied.suppressed.Load(),
		TokensRefreshed:  s.refreshed.Load(),
		RefreshesDenied:  s.denied.refreshes.Load(),
		TokensExpired:    s.denied.expired.Load(),
	}
}

// logDenial counts a denial and logs it unless the rate limit says not.
func (s *Security) logDenial(l *logLimiter, msg string, args ...any) {
	ok, left := l.allow()
	if !ok {
		s.denied.suppressed.Add(1)
		return
	}
	if left > 0 {
		args = append(args, "suppressed", left)
	}
	s.log.Info(msg, args...)
}

// IdentityOf returns the identity stored on a session at handshake, or
// policy.Anonymous when there is none.
func IdentityOf(ss *server.ServerSession) policy.Identity {
	if v, ok := ss.Attribute(IdentityAttribute); ok {
		if id, ok := v.(policy.Identity); ok {
			return id
		}
	}
	return policy.Anonymous
}

// DecodeIdentity rebuilds the identity attribute of a moved session from its
// snapshot (register it with Server.RegisterAttribute under
// IdentityAttribute), so that the session keeps its authority on the node it
// moved to. Claims keep their numbers as json.Number, as at handshake.
func DecodeIdentity(raw json.RawMessage) (any, error) {
	var id policy.Identity
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&id); err != nil {
		return nil, fmt.Errorf("serverpolicy: identity attribute: %w", err)
	}
	return id, nil
}

// CanHandshake reads the token in ext.auth.token, verifies it and applies the
// handshake rules; the identity is stored on the session. A refusal makes the
// server answer 403::handshake_denied with reconnect "none". A handshake whose
// ext.auth is present but has no string token is refused, rather than treated
// as anonymous.
func (s *Security) CanHandshake(_ *server.Server, ss *server.ServerSession, m *server.ServerMessage) bool {
	if ss.IsLocal() {
		return true
	}
	p := s.src.Policy()
	var auth struct {
		Token *string `json:"token"`
	}
	token := ""
	if present := hasExt(m.Message(), "auth"); present {
		if !m.Message().ExtField("auth", &auth) || auth.Token == nil || *auth.Token == "" {
			s.denied.handshakes.Add(1)
			s.logDenial(&s.hsLog, "handshake denied", "reason", "ext.auth without a token", "policy", p.Version())
			return false
		}
		token = *auth.Token
	}
	id, d, err := p.Handshake(token)
	if err != nil || !d.Allowed {
		s.denied.handshakes.Add(1)
		s.logDenial(&s.hsLog, "handshake denied", "reason", d.Reason, "rule", d.Rule, "source", d.Source, "policy", p.Version())
		return false
	}
	ss.SetAttribute(IdentityAttribute, id)
	return true
}

func hasExt(m bayeux.Message, key string) bool {
	var raw any
	return m.ExtField(key, &raw)
}

// CanCreate applies the create action.
func (s *Security) CanCreate(srv *server.Server, ss *server.ServerSession, ch bayeux.ChannelID, m *server.ServerMessage) bool {
	return s.check(srv, ss, ch, m, policy.ActionCreate, server.OpCreate)
}

// CanSubscribe applies the subscribe action.
func (s *Security) CanSubscribe(srv *server.Server, ss *server.ServerSession, ch bayeux.ChannelID, m *server.ServerMessage) bool {
	return s.check(srv, ss, ch, m, policy.ActionSubscribe, server.OpSubscribe)
}

// CanPublish applies the publish action.
func (s *Security) CanPublish(srv *server.Server, ss *server.ServerSession, ch bayeux.ChannelID, m *server.ServerMessage) bool {
	return s.check(srv, ss, ch, m, policy.ActionPublish, server.OpPublish)
}

func (s *Security) check(srv *server.Server, ss *server.ServerSession, ch bayeux.ChannelID, m *server.ServerMessage, act policy.Action, op server.Operation) bool {
	if ss == nil || ss.IsLocal() {
		return true
	}
	p := s.src.Policy()
	if d := p.Evaluate(IdentityOf(ss), act, ch.String()); !d.Allowed {
		s.denied.operations.Add(1)
		s.logDenial(&s.opLog, "operation denied", "session", ss.ID(), "action", string(act), "channel", ch.String(),
			"reason", d.Reason, "rule", d.Rule, "source", d.Source, "policy", p.Version())
		return false
	}
	return srv.Authorize(op, ch, ss, m)
}

// Revoked is a subscription, or a whole session, removed because the policy
// no longer allows it.
type Revoked struct {
	Session *server.ServerSession
	// Channel is the revoked subscription; empty when the session was
	// disconnected because its identity may no longer handshake.
	Channel  string
	Decision policy.Decision
}

// Recheck applies p to the remote sessions of srv: a session whose identity p
// no longer lets handshake is disconnected (its client is told to handshake
// again, and is then refused with 403::handshake_denied); a session that stays
// is unsubscribed from the channels p no longer lets it subscribe to. It
// returns what it removed.
func (s *Security) Recheck(srv *server.Server, p *policy.Policy) []Revoked {
	var out []Revoked
	for _, ss := range srv.Sessions() {
		if ss.IsLocal() {
			continue
		}
		id := IdentityOf(ss)
		if d := p.Evaluate(id, policy.ActionHandshake, ""); !d.Allowed {
			ss.Disconnect()
			out = append(out, Revoked{Session: ss, Decision: d})
			s.log.Info("session disconnected by policy", "session", ss.ID(),
				"reason", d.Reason, "rule", d.Rule, "source", d.Source, "policy", p.Version())
			continue
		}
		for _, c := range ss.Subscriptions() {
			d := p.Evaluate(id, policy.ActionSubscribe, c.Name())
			if d.Allowed {
				continue
			}
			c.Unsubscribe(ss)
			out = append(out, Revoked{Session: ss, Channel: c.Name(), Decision: d})
			s.log.Info("subscription revoked", "session", ss.ID(), "channel", c.Name(),
				"reason", d.Reason, "rule", d.Rule, "source", d.Source, "policy", p.Version())
		}
	}
	return out
}

// NoticeChannel is where a client is told that a subscription was revoked. The
// notice is delivered to the session alone (no subscription needed: a CometD
// client sees it with addListener), with data
// {"subscription": "/chat/x", "error": "403::subscription_revoked",
// "reason": "denied by default", "policyVersion": "..."}.
const NoticeChannel = "/service/policy/revoked"

// ErrSubscriptionRevoked is the error string of a revocation notice.
const ErrSubscriptionRevoked = "403::subscription_revoked"

// Notice is the data of a revocation notice.
type Notice struct {
	Subscription  string `json:"subscription"`
	Error         string `json:"error"`
	Reason        string `json:"reason"`
	PolicyVersion string `json:"policyVersion"`
}

// Attach makes every reload of w Recheck srv: each subscription the new policy
// forbids is removed and its session gets a notice on NoticeChannel; sessions
// that may still handshake survive the reload, the others are disconnected.
// onRevoke, when not nil, is then called for each (on the watcher's goroutine).
// It also registers DecodeIdentity with srv, so that a session restored from
// a snapshot keeps its identity.
func (s *Security) Attach(w *policy.Watcher, srv *server.Server, onRevoke func(Revoked)) {
	srv.RegisterAttribute(IdentityAttribute, DecodeIdentity)
	srv.AddExtension(tokenRefresh{s})
	srv.AddListener(server.ServerListener{
		// Handshaken and handed-over sessions alike: both carry their identity.
		SessionAdded: func(ss *server.ServerSession, _ *server.ServerMessage) { s.exp.schedule(ss, IdentityOf(ss)) },
		SessionRemoved: func(ss *server.ServerSession, reason error) {
			s.exp.forget(ss)
			if reason == ErrTokenExpired {
				s.denied.expired.Add(1)
			}
		},
	})
	w.OnReload(func(_, p *policy.Policy) {
		for _, r := range s.Recheck(srv, p) {
			if r.Channel == "" {
				if onRevoke != nil {
					onRevoke(r)
				}
				continue
			}
			// A session that ended meanwhile has no one to tell.
			_ = r.Session.Deliver(nil, NoticeChannel, Notice{
				Subscription: r.Channel, Error: ErrSubscriptionRevoked,
				Reason: r.Decision.Reason, PolicyVersion: p.Version(),
			})
			if onRevoke != nil {
				onRevoke(r)
			}
		}
	})
}
