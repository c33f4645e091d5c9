package server

import (
	"context"
	"errors"
	"net/http"

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
		if s.forwardTo(w, r, node, batchSession(msgs), raw, transport, callback) {
			return
		}
		release, _ = s.route(msgs) // it may have arrived here meanwhile
	}
	s.respond(w, r, msgs, transport, callback, release)
}

// forwardTo relays a polling batch of session id to node (or wherever node
// says the session went) and writes the reply. It reports false, having
// written nothing, when no node holds the session.
func (s *Server) forwardTo(w http.ResponseWriter, r *http.Request, node, id string, raw []byte, transport, callback string) bool {
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
	rep, body, err := s.askOwner(ctx, req, node, id, frame(meta, raw))
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
