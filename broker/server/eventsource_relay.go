package server

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Relaying an eventsource stream: behind a Service, a browser's EventSource
// may reach another broker than the one that holds its session. That broker
// keeps the stream and pulls the session's messages from the owner over the
// backbone, one node request at a time: the owner answers a pull with what
// the session has queued, waiting up to sseKeepAlive for something (the
// relay writes a keep-alive comment when nothing came). Messages a relay
// could not write go back to the head of the session's queue (a requeue
// request), as a websocket's do.

// Node request kinds of the relay.
const (
	kindPull    = "pull"    // body: clientId; reply: forwardReply and a JSON array
	kindRequeue = "requeue" // body: clientId, '\n', a JSON array
)

// pullNoWait, as a pull's transport field, asks for what is queued now.
const pullNoWait = "nowait"

// Pull reply statuses besides 200.
const (
	pullGone       = http.StatusGone     // the session ended
	pullSuperseded = http.StatusConflict // a newer stream carries the session
)

// eventSourceOwner returns the node that holds session id, when it is another
// node that this one can relay to, and the Requester to reach it.
func (s *Server) eventSourceOwner(ctx context.Context, id string) (string, backbone.Requester) {
	req, ok := s.cfg.Backbone.(backbone.Requester)
	if !ok || id == "" {
		return "", nil
	}
	release, node := s.route([]*bayeux.Mutable{{Channel: bayeux.MetaConnect, ClientID: id}})
	if release != nil {
		release()
		return "", nil // here
	}
	if node == "" && OwnerOf(id) == s.nodeID {
		node = s.locate(ctx, id) // created here, and moved away
	}
	if node == "" || node == s.nodeID {
		return "", nil
	}
	return node, req
}

// relayEventSource serves the stream of session id, held by node: it ends
// when the owner says the session ended or another stream took it, when the
// owner cannot be reached, when a write fails, or when the client leaves or
// the server closes.
func (s *Server) relayEventSource(w http.ResponseWriter, r *http.Request, req backbone.Requester, node, id string) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("X-Accel-Buffering", "no")
	sc := &sseConn{wakeCh: make(chan struct{}, 1), closeCh: make(chan struct{})}
	s.conns.add(sc)
	defer s.conns.remove(sc)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-sc.closeCh:
		case <-s.closeCh:
		case <-ctx.Done():
		}
		cancel()
	}()
	// The first pull does not wait: a session no node holds is answered
	// 404, as on its owner, before the stream opens.
	pull := frame(forwardMeta{Kind: kindPull, Transport: pullNoWait}, []byte(id))
	buf := make([]byte, 0, 512)
	for first := true; ; first = false {
		pctx, pcancel := context.WithTimeout(ctx, sseKeepAlive+forwardMargin)
		rep, body, err := s.askOwner(pctx, req, node, id, pull)
		pcancel()
		if first {
			if err != nil || rep.Status != http.StatusOK {
				http.Error(w, "unknown session", http.StatusNotFound)
				return
			}
			w.WriteHeader(http.StatusOK)
			if s.sseWrite(w, rc, []byte("retry: 5000\r\n\r\n")) != nil {
				return
			}
			pull = frame(forwardMeta{Kind: kindPull}, []byte(id))
		}
		if err != nil || rep.Status != http.StatusOK {
			if err != nil && ctx.Err() == nil {
				s.log.Debug("eventsource relay ended", "session", id, "owner", node, "err", err)
			}
			if err == nil && rep.Status != pullGone && rep.Status != pullSuperseded {
				s.log.Debug("eventsource relay ended", "session", id, "owner", node, "status", rep.Status)
			}
			return
		}
		if node2 := s.routes.get(id); node2 != "" {
			node = node2 // askOwner followed a redirect
		}
		if len(body) <= 2 { // "[]": nothing within sseKeepAlive
			if first {
				continue
			}
			if s.sseWrite(w, rc, []byte(":\r\n\r\n")) != nil {
				return
			}
			continue
		}
		buf = append(append(append(buf[:0], "data: "...), body...), "\r\n\r\n"...)
		if err := s.sseWrite(w, rc, buf); err != nil {
			// Back to the owner's queue, for the session's next connection.
			rctx, rcancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
			_, _, _ = s.askOwner(rctx, req, node, id, frame(forwardMeta{Kind: kindRequeue}, append(append([]byte(id), '\n'), body...)))
			rcancel()
			return
		}
	}
}

// servePull answers a relay's pull of session id's messages: but for one, at
// most MaxPendingBytes bytes of them (the rest stay queued for the next
// pull), waiting up to sseKeepAlive for some unless wait is false.
func (s *Server) servePull(ctx context.Context, id string, wait bool) ([]byte, error) {
	release, node := s.route([]*bayeux.Mutable{{Channel: bayeux.MetaConnect, ClientID: id}})
	if release == nil {
		if node == "" && OwnerOf(id) == s.nodeID {
			node = s.locate(ctx, id)
		}
		if node != "" && node != s.nodeID {
			return frame(forwardReply{Redirect: node}, nil), nil
		}
		return frame(forwardReply{Status: pullGone}, nil), nil
	}
	// Not held while waiting: a handover must not wait for a pull. A moving
	// session's queue is frozen, and gives nothing.
	release()
	ss := s.hub.session(id)
	if ss == nil || ss.IsLocal() {
		return frame(forwardReply{Status: pullGone}, nil), nil
	}
	// A stream on this node wins over relays: the browser that opened it
	// is still there (its stream ends when the browser leaves).
	if r := ss.conn.Load(); r != nil {
		if c, ok := r.c.(*sseConn); ok && !c.relay {
			return frame(forwardReply{Status: pullSuperseded}, nil), nil
		}
	}
	pc := &sseConn{relay: true, wakeCh: make(chan struct{}, 1), closeCh: make(chan struct{})}
	replaceStream(ss, pc)
	defer ss.unbind(pc)
	t := time.NewTimer(sseKeepAlive)
	defer t.Stop()
	if !wait {
		t.Reset(0)
	}
	for {
		if !ss.queue.isDeliverOnly() {
			if q := ss.queue.take(); len(q) > 0 {
				k := s.eventSize(q)
				if k < len(q) {
					ss.queue.requeue(q[k:])
				}
				s.stats.messagesOut.Add(uint64(k)) // they leave this node
				b := []byte{'['}
				for i, m := range q[:k] {
					if i > 0 {
						b = append(b, ',')
					}
					b = append(b, m.Encoded()...)
				}
				return frame(forwardReply{Status: http.StatusOK}, append(b, ']')), nil
			}
		}
		select {
		case <-pc.wakeCh:
		case <-t.C:
			return frame(forwardReply{Status: http.StatusOK}, []byte("[]")), nil
		case <-ss.done:
			return frame(forwardReply{Status: pullGone}, nil), nil
		case <-pc.closeCh:
			return frame(forwardReply{Status: pullSuperseded}, nil), nil
		case <-s.closeCh:
			return frame(forwardReply{Status: pullGone}, nil), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// serveRequeue puts back at the head of a session's queue the messages a
// relay pulled and could not write.
func (s *Server) serveRequeue(body []byte) ([]byte, error) {
	i := bytes.IndexByte(body, '\n')
	if i < 0 {
		return frame(forwardReply{Status: http.StatusBadRequest}, nil), nil
	}
	ss := s.hub.session(string(body[:i]))
	msgs, err := bayeux.DecodeBatch(body[i+1:])
	if ss == nil || ss.IsLocal() || err != nil {
		return frame(forwardReply{Status: pullGone}, nil), nil
	}
	back := make([]*ServerMessage, len(msgs))
	for j, m := range msgs {
		back[j] = NewServerMessage(m)
	}
	ss.queue.requeue(back)
	return frame(forwardReply{Status: http.StatusOK}, nil), nil
}

// eventSize is how many of msgs go in one event: but for the first, at most
// MaxPendingBytes bytes. (Faye's server sends all it has in one event; the
// client reads a JSON array of any length.)
func (s *Server) eventSize(msgs []*ServerMessage) int {
	n := 0
	k := 0
	for k < len(msgs) {
		n += len(msgs[k].Encoded()) + 1
		if k > 0 && int64(n) > s.cfg.MaxPendingBytes {
			break
		}
		k++
	}
	return k
}

// replaceStream makes c the connection of ss, ending the stream (local or
// relayed) that carried it before: a browser has one at a time. (A relay's
// pull does not replace a stream of the owner: see servePull.)
func replaceStream(ss *ServerSession, c *sseConn) {
	if r := ss.conn.Load(); r != nil {
		if old, ok := r.c.(*sseConn); ok && old != c {
			old.close()
		}
	}
	ss.bind(c)
}
