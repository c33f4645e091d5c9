package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// servePolling serves a polling batch where its session is: here, or on the
// node route or locate names, to which it is forwarded and whose reply is
// written out unchanged. hops counts how often the batch was passed on
// already. A batch for a session no node holds is processed here, which
// answers 402::session_unknown so that the client handshakes again.
func (s *Server) servePolling(w http.ResponseWriter, r *http.Request, msgs []*bayeux.Mutable, raw []byte, transport, callback string, hops int) {
	release, node := s.route(msgs)
	if release == nil && hops < maxHops {
		id := batchSession(msgs)
		if node != "" {
			if s.forwardTo(w, r, node, raw, transport, callback, hops) {
				return
			}
			s.forgetRoute(id)
			node = "" // gone: look for the session
		}
		if node == "" && id != "" && OwnerOf(id) != "" {
			node = s.locate(r.Context(), id)
		}
		if node != "" {
			if s.forwardTo(w, r, node, raw, transport, callback, hops) {
				return
			}
			s.forgetRoute(id)
		}
		release, _ = s.route(msgs) // it may have arrived here meanwhile
	}
	s.respond(w, r, msgs, transport, callback, release)
}

// forwardTo relays a polling batch to node and writes that node's reply. It
// reports false, having written nothing, when node is gone or serves no
// requests.
func (s *Server) forwardTo(w http.ResponseWriter, r *http.Request, node string, raw []byte, transport, callback string, hops int) bool {
	req, ok := s.cfg.Backbone.(backbone.Requester)
	if !ok {
		return false
	}
	meta := forwardMeta{Kind: forwardKindPoll, Transport: transport, Callback: callback, UserAgent: r.UserAgent(), Hops: hops + 1}
	if c, err := r.Cookie(BrowserCookie); err == nil {
		meta.Browser = c.Value
	}
	payload := frame(meta, raw)

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout+forwardMargin)
	defer cancel()
	resp, err := req.Request(ctx, node, payload)
	owner := node
	switch {
	case errors.Is(err, backbone.ErrNoNode):
		s.log.Debug("session owner is gone", "owner", owner)
		return false
	case r.Context().Err() != nil:
		return true // the client went away
	case err != nil:
		s.log.Warn("cannot forward a batch to its session's owner", "owner", owner, "err", err)
		http.Error(w, "the broker that owns this session is unreachable; retry", http.StatusServiceUnavailable)
		return true
	}
	var rep forwardReply
	i := bytes.IndexByte(resp, '\n')
	if i < 0 || json.Unmarshal(resp[:i], &rep) != nil || rep.Status < 100 || rep.Status > 999 {
		s.log.Warn("malformed forwarded reply", "owner", owner)
		http.Error(w, "malformed reply from the broker that owns this session", http.StatusBadGateway)
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
	_, _ = w.Write(resp[i+1:])
	return true
}
