package server

import (
	"strings"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// SecurityPolicy decides whether a session may handshake, create a channel,
// subscribe or publish. Implementations must be safe for concurrent use.
type SecurityPolicy interface {
	// CanHandshake is asked before a session is created; session is the
	// not-yet-registered session and m the handshake request.
	CanHandshake(srv *Server, session *ServerSession, m *ServerMessage) bool
	// CanCreate is asked before a channel that does not exist is created.
	CanCreate(srv *Server, session *ServerSession, channel bayeux.ChannelID, m *ServerMessage) bool
	// CanSubscribe is asked for each channel of a /meta/subscribe.
	CanSubscribe(srv *Server, session *ServerSession, channel bayeux.ChannelID, m *ServerMessage) bool
	// CanPublish is asked for each publish by a client.
	CanPublish(srv *Server, session *ServerSession, channel bayeux.ChannelID, m *ServerMessage) bool
}

// Operation is what an Authorizer is asked about.
type Operation int

// Operations.
const (
	OpCreate Operation = iota
	OpSubscribe
	OpPublish
)

// String names the operation.
func (o Operation) String() string {
	switch o {
	case OpCreate:
		return "create"
	case OpSubscribe:
		return "subscribe"
	case OpPublish:
		return "publish"
	}
	return "unknown"
}

// Result is an Authorizer's answer.
type Result int

// Results.
const (
	// Ignore abstains.
	Ignore Result = iota
	// Grant allows the operation unless another authorizer denies it.
	Grant
	// Deny refuses the operation whatever the others say.
	Deny
)

// Authorizer answers for operations on the channel it is added to and, when that
// channel is a wildcard, on every channel it matches.
type Authorizer interface {
	Authorize(op Operation, channel bayeux.ChannelID, session *ServerSession, m *ServerMessage) Result
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(op Operation, channel bayeux.ChannelID, session *ServerSession, m *ServerMessage) Result

// Authorize calls f.
func (f AuthorizerFunc) Authorize(op Operation, ch bayeux.ChannelID, s *ServerSession, m *ServerMessage) Result {
	return f(op, ch, s, m)
}

// DefaultSecurityPolicy allows every handshake and, for channel operations,
// combines the authorizers of the channel and of every wildcard channel matching
// it: with no authorizers the operation is allowed; any Deny refuses it; else one
// Grant allows it; if all Ignore, it is refused. Local sessions are always allowed.
type DefaultSecurityPolicy struct{}

// CanHandshake allows every handshake.
func (DefaultSecurityPolicy) CanHandshake(*Server, *ServerSession, *ServerMessage) bool { return true }

// CanCreate consults authorizers for OpCreate.
func (DefaultSecurityPolicy) CanCreate(srv *Server, s *ServerSession, ch bayeux.ChannelID, m *ServerMessage) bool {
	return srv.Authorize(OpCreate, ch, s, m)
}

// CanSubscribe consults authorizers for OpSubscribe.
func (DefaultSecurityPolicy) CanSubscribe(srv *Server, s *ServerSession, ch bayeux.ChannelID, m *ServerMessage) bool {
	return srv.Authorize(OpSubscribe, ch, s, m)
}

// CanPublish consults authorizers for OpPublish.
func (DefaultSecurityPolicy) CanPublish(srv *Server, s *ServerSession, ch bayeux.ChannelID, m *ServerMessage) bool {
	return srv.Authorize(OpPublish, ch, s, m)
}

// Authorize combines the authorizers for op on channel as DefaultSecurityPolicy
// describes.
func (srv *Server) Authorize(op Operation, channel bayeux.ChannelID, s *ServerSession, m *ServerMessage) bool {
	if s != nil && s.IsLocal() {
		return true
	}
	name := channel.String()
	names := []string{name}
	switch {
	case !channel.IsWildcard():
		names = append(names, bayeux.Wildcards(name)...)
	default:
		// A pattern is also governed by "<prefix>/**" and the deep wildcards of
		// its prefix's ancestors.
		prefix := strings.TrimSuffix(strings.TrimSuffix(name, "*"), "*")
		prefix = strings.TrimSuffix(prefix, "/")
		if channel.IsWild() {
			names = append(names, prefix+"/**")
		}
		if prefix != "" {
			for _, w := range bayeux.Wildcards(prefix) {
				if strings.HasSuffix(w, "/**") {
					names = append(names, w)
				}
			}
		}
	}
	seen, granted := false, false
	for _, n := range names {
		c := srv.Channel(n)
		if c == nil {
			continue
		}
		for _, a := range c.Authorizers() {
			seen = true
			switch a.Authorize(op, channel, s, m) {
			case Deny:
				return false
			case Grant:
				granted = true
			}
		}
	}
	return !seen || granted
}
