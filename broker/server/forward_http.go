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

// forward relays a polling batch to the node that owns its session and writes
// that node's reply. It reports whether it answered the request; when it did not
// (no backbone requests, the batch is this node's, or the owner is gone), the
// caller processes the batch here, which answers an unknown session with
// 402::session_unknown so that the client handshakes again.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, msgs []*bayeux.Mutable, raw []byte, transport, callback string) bool {
	req, owner := s.forwardTarget(msgs)
	if req == nil {
		return false
	}
	meta := forwardMeta{Kind: forwardKindPoll, Transport: transport, Callback: callback, UserAgent: r.UserAgent()}
	if c, err := r.Cookie(BrowserCookie); err == nil {
		meta.Browser = c.Value
	}
	payload := frame(meta, raw)

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout+forwardMargin)
	defer cancel()
	resp, err := req.Request(ctx, owner, payload)
	switch {
	case errors.Is(err, backbone.ErrNoNode):
		s.log.Debug("session owner is gone; answering here", "owner", owner)
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
