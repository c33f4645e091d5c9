package server

import (
	"sync"
	"time"
)

// sessionQueue is one session's outgoing messages: the queue with its byte
// count, the lazy-flush timer, the ack extension's unacknowledged batches and
// the "deliver only with /meta/connect replies" flag. It is the one place a
// message waits between its publish and its write, with push, take, requeue
// and acknowledge as its operations. It has its own lock, taken after the
// session's (never the other way round), and calls wake, without holding it,
// when there is something new to send.
type sessionQueue struct {
	// Set before the queue is used; never changed.
	maxMsgs     int   // messages, 0 or less: no limit
	maxBytes    int64 // bytes (queued plus unacknowledged), 0 or less: no limit
	lazyTimeout time.Duration
	wake        func()
	// advanced, when not nil, is called (without the lock) when messages
	// leave the queue or are acknowledged: the durable position moved.
	advanced func()

	mu          sync.Mutex
	msgs        []*ServerMessage
	bytes       int64
	deliverOnly bool      // messages go out only with /meta/connect replies
	ack         *ackState // nil unless the session negotiated the ack extension
	lazyTimer   *time.Timer
	lazyGen     uint64 // identifies the current lazyTimer; a stale one does nothing
	lazyDue     bool   // the lazy timer fired: flush lazy messages
	closed      bool   // the session ended: push refuses everything
	frozen      bool   // the session is moving out: nothing is taken
	// durable: the session's messages have stream sequences, and ack batch
	// ids say up to which sequence the client has everything (durable.go).
	durable bool
	// seen holds the IDs of the messages a session that moved here already
	// has, for a while after the move, so that a copy that reaches this node
	// late (published before the move) is not queued twice.
	seen map[msgID]struct{}
}

// ackState is the ack extension's bookkeeping: the last batch id sent and the
// messages sent in batches the client has not acknowledged, oldest first.
type ackState struct {
	batch   int64
	unacked []ackEntry
	bytes   int64 // encoded size of unacked, counted against maxBytes
}

type ackEntry struct {
	batch int64
	msg   *ServerMessage
}

// pushResult says what push did with a message.
type pushResult int

const (
	pushed     pushResult = iota // queued
	pushClosed                   // the session ended; the message is dropped
	pushFull                     // over a limit; the queue is left as it was
)

// push appends m, unless the queue is closed or m would take it past a limit
// (the caller then ends the session as a slow consumer). A lazy message starts
// the lazy timer; any other wakes the session's reader.
func (q *sessionQueue) push(m *ServerMessage) pushResult {
	size := m.size()
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return pushClosed
	}
	if q.seen != nil && m.uid != (msgID{}) {
		if _, dup := q.seen[m.uid]; dup {
			q.mu.Unlock()
			return pushed // it is queued, or was delivered, already
		}
	}
	pending := q.bytes
	if q.ack != nil {
		pending += q.ack.bytes // a client that never acknowledges is a slow consumer too
	}
	if (q.maxBytes > 0 && pending+size > q.maxBytes) || (q.maxMsgs > 0 && len(q.msgs) >= q.maxMsgs) {
		q.mu.Unlock()
		return pushFull
	}
	q.msgs = append(q.msgs, m)
	q.bytes += size
	lazy := m.lazy
	if lazy && q.lazyTimer == nil {
		q.lazyGen++
		gen := q.lazyGen
		q.lazyTimer = time.AfterFunc(q.lazyTimeout, func() { q.lazyFire(gen) })
	}
	q.mu.Unlock()
	if !lazy {
		q.wake()
	}
	return pushed
}

func (q *sessionQueue) lazyFire(gen uint64) {
	q.mu.Lock()
	if gen != q.lazyGen {
		q.mu.Unlock()
		return // the queue was taken since this timer started
	}
	q.lazyTimer = nil
	q.lazyDue = true
	q.mu.Unlock()
	q.wake()
}

// take removes and returns every queued message, for direct websocket
// delivery (which the ack extension does not use).
func (q *sessionQueue) take() []*ServerMessage {
	q.mu.Lock()
	if q.frozen {
		q.mu.Unlock()
		return nil
	}
	msgs := q.takeLocked()
	q.mu.Unlock()
	if q.advanced != nil && len(msgs) > 0 {
		q.advanced()
	}
	return msgs
}

// takeLocked empties the queue and forgets the lazy flush.
// Lock must be held.
func (q *sessionQueue) takeLocked() []*ServerMessage {
	msgs := q.msgs
	q.msgs = nil
	q.bytes = 0
	q.lazyDue = false
	if q.lazyTimer != nil {
		q.lazyTimer.Stop()
		q.lazyTimer = nil
	}
	q.lazyGen++
	return msgs
}

// takeForConnect returns the messages that go with a /meta/connect reply and,
// with the ack extension, the batch id to send with them (-1 otherwise). With
// acks, the newly taken messages become the next batch, and every
// unacknowledged message goes out again, oldest first.
func (q *sessionQueue) takeForConnect() ([]*ServerMessage, int64) {
	if q.advanced != nil {
		defer q.advanced()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.frozen {
		return nil, -1 // the session moves: its messages go with it
	}
	msgs := q.takeLocked()
	if q.ack == nil {
		return msgs, -1
	}
	a := q.ack
	if len(msgs) > 0 {
		a.batch++
		if q.durable {
			a.batch = max(a.batch, seqBatch(msgs))
		}
		for _, m := range msgs {
			a.unacked = append(a.unacked, ackEntry{a.batch, m})
			a.bytes += m.size()
		}
	}
	if n := len(a.unacked); n > 0 && a.unacked[n-1].batch > a.batch {
		a.batch = a.unacked[n-1].batch // replayed by an adopting node (durable.go)
	}
	out := make([]*ServerMessage, len(a.unacked))
	for i, e := range a.unacked {
		out[i] = e.msg
	}
	return out, a.batch
}

// requeue puts msgs, taken but not delivered (their websocket write failed),
// back at the head of the queue, in their order, and wakes the session's
// reader. They are not lost, but they are not always first: if the client
// has meanwhile reconnected and received newer messages on another
// connection, the put-back ones arrive after those. It does nothing once the
// queue is closed.
func (q *sessionQueue) requeue(msgs []*ServerMessage) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	all := make([]*ServerMessage, 0, len(msgs)+len(q.msgs))
	q.msgs = append(append(all, msgs...), q.msgs...)
	for _, m := range msgs {
		q.bytes += m.size()
		if m.lazy {
			q.lazyDue = true // it was due already
		}
	}
	q.mu.Unlock()
	q.wake()
}

// recycle gives back a slice take returned once its messages are written, so
// steady traffic does not allocate a queue per message.
func (q *sessionQueue) recycle(msgs []*ServerMessage) {
	if cap(msgs) == 0 || cap(msgs) > 64 {
		return
	}
	clear(msgs)
	q.mu.Lock()
	if q.msgs == nil && !q.closed {
		q.msgs = msgs[:0]
	}
	q.mu.Unlock()
}

// acknowledge drops the unacknowledged messages of batches up to and
// including batch.
func (q *sessionQueue) acknowledge(batch int64) {
	if q.advanced != nil {
		defer q.advanced()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ack == nil {
		return
	}
	a := q.ack
	i := 0
	for i < len(a.unacked) && a.unacked[i].batch <= batch {
		a.bytes -= a.unacked[i].msg.size()
		i++
	}
	a.unacked = append(a.unacked[:0], a.unacked[i:]...)
	if q.durable && batch > a.batch {
		a.batch = batch // a batch another node sent before this one adopted the session
	}
}

// ready reports whether a held /meta/connect should be answered for the
// queue's sake: a message that is not lazy waits, the lazy flush is due, or
// (with acks) a batch waits for its acknowledgement.
func (q *sessionQueue) ready() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.frozen {
		return false
	}
	if q.lazyDue || q.ack != nil && len(q.ack.unacked) > 0 {
		return true
	}
	for _, m := range q.msgs {
		if !m.lazy {
			return true
		}
	}
	return false
}

// close empties the queue for good and returns how many messages it dropped
// (acknowledged-pending ones not counted).
func (q *sessionQueue) close() (dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	return len(q.takeLocked())
}

// enableAck turns the ack extension on; messages then go out only with
// /meta/connect replies.
func (q *sessionQueue) enableAck() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ack == nil {
		q.ack = &ackState{}
	}
	q.deliverOnly = true
}

func (q *sessionQueue) ackEnabled() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ack != nil
}

func (q *sessionQueue) unacknowledged() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ack == nil {
		return 0
	}
	return len(q.ack.unacked)
}

func (q *sessionQueue) setDeliverOnly(v bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deliverOnly = v
}

func (q *sessionQueue) isDeliverOnly() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deliverOnly
}

func (q *sessionQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

func (q *sessionQueue) size() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// tail returns the queued messages that are not in kept (those a snapshot
// took), in queue order.
func (q *sessionQueue) tail(kept map[*ServerMessage]struct{}) []*ServerMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*ServerMessage
	for _, m := range q.msgs {
		if _, ok := kept[m]; !ok {
			out = append(out, m)
		}
	}
	return out
}

// thaw undoes a freeze whose move failed.
func (q *sessionQueue) thaw() {
	q.mu.Lock()
	q.frozen = false
	q.mu.Unlock()
	q.wake()
}

// seenWindow is how long a session that moved here refuses late copies of
// the messages it brought.
const seenWindow = 10 * time.Second

// arrive completes a move in: the queue the snapshot brought (its first
// restored messages), then tail, then what reached this node since, with one
// copy of each message (by ID).
func (q *sessionQueue) arrive(restored int, tail []*ServerMessage) {
	q.mu.Lock()
	seen := map[msgID]struct{}{}
	if q.ack != nil {
		for _, e := range q.ack.unacked {
			if e.msg.uid != (msgID{}) {
				seen[e.msg.uid] = struct{}{}
			}
		}
	}
	restored = min(restored, len(q.msgs))
	live := q.msgs[restored:]
	out := make([]*ServerMessage, 0, len(q.msgs)+len(tail))
	q.bytes = 0
	for _, part := range [][]*ServerMessage{q.msgs[:restored], tail, live} {
		for _, m := range part {
			if m.uid != (msgID{}) {
				if _, dup := seen[m.uid]; dup {
					continue
				}
				seen[m.uid] = struct{}{}
			}
			out = append(out, m)
			q.bytes += m.size()
			if m.lazy {
				q.lazyDue = true
			}
		}
	}
	q.msgs = out
	q.seen = seen
	q.mu.Unlock()
	time.AfterFunc(seenWindow, func() {
		q.mu.Lock()
		q.seen = nil
		q.mu.Unlock()
	})
	if len(out) > 0 {
		q.wake()
	}
}

func (q *sessionQueue) snapshotMessages() []*ServerMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*ServerMessage(nil), q.msgs...)
}
