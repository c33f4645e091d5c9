package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// errOwnerUnreachable answers a websocket batch that could not be forwarded.
const errOwnerUnreachable = "503::session_owner_unreachable"

// unreachableReplies answers msgs, which reached no node that serves their
// session for a passing reason: the client tries again in a second.
func (s *Server) unreachableReplies(msgs []*bayeux.Mutable) []*ServerMessage {
	replies := make([]*ServerMessage, 0, len(msgs))
	for _, m := range msgs {
		r := s.fail(newReply(&ServerMessage{m: m}), errOwnerUnreachable)
		r.m.Advice = reconnectAdvice(bayeux.ReconnectRetry, 1000)
		replies = append(replies, r)
	}
	return replies
}

// forwardJob is one batch on its way from a websocket to the node that owns
// its session.
type forwardJob struct {
	connect bool // the batch holds /meta/connects
	owner   string
	msgs    []*bayeux.Mutable
	payload []byte
}

// forwardWebsocket takes a batch read from wc whose session node holds: it
// forwards it and queues the owner's replies for wc's writer. It reports
// false when the backbone carries no requests.
//
// The batches of one connection reach the owner in the order they were read, one
// request at a time, as they would be processed on the owner's own websocket.
// A /meta/connect, which the owner may hold, is split off and forwarded on its
// own, so that it holds up none of the batches behind it. The reader waits while
// more than wsMaxPending batches are queued. At most maxForwardedConnects connect
// batches per connection are in flight (see connect).
func (s *Server) forwardWebsocket(wc *wsConn, owner string, msgs []*bayeux.Mutable, raw []byte, userAgent string) bool {
	req, ok := s.cfg.Backbone.(backbone.Requester)
	if !ok {
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
	meta := forwardMeta{Kind: forwardKindPoll, Transport: bayeux.TransportLongPolling, UserAgent: userAgent}
	job := func(part []*bayeux.Mutable) forwardJob {
		batch := raw
		if len(part) != len(msgs) {
			batch = appendBatch(nil, part)
		}
		return forwardJob{owner: owner, msgs: part, payload: frame(meta, batch)}
	}
	if wc.fwd == nil {
		wc.fwd = &wsForwarder{wc: wc}
	}
	if len(rest) > 0 {
		wc.fwd.enqueue(s, req, job(rest))
	}
	if len(connects) > 0 {
		j := job(connects)
		j.connect = true
		wc.fwd.connect(s, req, j)
	}
	return true
}

// wsForwarder relays the batches of one websocket whose session another node
// owns: the other batches one at a time, in order, on one goroutine, and the
// /meta/connects beside them (see connect). Its goroutines run only while it
// has work.
type wsForwarder struct {
	wc *wsConn

	mu      sync.Mutex
	queue   []forwardJob
	running bool          // a loop goroutine is active
	space   chan struct{} // a token when loop took a batch; made by the first enqueue
	// The connect batch waiting to be forwarded, and how many are in flight
	// (each on a connectLoop goroutine).
	connNext     *forwardJob
	connInFlight int
}

func (f *wsForwarder) queued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue)
}

// enqueue queues j for the forwarding goroutine, starting it if needed, and
// waits while too many batches are queued.
func (f *wsForwarder) enqueue(s *Server, req backbone.Requester, j forwardJob) {
	f.mu.Lock()
	if f.space == nil {
		// Made here, not per connection: few connections ever forward. Only
		// the reader, which calls enqueue, and the loops it starts read it.
		f.space = make(chan struct{}, 1)
	}
	f.queue = append(f.queue, j)
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		go f.loop(s, req)
	}
	waitBelowMax(f.wc, f.queued, func() <-chan struct{} { return f.space }) // a failed writer ends the reader at its next read
}

// loop forwards the queued batches one at a time, and exits when none is left.
func (f *wsForwarder) loop(s *Server, req backbone.Requester) {
	for {
		f.mu.Lock()
		if len(f.queue) == 0 {
			f.queue = nil
			f.running = false
			f.mu.Unlock()
			return
		}
		j := f.queue[0]
		f.queue = f.queue[1:]
		f.mu.Unlock()
		select {
		case f.space <- struct{}{}:
		default:
		}
		f.one(s, req, j)
	}
}

// connect forwards a /meta/connect batch without blocking the reader,
// with at most maxForwardedConnects of the connection's connect batches in
// flight. Two are needed: a client sends a new connect when it gave up on the
// one the owner holds, and only the new one reaching the owner ends that hold
// (with its reply, which may carry messages, so the older request is never
// cancelled). A connect read while both are in flight waits in one slot; a
// newer one replaces it, and the replaced one, which never reached the owner,
// is answered here the way the owner answers a replaced connect: successful,
// with no messages.
func (f *wsForwarder) connect(s *Server, req backbone.Requester, j forwardJob) {
	f.mu.Lock()
	if f.connInFlight < maxForwardedConnects {
		f.connInFlight++
		f.mu.Unlock()
		go f.connectLoop(s, req, j)
		return
	}
	skipped := f.connNext
	f.connNext = &j
	f.mu.Unlock()
	if skipped != nil {
		f.wc.queueReplies(s.supersededReplies(*skipped))
	}
}

// maxForwardedConnects bounds the connect batches of one websocket in flight
// to the session's owner.
const maxForwardedConnects = 2

// connectLoop forwards j, then the connect batch waiting in the slot, if any,
// until none is waiting.
func (f *wsForwarder) connectLoop(s *Server, req backbone.Requester, j forwardJob) {
	for {
		f.one(s, req, j)
		f.mu.Lock()
		next := f.connNext
		if next == nil {
			f.connInFlight--
			f.mu.Unlock()
			return
		}
		f.connNext = nil
		f.mu.Unlock()
		j = *next
	}
}

// supersededReplies answers the connects of j, which a newer connect replaced
// before the owner answered them: successful, with the usual advice.
func (s *Server) supersededReplies(j forwardJob) []*ServerMessage {
	return connectReplies(j.msgs, func() *bayeux.Advice { return s.advice(bayeux.ReconnectRetry) })
}

// release hands the writer the replies of connects a draining node lets go,
// and has it close the connection once they are written: the client
// reconnects, through the Service, to a node that stays.
func (wc *wsConn) release(replies []*ServerMessage) {
	wc.mu.Lock()
	wc.closeAfter = true
	wc.mu.Unlock()
	wc.queueReplies(replies)
}

// queueReplies hands replies to wc's writer.
func (wc *wsConn) queueReplies(replies []*ServerMessage) {
	if len(replies) == 0 {
		return
	}
	wc.mu.Lock()
	wc.pending = append(wc.pending, wsItem{replies: replies})
	wc.mu.Unlock()
	wc.wake()
}

// one sends one batch to its owner and queues the replies for the
// connection's writer, unless the connection is gone.
func (f *wsForwarder) one(s *Server, req backbone.Requester, j forwardJob) {
	wc := f.wc
	finished := wc.finishedCh()
	if closed(finished) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout+forwardMargin)
	defer cancel()
	go func() { // the connection's end cancels the request (and the owner's hold)
		select {
		case <-finished:
			cancel()
		case <-ctx.Done():
		}
	}()
	var rl *relay
	if j.connect {
		if rl = s.relays.add(cancel); rl == nil {
			wc.release(s.releasedConnectReplies(j.msgs))
			return
		}
		defer s.relays.remove(rl)
	}
	id := batchSession(j.msgs)
	rep, body, err := s.askOwner(ctx, req, j.owner, id, j.payload)
	if errors.Is(err, backbone.ErrNoNode) {
		// No node serves the session: with durability, adopt it (durable.go).
		switch a := s.orphan(id); {
		case a.here:
			if release, _ := s.route(j.msgs); release != nil {
				wc.processHere(j.msgs, release)
				return
			}
		case a.node != "":
			rep, body, err = s.askOwner(ctx, req, a.node, id, j.payload)
		case a.retry:
			err = errAdoptionFailed
		}
	}
	if rl != nil && rl.released.Load() {
		wc.release(s.releasedConnectReplies(j.msgs))
		return
	}
	var replies []*ServerMessage
	switch {
	case errors.Is(err, backbone.ErrNoNode):
		for _, m := range j.msgs {
			replies = append(replies, unknownSession(newReply(&ServerMessage{m: m})))
		}
	case err != nil && closed(finished):
		return // the connection is gone: nobody to answer
	case err == nil && rep.Status == http.StatusOK:
		// A reply that arrived is written even if ctx ended since: it may
		// carry messages the owner took from the queue.
		if out, derr := bayeux.DecodeBatch(body); derr == nil {
			for _, m := range out {
				replies = append(replies, NewServerMessage(m))
			}
			break
		}
		err = errMalformedReply
		fallthrough
	default: // an owner that failed or did not answer in time
		if err == nil {
			err = fmt.Errorf("status %d", rep.Status)
		}
		s.log.Warn("cannot forward a websocket batch to its session's owner", "owner", j.owner, "err", err)
		replies = s.unreachableReplies(j.msgs)
	}
	wc.queueReplies(replies)
}
