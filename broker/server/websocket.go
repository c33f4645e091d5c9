package server

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Websocket deadlines and limits. A round of frames must be written within
// Config.WriteTimeout.
const (
	// pongWait bounds the silence allowed from a peer (a pong or any message).
	pongWait = 60 * time.Second
	// pingPeriod is how often the writer pings; shorter than pongWait.
	pingPeriod = pongWait * 9 / 10
	// wsMaxPending is how many processed batches the reader may get ahead of
	// the writer before it stops reading.
	wsMaxPending = 8
	// perMessageOverhead is what a reply costs in memory beyond its encoded
	// bytes (the reply, its request, their fields), counted against
	// Config.MaxPendingBytes: a reply to "{}" and its request hold about 740
	// bytes of heap, of which about 60 are the encoded reply.
	perMessageOverhead = 640
	// minReplySize is the least encoded size of a reply, for the estimate of
	// a batch's replies before it is processed (see batchTooLarge).
	minReplySize = 60
	// wsReadBufferSize is a connection's read buffer (a size class of the Go
	// allocator): more than 256, so that the websocket library reads through
	// it rather than a buffer of its own, and little more, since an idle
	// connection holds it. A Bayeux message rarely needs more; a larger one
	// is read in more calls.
	wsReadBufferSize = 288
)

// ErrSlowConnection closes a websocket connection whose output waiting for
// the network passed Config.MaxPendingBytes: its client sends faster than it
// reads. The session it carried (if any) lives on, its messages queued, and
// may connect again.
var ErrSlowConnection = &DisconnectReason{Code: "slow_connection", Reconnect: bayeux.ReconnectRetry}

// wsItem is what the reader hands the writer after processing one frame.
type wsItem struct {
	bytes   int64 // counted in wsConn.pendingBytes
	replies []*ServerMessage
	connect *pendingConnect
	session *ServerSession
}

// wsConn is one websocket connection. One reader goroutine reads frames and
// processes them; one writer sends every frame, pings included. The writer is a
// goroutine started when there is something to do (a processed batch, queued
// messages, a connect timeout, a ping, the end of the session or of the
// connection) and exiting when it is done, so an idle connection costs one
// goroutine, not two; at most one writer runs at a time. The reader waits for
// input on a small stack and hands over to a fresh goroutine each time it has
// processed all the input there was (see readLoop), so that an idle
// connection's goroutine does not keep the stack that processing grew. The
// channels the reader and the forwarder wait on are made when one first
// waits (see deadCh, spaceCh, finishedCh), so an idle connection holds none.
type wsConn struct {
	s         *Server
	c         *websocket.Conn
	bc        *batchConn    // c's network connection
	br        *bufio.Reader // c's read buffer
	userAgent string        // of the upgrade request
	closeOnce sync.Once

	mu      sync.Mutex
	session *ServerSession
	pending []wsItem
	// pendingBytes is the output of the batches read and not yet written
	// (pending, and the writer's current round).
	pendingBytes int64
	running      bool // a writer goroutine is active
	dirty        bool // work arrived while the writer ran
	closed       bool // the reader has exited
	done         bool // the final clean-up ran
	// closeAfter: close the connection once what is pending is written (a
	// draining node let the session's connect go).
	closeAfter bool
	failed     bool          // a write failed (the writer's broken, for the others)
	dead       chan struct{} // nil or closed once failed
	space      chan struct{} // nil or a token each time the writer took pending batches
	finished   chan struct{} // nil or closed once done

	// Batches on their way to the node that owns the session (forward_ws.go);
	// made by the reader when it first forwards one.
	fwd *wsForwarder

	// Owned by the active writer.
	sess *ServerSession
	held *pendingConnect
	// timer wakes the writer when the next ping or the held connect's
	// deadline is due, whichever comes first (one timer, not one for each:
	// an idle connection holds it); timerDue is when it is set to fire.
	timer    *time.Timer
	timerDue time.Time
	nextPing time.Time
	broken   bool
	goAway   bool // close the connection once this round is written
	// The frames of this round that carry messages taken from a session's
	// queue, put back in the queue if they do not reach the network, and the
	// taken slices to recycle once the round is over.
	sent     []sentFrame
	recycled []takenQueue
}

// sentFrame is a frame of the writer's round that carries queued messages.
type sentFrame struct {
	ss   *ServerSession
	msgs []*ServerMessage // the session's queued messages in the frame
	end  int              // the round's buffered bytes after the frame; -1: not written
}

// takenQueue is a slice sessionQueue.take returned, recycled after the round.
type takenQueue struct {
	ss *ServerSession
	q  []*ServerMessage
}

var wsWriteBufferPool sync.Pool

func (s *Server) serveWebsocket(w http.ResponseWriter, r *http.Request) {
	if !s.transports[bayeux.TransportWebSocket] {
		http.Error(w, "websocket transport disabled", http.StatusBadRequest)
		return
	}
	hdr := http.Header{"X-Content-Type-Options": {"nosniff"}}
	up := websocket.Upgrader{
		ReadBufferSize:  0, // read through hc.br
		WriteBufferSize: 1024,
		WriteBufferPool: &wsWriteBufferPool,
		CheckOrigin:     s.checkOrigin,
	}
	hc := &hijackCapture{ResponseWriter: w, writeTimeout: s.cfg.WriteTimeout}
	c, err := up.Upgrade(hc, r, hdr)
	if err != nil {
		return // Upgrade has answered the request
	}
	wc := &wsConn{
		s: s, c: c, bc: hc.conn, br: hc.br, userAgent: clientString(r.UserAgent()),
		nextPing: time.Now().Add(pingPeriod),
	}
	wc.timerDue = wc.nextPing
	wc.timer = time.AfterFunc(pingPeriod, wc.wake)
	s.conns.add(wc)
	// The reader runs on its own goroutine so the handler returns at once:
	// net/http then releases the request and its buffers, which an idle
	// connection would otherwise keep for its lifetime.
	wc.c.SetReadLimit(s.cfg.MaxMessageSize)
	_ = wc.c.SetReadDeadline(time.Now().Add(pongWait))
	wc.c.SetPongHandler(func(string) error { return wc.c.SetReadDeadline(time.Now().Add(pongWait)) })
	go wc.readLoop()
}

func (wc *wsConn) close() {
	wc.closeOnce.Do(func() { _ = wc.c.Close() })
}

// bindSession makes this connection carry ss's messages (a handshake or
// connect of ss arrived on it).
func (wc *wsConn) bindSession(ss *ServerSession) {
	wc.mu.Lock()
	old := wc.session
	wc.session = ss
	wc.mu.Unlock()
	if old != nil && old != ss {
		old.unbind(wc)
	}
	ss.bind(wc)
}

func (wc *wsConn) current() *ServerSession {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.session
}

// wake makes sure a writer runs soon.
func (wc *wsConn) wake() {
	wc.mu.Lock()
	if wc.done {
		wc.mu.Unlock()
		return
	}
	if wc.running {
		wc.dirty = true
		wc.mu.Unlock()
		return
	}
	wc.running = true
	wc.mu.Unlock()
	go wc.writer()
}

// readLoop is the reader, on a fresh goroutine: it waits for input on a
// small stack (awaitFrame), processes every frame the read buffer holds, and
// then waits again on a fresh goroutine, leaving this one and the stack that
// processing grew. A goroutine parked in the websocket library's read would
// keep that stack (4 KiB or more) for as long as the connection is idle.
func (wc *wsConn) readLoop() {
	wc.awaitFrame()
	for wc.readFrame() {
		if wc.br.Buffered() == 0 {
			go wc.readLoop()
			return
		}
	}
	wc.endReader()
}

// awaitFrame waits until the read buffer holds input, and consumes the pong
// frames at its head itself (doing what the pong handler does), so that a
// pong alone does not send the reader into the library's read, where it would
// wait for the next message on a deep stack. Anything else, errors included,
// is left to the websocket library.
func (wc *wsConn) awaitFrame() {
	const finPong, masked = 0x80 | websocket.PongMessage, 0x80
	for {
		b, err := wc.br.Peek(2)
		if err != nil || b[0] != finPong || b[1]&masked == 0 || b[1]&0x7f > 125 {
			return
		}
		n := 2 + 4 + int(b[1]&0x7f) // header, mask key, payload
		if _, err := wc.br.Peek(n); err != nil {
			return
		}
		_, _ = wc.br.Discard(n)
		_ = wc.c.SetReadDeadline(time.Now().Add(pongWait))
	}
}

// endReader ends the connection once its reader is done.
func (wc *wsConn) endReader() {
	wc.mu.Lock()
	wc.closed = true
	wc.mu.Unlock()
	wc.wake()
	<-wc.finishedCh()
	if ss := wc.current(); ss != nil {
		ss.unbind(wc)
	}
	wc.s.conns.remove(wc)
	wc.close()
}

// readFrame reads and processes one message. It reports false when the
// reader must stop.
func (wc *wsConn) readFrame() bool {
	s := wc.s
	_, data, err := wc.c.ReadMessage()
	if err != nil {
		// An oversized frame has already been answered with close 1009 by
		// the websocket library; anything else is the peer leaving.
		return false
	}
	_ = wc.c.SetReadDeadline(time.Now().Add(pongWait))
	msgs, err := bayeux.DecodeBatch(data)
	if errors.Is(err, bayeux.ErrEmptyBatch) {
		return true // an empty batch is a keep-alive
	}
	if err == nil && s.batchTooLarge(len(msgs)) {
		err = errBatchTooLarge
	}
	if err != nil {
		reason := err.Error()
		if len(reason) > 120 {
			reason = reason[:120]
		}
		code := websocket.CloseInvalidFramePayloadData
		if err == errBatchTooLarge {
			code = websocket.CloseMessageTooBig
		}
		_ = wc.c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(code, reason), time.Now().Add(wc.s.cfg.WriteTimeout))
		return false
	}
	release, node := s.route(msgs)
	if release == nil && node == "" {
		if id := batchSession(msgs); id != "" && OwnerOf(id) != "" {
			node = s.locate(context.Background(), id)
		}
		if node == "" {
			// No node serves the session: with durability, adopt it (durable.go).
			switch a := s.orphan(batchSession(msgs)); {
			case a.here:
				release, _ = s.route(msgs)
			case a.node != "":
				node = a.node
			case a.retry:
				wc.queueReplies(s.unreachableReplies(msgs))
				return true
			}
		}
	}
	if node != "" && s.forwardWebsocket(wc, node, msgs, data, wc.userAgent) { // forward_ws.go
		return true
	}
	if !wc.processHere(msgs, release) {
		return false
	}
	return waitBelowMax(wc, wc.pendingLen, wc.spaceCh)
}

// processHere processes a batch of a session this node holds (release, when
// not nil, lets the session move again) and hands the replies to the
// writer. It reports false when that closed the connection (too much output
// pending: ErrSlowConnection).
func (wc *wsConn) processHere(msgs []*bayeux.Mutable, release func()) bool {
	s := wc.s
	res := s.process(msgs, reqInfo{transport: bayeux.TransportWebSocket, userAgent: wc.userAgent, conn: wc})
	if release != nil {
		release()
	}
	n := replyBytes(res.replies)
	wc.mu.Lock()
	if pend := wc.pendingBytes + n; pend > s.cfg.MaxPendingBytes {
		wc.mu.Unlock()
		if res.connect != nil {
			s.finish(res.connect, false)
		}
		s.stats.slowConns.Add(1)
		s.log.Debug("websocket closed", "reason", ErrSlowConnection.Code, "pending", pend)
		wc.close()
		return false
	}
	wc.pendingBytes += n
	wc.pending = append(wc.pending, wsItem{bytes: n, replies: res.replies, connect: res.connect, session: wc.session})
	wc.mu.Unlock()
	wc.wake()
	return true
}

// waitBelowMax blocks the reader while the queue measured by n (wc.pending,
// or the forwarder's queue) holds more than wsMaxPending batches; the channel
// space returns gets a token each time the queue's consumer takes some, from
// the moment it is made. It reports false if the writer failed.
func waitBelowMax(wc *wsConn, n func() int, space func() <-chan struct{}) bool {
	var sp, dead <-chan struct{}
	for n() > wsMaxPending {
		if sp == nil {
			// Made now if not yet: count again, since a take before it gave
			// no token.
			sp, dead = space(), wc.deadCh()
			continue
		}
		select {
		case <-sp:
		case <-dead:
			return false
		}
	}
	return true
}

// deadCh returns a channel closed once a write failed.
func (wc *wsConn) deadCh() <-chan struct{} {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return lazyDone(&wc.dead, wc.failed)
}

// spaceCh returns the channel that gets a token each time the writer takes
// the pending batches.
func (wc *wsConn) spaceCh() <-chan struct{} {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if wc.space == nil {
		wc.space = make(chan struct{}, 1)
	}
	return wc.space
}

// finishedCh returns a channel closed once the writer has cleaned up for
// good (the connection is over).
func (wc *wsConn) finishedCh() <-chan struct{} {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return lazyDone(&wc.finished, wc.done)
}

// lazyDone returns *ch, making it first if it is nil, closed already when
// the event it stands for has happened. The caller holds the lock that
// guards *ch and happened.
func lazyDone(ch *chan struct{}, happened bool) chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{})
		if happened {
			close(*ch)
		}
	}
	return *ch
}

// errBatchTooLarge refuses a batch whose replies alone would pass
// Config.MaxPendingBytes.
var errBatchTooLarge = errors.New("a batch of more messages than a connection may have replies pending")

// batchTooLarge reports whether a batch of n messages would earn replies
// over Config.MaxPendingBytes, so that it is refused before its replies take
// memory (a frame of tiny messages would otherwise earn 250 times its size).
func (s *Server) batchTooLarge(n int) bool {
	return int64(n)*(perMessageOverhead+minReplySize) > s.cfg.MaxPendingBytes
}

// replyBytes is what msgs count against Config.MaxPendingBytes.
func replyBytes(msgs []*ServerMessage) int64 {
	n := int64(0)
	for _, m := range msgs {
		n += m.size() + perMessageOverhead
	}
	return n
}

func (wc *wsConn) pendingLen() int {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return len(wc.pending)
}

// writer runs until no work is left.
func (wc *wsConn) writer() {
	for {
		wc.mu.Lock()
		items := wc.pending
		wc.pending = nil
		closed := wc.closed
		wc.dirty = false
		if wc.closeAfter {
			wc.goAway = true
		}
		space := wc.space
		wc.mu.Unlock()
		if space != nil {
			select {
			case space <- struct{}{}:
			default:
			}
		}
		if closed {
			wc.cleanup(items)
			return
		}
		wc.bc.begin()
		wc.step(items)
		n, err := wc.bc.end()
		if err != nil {
			wc.fail()
		}
		wc.settle(n, err)
		var done int64
		for _, it := range items {
			done += it.bytes
		}
		if done > 0 {
			wc.mu.Lock()
			wc.pendingBytes -= done
			wc.mu.Unlock()
		}
		if wc.goAway && !wc.broken {
			_ = wc.c.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseGoingAway, "session moved: reconnect"), time.Now().Add(wc.s.cfg.WriteTimeout))
			wc.fail()
		}
		wc.mu.Lock()
		if !wc.dirty {
			wc.running = false
			wc.mu.Unlock()
			return
		}
		wc.mu.Unlock()
	}
}

// cleanup answers nothing more: it releases held connects (their messages stay
// queued for the session's next connection) and stops the timers.
func (wc *wsConn) cleanup(items []wsItem) {
	s := wc.s
	for _, it := range items {
		if it.connect != nil {
			s.finish(it.connect, false)
		}
	}
	if wc.held != nil {
		s.finish(wc.held, false)
		wc.held = nil
	}
	wc.timer.Stop()
	wc.mu.Lock()
	wc.done = true
	wc.running = false
	finished := wc.finished
	wc.mu.Unlock()
	if finished != nil {
		close(finished)
	}
}

func (wc *wsConn) fail() {
	if !wc.broken {
		wc.broken = true
		wc.mu.Lock()
		wc.failed = true
		dead := wc.dead
		wc.mu.Unlock()
		if dead != nil {
			close(dead)
		}
		wc.close()
	}
}

// step does one round of the writer's work.
func (wc *wsConn) step(items []wsItem) {
	for _, it := range items {
		if it.session != nil {
			wc.sess = it.session
		}
		if len(it.replies) > 0 {
			_ = wc.writeFrame(it.replies) // a failure marks the connection broken
		}
		if it.connect != nil {
			if wc.held != nil {
				wc.answer() // released by the newer connect
			}
			wc.held = it.connect
			if wc.held.timeout <= 0 {
				wc.answer()
			}
		}
	}
	only := false
	if ss := wc.sess; ss != nil {
		select {
		case <-ss.done:
			wc.answer()
			wc.sess = nil
			// A session that moved has its client reconnect, through the
			// Service, to a node that stays.
			if ss.Err() == ErrMoved {
				wc.goAway = true
			}
		default:
			only = ss.queue.isDeliverOnly()
			// A session that moved to another connection (the client opened a
			// new websocket; this one may be dead) has its messages sent there.
			// A connection whose write failed takes nothing: the messages
			// wait for the session's next connection.
			if !only && ss.boundTo(wc) && !wc.broken {
				if q := ss.queue.take(); len(q) > 0 {
					wc.writeBatches(ss, q, len(q))
					wc.recycled = append(wc.recycled, takenQueue{ss, q})
				}
			}
		}
	}
	if h := wc.held; h != nil {
		// Messages go out as they come unless the session delivers only with
		// connect replies (ack extension): then they complete the connect.
		ready := h.ended()
		if only {
			ready = h.ready()
		}
		if ready || !time.Now().Before(h.deadline) {
			wc.answer()
		}
	}
	if now := time.Now(); !now.Before(wc.nextPing) {
		wc.nextPing = now.Add(pingPeriod)
		if !wc.broken {
			_ = wc.c.SetWriteDeadline(now.Add(wc.s.cfg.WriteTimeout))
			if err := wc.c.WriteMessage(websocket.PingMessage, nil); err != nil {
				wc.fail()
			}
		}
	}
	due := wc.nextPing
	if h := wc.held; h != nil && h.deadline.Before(due) {
		due = h.deadline
	}
	if !due.Equal(wc.timerDue) {
		wc.timerDue = due
		wc.timer.Reset(time.Until(due))
	}
}

// answer replies to the held connect with the messages that go with it.
func (wc *wsConn) answer() {
	h := wc.held
	if h == nil {
		return
	}
	wc.held = nil
	msgs, reply := wc.s.finish(h, !wc.broken)
	queued := len(msgs)
	if h.session.AckEnabled() {
		queued = 0 // unacknowledged messages go again with the next connect reply
	}
	if reply != nil {
		msgs = append(msgs, reply)
	}
	wc.writeBatches(h.session, msgs, queued)
}

// writeBatches writes msgs in frames of at most WSMessagesPerFrame messages.
// The first queued of msgs were taken from ss's queue: those that do not reach
// the network go back to its head (see settle).
func (wc *wsConn) writeBatches(ss *ServerSession, msgs []*ServerMessage, queued int) {
	n := wc.s.cfg.WSMessagesPerFrame
	for len(msgs) > 0 {
		k := min(n, len(msgs))
		if len(msgs) == k+1 && msgs[k].IsMeta() {
			k++ // keep the connect reply in the frame of the last messages
		}
		ok := wc.writeFrame(msgs[:k])
		if q := min(k, queued); q > 0 {
			end := -1
			if ok {
				end = wc.bc.buffered()
			}
			wc.sent = append(wc.sent, sentFrame{ss: ss, msgs: msgs[:q], end: end})
			queued -= q
		}
		msgs = msgs[k:]
	}
}

// settle ends the writer's round, in which n bytes were written and the write
// failed with err: the queued messages of the frames that were not written go
// back to the head of their session's queue, in their order, for the
// session's next connection (see sessionQueue.requeue for what a reconnect in
// between does to the order). Messages in a frame that was only partly written are put back
// too: the client cannot have read them.
func (wc *wsConn) settle(n int, err error) {
	var back []*ServerMessage
	var owner *ServerSession
	for _, f := range wc.sent {
		if f.end >= 0 && (err == nil || f.end <= n) {
			continue
		}
		if owner != nil && f.ss != owner {
			owner.queue.requeue(back)
			back = nil
		}
		owner = f.ss
		back = append(back, f.msgs...)
	}
	if len(back) > 0 {
		owner.queue.requeue(back)
	}
	clear(wc.sent)
	wc.sent = wc.sent[:0]
	for _, t := range wc.recycled {
		t.ss.queue.recycle(t.q)
	}
	clear(wc.recycled)
	wc.recycled = wc.recycled[:0]
}

// writeFrame writes msgs as one frame, in the writer's round (see
// batchConn.appendFrame). It reports false when the connection failed.
func (wc *wsConn) writeFrame(msgs []*ServerMessage) bool {
	if wc.broken || !wc.bc.appendFrame(msgs) {
		return false
	}
	wc.s.stats.messagesOut.Add(uint64(len(msgs)))
	return true
}
