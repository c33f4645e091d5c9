package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// servePolling serves a polling batch where its session is: here, or on the
// node route (or, for a session created here that is here no more, locate)
// names, to which it is forwarded and whose reply is written out unchanged. A
// batch for a session no node holds is processed here, which answers
// 402::session_unknown so that the client handshakes again.
func (s *Server) servePolling(w http.ResponseWriter, r *http.Request, msgs []*bayeux.Mutable, raw []byte, transport, callback string) {
	release, node := s.route(msgs)
	if release == nil && node == "" {
		if id := batchSession(msgs); id != "" && OwnerOf(id) == s.nodeID {
			node = s.locate(r.Context(), id) // created here, and moved away
		}
	}
	if release == nil && node != "" {
		if s.forwardTo(w, r, node, batchSession(msgs), msgs, raw, transport, callback) {
			return
		}
		release, _ = s.route(msgs) // it may have arrived here meanwhile
	}
	if release == nil {
		// No node serves the session: with durability, adopt it (durable.go).
		switch a := s.orphan(batchSession(msgs)); {
		case a.here:
			release, _ = s.route(msgs)
		case a.node != "":
			if s.forwardTo(w, r, a.node, batchSession(msgs), msgs, raw, transport, callback) {
				return
			}
		case a.retry:
			http.Error(w, errAdoptionFailed.Error()+"; retry", http.StatusServiceUnavailable)
			return
		}
	}
	s.respond(w, r, msgs, transport, callback, release)
}

// forwardTo relays a polling batch of session id to node (or wherever node
// says the session went) and writes the reply. It reports false, having
// written nothing, when no node holds the session.
func (s *Server) forwardTo(w http.ResponseWriter, r *http.Request, node, id string, msgs []*bayeux.Mutable, raw []byte, transport, callback string) bool {
	req, ok := s.cfg.Backbone.(backbone.Requester)
	if !ok {
		return false
	}
	meta := forwardMeta{Kind: forwardKindPoll, Transport: transport, Callback: callback, UserAgent: r.UserAgent()}
	if c, err := r.Cookie(BrowserCookie); err == nil {
		meta.Browser = c.Value
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout+forwardMargin)
	defer cancel()
	var rl *relay
	if onlyConnects(msgs) {
		if rl = s.relays.add(cancel); rl == nil {
			s.releaseConnects(w, msgs, callback) // draining: not held here
			return true
		}
		defer s.relays.remove(rl)
	}
	rep, body, err := s.askOwner(ctx, req, node, id, frame(meta, raw))
	if rl != nil && rl.released.Load() {
		s.releaseConnects(w, msgs, callback)
		return true
	}
	switch {
	case errors.Is(err, backbone.ErrNoNode):
		s.log.Debug("no node holds the session", "session", id)
		return false
	case r.Context().Err() != nil:
		return true // the client went away
	case errors.Is(err, errMalformedReply):
		s.log.Warn("malformed forwarded reply", "owner", node)
		http.Error(w, "malformed reply from the broker that owns this session", http.StatusBadGateway)
		return true
	case err != nil:
		s.log.Warn("cannot forward a batch to its session's owner", "owner", node, "err", err)
		http.Error(w, "the broker that owns this session is unreachable; retry", http.StatusServiceUnavailable)
		return true
	}
	h := w.Header()
	if rep.ContentType != "" {
		h.Set("Content-Type", rep.ContentType)
	}
	if rep.Cache != "" {
		h.Set("Cache-Control", rep.Cache)
	}
	if rep.Cookie != "" {
		h.Add("Set-Cookie", rep.Cookie)
	}
	w.WriteHeader(rep.Status)
	_, _ = w.Write(body)
	return true
}

// relay is a forwarded /meta/connect this node waits on for its client.
type relay struct {
	cancel   context.CancelFunc
	released atomic.Bool
}

// relaySet holds the relays in flight, so that a drain can release them.
type relaySet struct {
	mu       sync.Mutex
	m        map[*relay]struct{}
	draining bool
}

// add registers a relay whose request cancel ends; it returns nil while the
// node drains: connects are not held here then.
func (rs *relaySet) add(cancel context.CancelFunc) *relay {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.draining {
		return nil
	}
	if rs.m == nil {
		rs.m = map[*relay]struct{}{}
	}
	rl := &relay{cancel: cancel}
	rs.m[rl] = struct{}{}
	return rl
}

func (rs *relaySet) remove(rl *relay) {
	rs.mu.Lock()
	delete(rs.m, rl)
	rs.mu.Unlock()
}

// releaseAll ends every relay in flight, and refuses new ones: the owner's
// hold ends with its messages still queued, and the client is told to
// connect again at once, through the Service, to a node that stays.
func (rs *relaySet) releaseAll() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.draining = true
	for rl := range rs.m {
		rl.released.Store(true)
		rl.cancel()
	}
}

// onlyConnects reports whether a batch holds nothing but /meta/connects.
func onlyConnects(msgs []*bayeux.Mutable) bool {
	for _, m := range msgs {
		if m.Channel != bayeux.MetaConnect {
			return false
		}
	}
	return len(msgs) > 0
}

// releasedConnectReplies answers connects a draining node does not wait on:
// successful, with advice to connect again at once; no message is taken.
func (s *Server) releasedConnectReplies(msgs []*bayeux.Mutable) []*ServerMessage {
	return connectReplies(msgs, func() *bayeux.Advice { return reconnectAdvice(bayeux.ReconnectRetry, 0) })
}

// connectReplies answers connects this node does not hold: successful, no
// message taken, each with the advice advice makes.
func connectReplies(msgs []*bayeux.Mutable, advice func() *bayeux.Advice) []*ServerMessage {
	out := make([]*ServerMessage, 0, len(msgs))
	for _, m := range msgs {
		r := newReply(&ServerMessage{m: m})
		r.m.Successful = bayeux.True
		r.m.Advice = advice()
		out = append(out, r)
	}
	return out
}

func (s *Server) releaseConnects(w http.ResponseWriter, msgs []*bayeux.Mutable, callback string) {
	w.Header().Set("Connection", "close")
	s.writeBatch(w, s.releasedConnectReplies(msgs), callback)
}
