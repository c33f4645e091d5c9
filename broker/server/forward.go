package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Forwarding: any broker serves any session.
//
// A long-polling or callback-polling batch whose clientId names another node (see
// OwnerOf) is sent to that node over the backbone's Requester and processed there,
// as if it had arrived on the owner's own HTTP port; the owner's HTTP reply
// (status, content type, body) comes back and is written out unchanged. This
// covers held /meta/connects: the owner holds the request, and the forwarding node
// waits for its reply. A client that gives up cancels the owner's hold, so the
// messages it would have carried stay queued.
//
// A websocket carries no HTTP request per batch, so a batch read from a websocket
// whose session lives elsewhere (Faye handshakes over HTTP, then opens its
// websocket, which a Service may send to another broker) is forwarded the same
// way, as a long-polling batch, on a goroutine of its own so the connection keeps
// reading; the owner's reply is written on the websocket.
//
// A forwarded request is one line of JSON (forwardMeta) followed by '\n' and the
// batch as the client sent it; the reply is one line of JSON (forwardReply), '\n'
// and the body.

// forwardMargin is added to the connect timeout to bound a forwarded request, so
// that a held connect ends on the owner before the forwarding node gives up.
const forwardMargin = 15 * time.Second

// forwardKindPoll marks a forwarded polling batch (the only kind so far).
const forwardKindPoll = "poll"

type forwardMeta struct {
	Kind      string `json:"k"`
	Transport string `json:"t"`
	Callback  string `json:"cb,omitempty"`
	Browser   string `json:"b,omitempty"`
	UserAgent string `json:"ua,omitempty"`
}

type forwardReply struct {
	Status      int    `json:"s"`
	ContentType string `json:"ct,omitempty"`
	Cache       string `json:"cc,omitempty"`
	Cookie      string `json:"sc,omitempty"`
}

// frame is a node request or reply: head's JSON on one line, then body.
func frame(head any, body []byte) []byte {
	h, _ := json.Marshal(head) // structs of plain strings and ints: cannot fail
	out := make([]byte, 0, len(h)+1+len(body))
	return append(append(append(out, h...), '\n'), body...)
}

// forwardTarget returns the Requester and the node to forward msgs to, or a nil
// Requester when the batch is this node's or the backbone carries no requests.
func (s *Server) forwardTarget(msgs []*bayeux.Mutable) (backbone.Requester, string) {
	req, ok := s.cfg.Backbone.(backbone.Requester)
	if !ok {
		return nil, ""
	}
	owner := s.foreignOwner(msgs)
	if owner == "" {
		return nil, ""
	}
	return req, owner
}

// foreignOwner returns the other node that owns the sessions of msgs, or "" when
// the batch is for this node: it holds a handshake, names no session, names one
// this node holds, or names sessions of several nodes.
func (s *Server) foreignOwner(msgs []*bayeux.Mutable) string {
	owner := ""
	for _, m := range msgs {
		if m.Channel == bayeux.MetaHandshake {
			return ""
		}
		if m.ClientID == "" {
			continue
		}
		o := OwnerOf(m.ClientID)
		if o == "" || o == s.nodeID || (owner != "" && o != owner) || s.Session(m.ClientID) != nil {
			return ""
		}
		owner = o
	}
	return owner
}

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

// serveNodeRequest answers requests from other nodes (the backbone's
// RequestHandler).
func (s *Server) serveNodeRequest(ctx context.Context, data []byte) ([]byte, error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, errors.New("server: malformed node request")
	}
	var meta forwardMeta
	if err := json.Unmarshal(data[:i], &meta); err != nil {
		return nil, fmt.Errorf("server: malformed node request: %w", err)
	}
	if meta.Kind != forwardKindPoll {
		return nil, fmt.Errorf("server: unknown node request kind %q", meta.Kind)
	}
	if meta.Transport != "long-polling" && meta.Transport != "callback-polling" ||
		meta.Transport == "callback-polling" && !validCallback(meta.Callback) {
		return nil, fmt.Errorf("server: bad forwarded transport %q", meta.Transport)
	}
	msgs, err := bayeux.DecodeBatch(data[i+1:])
	if err != nil {
		return nil, fmt.Errorf("server: forwarded batch: %w", err)
	}
	hr := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/"}, Header: http.Header{}}
	if meta.UserAgent != "" {
		hr.Header.Set("User-Agent", meta.UserAgent)
	}
	if meta.Browser != "" {
		hr.AddCookie(&http.Cookie{Name: BrowserCookie, Value: meta.Browser})
	}
	rec := &replyRecorder{header: http.Header{}}
	s.respond(rec, hr.WithContext(ctx), msgs, meta.Transport, meta.Callback)
	if rec.status == 0 && rec.body.Len() == 0 {
		// The hold ended because the requester gave up: nothing was taken.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("server: forwarded batch produced no reply")
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return frame(forwardReply{
		Status:      rec.status,
		ContentType: rec.header.Get("Content-Type"),
		Cache:       rec.header.Get("Cache-Control"),
		Cookie:      rec.header.Get("Set-Cookie"),
	}, rec.body.Bytes()), nil
}

// replyRecorder is the http.ResponseWriter a forwarded batch is answered into.
type replyRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *replyRecorder) Header() http.Header { return r.header }

func (r *replyRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *replyRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// errOwnerUnreachable answers a websocket batch that could not be forwarded.
const errOwnerUnreachable = "503::session_owner_unreachable"

// forwardJob is one batch on its way from a websocket to the node that owns
// its session.
type forwardJob struct {
	connect bool // the batch holds /meta/connects
	owner   string
	msgs    []*bayeux.Mutable
	payload []byte
}

// forwardWebsocket takes a batch read from wc whose session another node owns: it
// forwards it and queues the owner's replies for wc's writer. It reports whether
// it took the batch.
//
// The batches of one connection reach the owner in the order they were read, one
// request at a time, as they would be processed on the owner's own websocket.
// A /meta/connect, which the owner may hold, is split off and forwarded on its
// own, so that it holds up none of the batches behind it. The reader waits while
// more than wsMaxPending batches are queued. At most maxForwardedConnects connect
// batches per connection are in flight (see forwardConnect).
func (s *Server) forwardWebsocket(wc *wsConn, msgs []*bayeux.Mutable, raw []byte, userAgent string) bool {
	req, owner := s.forwardTarget(msgs)
	if req == nil {
		return false
	}
	var connects, rest []*bayeux.Mutable
	for _, m := range msgs {
		if m.Channel == bayeux.MetaConnect {
			connects = append(connects, m)
		} else {
			rest = append(rest, m)
		}
	}
	meta := forwardMeta{Kind: forwardKindPoll, Transport: "long-polling", UserAgent: userAgent}
	job := func(part []*bayeux.Mutable) forwardJob {
		batch := raw
		if len(part) != len(msgs) {
			batch = appendBatch(nil, part)
		}
		return forwardJob{owner: owner, msgs: part, payload: frame(meta, batch)}
	}
	if len(rest) > 0 {
		wc.enqueueForward(s, req, job(rest))
	}
	if len(connects) > 0 {
		j := job(connects)
		j.connect = true
		wc.forwardConnect(s, req, j)
	}
	return true
}

// appendBatch appends msgs to b as a JSON array.
func appendBatch(b []byte, msgs []*bayeux.Mutable) []byte {
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = m.AppendJSON(b)
	}
	return append(b, ']')
}

// enqueueForward queues j for the connection's forwarding goroutine, starting
// it if needed, and waits while too many batches are queued.
func (wc *wsConn) enqueueForward(s *Server, req backbone.Requester, j forwardJob) {
	wc.mu.Lock()
	wc.fwdQueue = append(wc.fwdQueue, j)
	start := !wc.fwdRunning
	wc.fwdRunning = true
	wc.mu.Unlock()
	if start {
		go wc.forwardLoop(s, req)
	}
	waitBelowMax(wc, &wc.fwdQueue, wc.fwdSpace) // a failed writer ends the reader at its next read
}

// forwardLoop forwards the queued batches one at a time, and exits when none is left.
func (wc *wsConn) forwardLoop(s *Server, req backbone.Requester) {
	for {
		wc.mu.Lock()
		if len(wc.fwdQueue) == 0 {
			wc.fwdQueue = nil
			wc.fwdRunning = false
			wc.mu.Unlock()
			return
		}
		j := wc.fwdQueue[0]
		wc.fwdQueue = wc.fwdQueue[1:]
		wc.mu.Unlock()
		select {
		case wc.fwdSpace <- struct{}{}:
		default:
		}
		s.forwardOne(wc, req, j)
	}
}

// forwardConnect forwards a /meta/connect batch without blocking the reader,
// with at most maxForwardedConnects of the connection's connect batches in
// flight. Two are needed: a client sends a new connect when it gave up on the
// one the owner holds, and only the new one reaching the owner ends that hold
// (with its reply, which may carry messages, so the older request is never
// cancelled). A connect read while both are in flight waits in one slot; a
// newer one replaces it, and the replaced one, which never reached the owner,
// is answered here the way the owner answers a replaced connect: successful,
// with no messages.
func (wc *wsConn) forwardConnect(s *Server, req backbone.Requester, j forwardJob) {
	wc.mu.Lock()
	if wc.fwdConnInFlight < maxForwardedConnects {
		wc.fwdConnInFlight++
		wc.mu.Unlock()
		go wc.connectLoop(s, req, j)
		return
	}
	skipped := wc.fwdConnNext
	wc.fwdConnNext = &j
	wc.mu.Unlock()
	if skipped != nil {
		wc.queueReplies(s.supersededReplies(*skipped))
	}
}

// maxForwardedConnects bounds the connect batches of one websocket in flight
// to the session's owner.
const maxForwardedConnects = 2

// connectLoop forwards j, then the connect batch waiting in the slot, if any,
// until none is waiting.
func (wc *wsConn) connectLoop(s *Server, req backbone.Requester, j forwardJob) {
	for {
		s.forwardOne(wc, req, j)
		wc.mu.Lock()
		next := wc.fwdConnNext
		if next == nil {
			wc.fwdConnInFlight--
			wc.mu.Unlock()
			return
		}
		wc.fwdConnNext = nil
		wc.mu.Unlock()
		j = *next
	}
}

// supersededReplies answers the connects of j, which a newer connect replaced
// before the owner answered them.
func (s *Server) supersededReplies(j forwardJob) []*ServerMessage {
	out := make([]*ServerMessage, 0, len(j.msgs))
	for _, m := range j.msgs {
		r := newReply(&ServerMessage{m: m})
		r.m.Successful = bayeux.True
		r.m.Advice = s.advice(bayeux.ReconnectRetry)
		out = append(out, r)
	}
	return out
}

// queueReplies hands replies to wc's writer.
func (wc *wsConn) queueReplies(replies []*ServerMessage) {
	if len(replies) == 0 {
		return
	}
	wc.mu.Lock()
	wc.pending = append(wc.pending, wsItem{replies: replies})
	wc.mu.Unlock()
	wc.kick()
}

// forwardOne sends one batch to its owner and queues the replies for wc's
// writer, unless the connection is gone.
func (s *Server) forwardOne(wc *wsConn, req backbone.Requester, j forwardJob) {
	if closed(wc.finished) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout+forwardMargin)
	defer cancel()
	go func() { // the connection's end cancels the request (and the owner's hold)
		select {
		case <-wc.finished:
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := req.Request(ctx, j.owner, j.payload)
	var replies []*ServerMessage
	switch {
	case errors.Is(err, backbone.ErrNoNode):
		for _, m := range j.msgs {
			replies = append(replies, unknownSession(newReply(&ServerMessage{m: m})))
		}
	case err != nil && closed(wc.finished):
		return // the connection is gone: nobody to answer
	case err == nil:
		// A reply that arrived is written even if ctx ended since: it may
		// carry messages the owner took from the queue.
		i := bytes.IndexByte(resp, '\n')
		if i >= 0 {
			if out, derr := bayeux.DecodeBatch(resp[i+1:]); derr == nil {
				for _, m := range out {
					replies = append(replies, NewServerMessage(m))
				}
				break
			}
		}
		err = errors.New("malformed reply")
		fallthrough
	default: // an owner that failed or did not answer in time
		s.log.Warn("cannot forward a websocket batch to its session's owner", "owner", j.owner, "err", err)
		for _, m := range j.msgs {
			r := s.fail(newReply(&ServerMessage{m: m}), errOwnerUnreachable)
			r.m.Advice = reconnectAdvice(bayeux.ReconnectRetry, 1000)
			replies = append(replies, r)
		}
	}
	wc.queueReplies(replies)
}

// closed reports whether ch is closed (it is only ever closed, never sent on).
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
