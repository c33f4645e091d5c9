package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Durable sessions: a session outlives the death of its node.
//
// Every broadcast message is stored in the backbone's stream before any node
// delivers it, so each delivered message has a stream sequence. A session's
// record (its subscriptions, attributes, what it remembers of its client, its
// owner and its position: the sequence below which it needs nothing more) is
// written by its owner's record writer: at once when subscriptions or
// attributes change, at most every DurableInterval when only the position
// moved. Records are written with compare-and-set: a node that finds its
// write refused has lost the session to another node and ends its copy.
//
// With the ack extension, a batch id says up to which sequence the client
// has everything: it is at least the batch's highest sequence shifted left
// by seqShift. A node that adopts the session replays the stream from the
// record's position into the session's unacknowledged messages, each as a
// batch of its own sequence; the client's next acknowledgement then drops
// exactly what it already has, and the rest goes out again. Without acks,
// the client may see again what it received after the record's last write.
//
// A node adopts a session when a request for it reaches the node and its
// owner is gone: the owner no longer answers on the backbone, or does not
// hold the session (it restarted). Messages published meanwhile are in the
// stream and come with the replay. When the stream no longer holds
// everything after the position (maxAge or maxBytes), the session cannot be
// rebuilt faithfully: its record is deleted and the client is told to
// handshake again.

// DurableStore is what durable sessions need of the backbone
// (backbone.Durable implements it).
type DurableStore interface {
	Publish(ctx context.Context, channel string, data []byte, id, dedup string) (uint64, error)
	GetRecord(ctx context.Context, id string) ([]byte, uint64, error)
	PutRecord(ctx context.Context, id string, data []byte, rev uint64) (uint64, error)
	DeleteRecord(ctx context.Context, id string, rev uint64) error
	Replay(ctx context.Context, patterns []string, from uint64) ([]backbone.Message, uint64, error)
	LastSeen() uint64
}

// Durable-session defaults.
const (
	// DefaultDurableInterval bounds how often a record is rewritten for its
	// position alone.
	DefaultDurableInterval = time.Second
	// DurableTick is how often the record writer runs.
	DurableTick = 100 * time.Millisecond
	// durableKeepAlive is how often an unchanged record is rewritten, well
	// within backbone.DefaultRecordTTL.
	durableKeepAlive = backbone.DefaultRecordTTL / 3
	// durableWriters bounds the record writes in flight.
	durableWriters = 16
	// adoptConcurrency bounds the adoptions a node runs at once.
	adoptConcurrency = 32
	// ownerCheckTimeout bounds asking a record's owner whether it holds the
	// session.
	ownerCheckTimeout = time.Second
	// seqShift places a stream sequence in an ack batch id: below 2^53 (a
	// JavaScript client's exact integers) for sequences below 2^33.
	seqShift = 20
)

// errNotStored answers a publish the durable stream refused.
const errNotStored = "503::the message could not be stored durably"

// sessionRecord is a durable session's record: its snapshot without
// messages, its owner and its position.
type sessionRecord struct {
	SessionSnapshot
	Owner string `json:"owner"`
	Seq   uint64 `json:"seq"`
}

// durableStats counts durable-session events.
type durableStats struct {
	adopted, gaps, fenced, writes, writeErrors, notStored atomic.Uint64
}

// recordWriter holds the sessions whose records are to be written.
type recordWriter struct {
	mu    sync.Mutex
	dirty map[*ServerSession]struct{}
	safe  atomic.Uint64 // the position of a session with nothing pending
	next  uint64        // LastSeen at the previous tick: safe at the next
	kept  time.Time     // the last keep-alive round
}

// seqBatch is the ack batch id that says the client has every sequence up
// to the highest among msgs.
func seqBatch(msgs []*ServerMessage) int64 {
	var hi uint64
	for _, m := range msgs {
		hi = max(hi, m.seq)
	}
	return int64(hi << seqShift)
}

// positionLocked is the durable position of the queue: one below the
// lowest sequence still queued or unacknowledged, or 0 when none is (the
// caller then uses the node's safe position). Lock must be held.
func (q *sessionQueue) positionLocked() uint64 {
	var lo uint64
	note := func(m *ServerMessage) {
		if m.seq != 0 && (lo == 0 || m.seq < lo) {
			lo = m.seq
		}
	}
	for _, m := range q.msgs {
		note(m)
	}
	if q.ack != nil {
		for _, e := range q.ack.unacked {
			note(e.msg)
		}
	}
	if lo == 0 {
		return 0
	}
	return lo - 1
}

// markRecord has the record writer write ss's record: within DurableTick
// when urgent, else within DurableInterval.
func (s *Server) markRecord(ss *ServerSession, urgent bool) {
	if s.cfg.Durable == nil || ss.local != nil {
		return
	}
	if urgent {
		ss.recUrgent.Store(true)
	}
	if ss.recDirty.Swap(true) {
		return
	}
	s.records.mu.Lock()
	if s.records.dirty == nil {
		s.records.dirty = map[*ServerSession]struct{}{}
	}
	s.records.dirty[ss] = struct{}{}
	s.records.mu.Unlock()
}

// recordLoop is the record writer.
func (s *Server) recordLoop() {
	defer s.wg.Done()
	t := time.NewTicker(DurableTick)
	defer t.Stop()
	s.records.kept = time.Now()
	for {
		select {
		case <-s.closeCh:
			return
		case now := <-t.C:
			s.writeRecords(now)
		}
	}
}

// writeRecords writes the records that are due.
func (s *Server) writeRecords(now time.Time) {
	rw := &s.records
	// What this node had seen a tick ago has been delivered into the queues
	// by now: a session with nothing pending needs nothing up to there.
	rw.safe.Store(rw.next)
	rw.next = s.cfg.Durable.LastSeen()
	if now.Sub(rw.kept) > durableKeepAlive {
		rw.kept = now
		for _, ss := range s.Sessions() {
			s.markRecord(ss, false)
		}
	}
	rw.mu.Lock()
	dirty := rw.dirty
	rw.dirty = nil
	rw.mu.Unlock()
	sem := make(chan struct{}, durableWriters)
	var wg sync.WaitGroup
	for ss := range dirty {
		due := ss.recUrgent.Load() || ss.Err() != nil ||
			now.Sub(time.Unix(0, ss.recWritten.Load())) >= s.cfg.DurableInterval
		if !due {
			ss.recDirty.Store(false)
			s.markRecord(ss, false) // next tick
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.writeRecord(ss, now)
		}()
	}
	wg.Wait()
}

// writeRecord writes, or deletes, one session's record.
func (s *Server) writeRecord(ss *ServerSession, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandoverTimeout)
	defer cancel()
	if !ss.use.TryRLock() {
		ss.recDirty.Store(false)
		s.markRecord(ss, true) // moving in or out: when that is over
		return
	}
	defer ss.use.RUnlock()
	ss.recDirty.Store(false)
	urgent := ss.recUrgent.Swap(false)
	if err := ss.Err(); err != nil {
		if rev := ss.recRev.Swap(0); rev != 0 && endsRecord(err) {
			if derr := s.cfg.Durable.DeleteRecord(ctx, ss.id, rev); derr != nil && !errors.Is(derr, backbone.ErrRecordConflict) {
				s.log.Warn("cannot delete a durable session record", "session", ss.id, "err", derr)
			}
		}
		return
	}
	snap, _, pos, err := ss.snapshot(false, false)
	if errors.Is(err, ErrSessionClosed) {
		return // arriving, or ended meanwhile: the next mark writes it
	}
	if err != nil {
		s.log.Warn("cannot write a durable session record", "session", ss.id, "err", err)
		return
	}
	if pos == 0 {
		pos = s.records.safe.Load()
	}
	rev := snap.Record
	snap.Record = 0
	data, err := json.Marshal(sessionRecord{SessionSnapshot: snap, Owner: s.nodeID, Seq: pos})
	if err != nil {
		return
	}
	nrev, err := s.cfg.Durable.PutRecord(ctx, ss.id, data, rev)
	switch {
	case err == nil:
		s.durableStats.writes.Add(1)
		if !ss.recRev.CompareAndSwap(rev, nrev) {
			return // ended meanwhile: the delete's mark follows
		}
		ss.recWritten.Store(now.UnixNano())
	case errors.Is(err, backbone.ErrRecordConflict):
		// Another node adopted the session: this copy is stale.
		s.durableStats.fenced.Add(1)
		s.log.Warn("a durable session was adopted by another node; ending the copy here", "session", ss.id)
		ss.recRev.Store(0)
		s.removeSession(ss, ErrMoved)
	default:
		s.durableStats.writeErrors.Add(1)
		s.log.Warn("cannot write a durable session record", "session", ss.id, "err", err)
		ss.recUrgent.Store(urgent)
		s.markRecord(ss, urgent) // again at the next tick
	}
}

// endsRecord reports whether a session that ended for reason is gone for
// good: its record goes too. A session that moved, or ended with its node,
// keeps its record for the node that has it or will adopt it.
func endsRecord(reason error) bool {
	switch reason {
	case ErrMoved, ErrShutdown, errMoveAborted:
		return false
	}
	return true
}

// durablePublish stores out, the copy of in its subscribers get, in the
// stream before anyone delivers it, and gives it its sequence. The client's
// clientId and message id make the stream keep one copy of a publish that
// is processed twice (its first node died before answering and another one
// adopted the session and processed the batch again): errAlreadyPublished
// then says that it was stored, and delivered, the first time.
func (s *Server) durablePublish(channel string, in, out *ServerMessage) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandoverTimeout)
	defer cancel()
	dedup := ""
	if in.m.ClientID != "" && in.m.ID != "" {
		dedup = in.m.ClientID + "/" + in.m.ID
	}
	seq, err := s.cfg.Durable.Publish(ctx, channel, out.Encoded(), out.uid.String(), dedup)
	if errors.Is(err, backbone.ErrDuplicate) {
		return errAlreadyPublished
	}
	if err != nil {
		s.durableStats.notStored.Add(1)
		s.log.Warn("the durable stream did not store a message", "channel", channel, "err", err)
		return err
	}
	out.seq = seq
	return nil
}

// errAlreadyPublished: the stream had the publish already.
var errAlreadyPublished = errors.New("server: published already")

// adoption is where a session no node serves ends up.
type adoption struct {
	here  bool   // the session is on this node now
	node  string // else the node that holds it, when known
	retry bool   // else JetStream failed for now: the client should try again
}

// errAdoptionFailed: a session could not be adopted for now (JetStream did
// not answer); its record stays, and the client's next request tries again.
var errAdoptionFailed = errors.New("server: the durable session could not be adopted for now")

// orphan makes this node serve session id, whose node is gone, from its
// durable record. It reports where the session is: here, on another node
// (that adopted it first, or that still holds it), or nowhere.
func (s *Server) orphan(id string) adoption {
	if s.cfg.Durable == nil || id == "" || OwnerOf(id) == "" {
		return adoption{}
	}
	if ss := s.hub.session(id); ss != nil && ss.Err() == nil {
		return adoption{here: true}
	}
	v, _, _ := s.adoptions.Do(id, func() (any, error) {
		s.adoptSem <- struct{}{}
		defer func() { <-s.adoptSem }()
		return s.adoptFromRecord(id), nil
	})
	return v.(adoption)
}

// adoptFromRecord rebuilds session id here from its record and the stream.
func (s *Server) adoptFromRecord(id string) adoption {
	if s.draining.Load() {
		return adoption{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.HandoverTimeout)
	defer cancel()
	data, rev, err := s.cfg.Durable.GetRecord(ctx, id)
	if err != nil {
		if errors.Is(err, backbone.ErrRecordNotFound) {
			return adoption{}
		}
		s.log.Warn("cannot read a durable session record", "session", id, "err", err)
		return adoption{retry: true}
	}
	var rec sessionRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.ID != id {
		s.log.Warn("a durable session record does not decode", "session", id, "err", err)
		return adoption{}
	}
	if rec.Owner != s.nodeID && s.holds(ctx, rec.Owner, id) {
		s.routes.put(id, rec.Owner)
		return adoption{node: rec.Owner}
	}
	from := rec.Owner
	rec.Owner = s.nodeID
	rec.Record = 0
	data, _ = json.Marshal(rec) // it decoded from JSON: it encodes
	nrev, err := s.cfg.Durable.PutRecord(ctx, id, data, rev)
	if err != nil {
		if errors.Is(err, backbone.ErrRecordConflict) {
			// Another node adopted it first, or its owner wrote: ask again.
			if data, _, err := s.cfg.Durable.GetRecord(ctx, id); err == nil {
				var now sessionRecord
				if json.Unmarshal(data, &now) == nil && now.Owner != s.nodeID {
					s.routes.put(id, now.Owner)
					return adoption{node: now.Owner}
				}
			}
		}
		s.log.Warn("cannot take over a durable session", "session", id, "err", err)
		return adoption{retry: !errors.Is(err, backbone.ErrRecordConflict)}
	}
	snap := rec.SessionSnapshot
	snap.Record = nrev
	ss, err := s.restoreSession(snap, true) // subscribed, closed to requests
	if err != nil {
		s.log.Warn("cannot adopt a durable session", "session", id, "err", err)
		return adoption{}
	}
	// The new interest reaches every NATS server; then whatever the stream
	// stores is either replayed or arrives here, or both (one copy is kept).
	time.Sleep(s.cfg.HandoverSettle)
	msgs, _, err := s.cfg.Durable.Replay(ctx, rec.Subscriptions, rec.Seq+1)
	if err != nil {
		gap := errors.Is(err, backbone.ErrGap)
		ss.recRev.Store(0)
		if !gap {
			// The record, now this node's, stays for the next request.
			s.log.Warn("cannot adopt a durable session for now", "session", id, "from", from, "err", err)
			s.removeSession(ss, ErrShutdown)
			ss.endArrival()
			return adoption{retry: true}
		}
		s.durableStats.gaps.Add(1)
		s.log.Warn("cannot adopt a durable session: the messages it had not received are not all in the stream",
			"session", id, "from", from, "err", err)
		s.removeSession(ss, ErrServerDisconnect)
		ss.endArrival()
		if derr := s.cfg.Durable.DeleteRecord(ctx, id, nrev); derr != nil && !errors.Is(derr, backbone.ErrRecordConflict) {
			s.log.Warn("cannot delete a durable session record", "session", id, "err", derr)
		}
		return adoption{}
	}
	replayed := make([]*ServerMessage, 0, len(msgs))
	for _, m := range msgs {
		dm, err := bayeux.Decode(m.Data)
		if err != nil {
			continue
		}
		sm := newEncodedMessage(dm, m.Data)
		sm.uid = parseMsgID(m.ID)
		sm.seq = m.Seq
		replayed = append(replayed, sm)
	}
	if !ss.arriveReplayed(replayed) {
		return adoption{}
	}
	s.routes.drop(id)
	s.durableStats.adopted.Add(1)
	s.markRecord(ss, true)
	s.log.Info("adopted a durable session", "session", id, "from", from, "replayed", len(replayed))
	return adoption{here: true}
}

// holds asks node whether it serves session id, live.
func (s *Server) holds(ctx context.Context, node, id string) bool {
	rq, _ := s.router()
	if rq == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, ownerCheckTimeout)
	defer cancel()
	reply, err := rq.Request(ctx, node, frame(forwardMeta{Kind: kindWhere}, []byte(id)))
	return err == nil && string(reply) == node
}

// arriveReplayed opens a session adopted from its record with the messages
// replayed from the stream: with acks, each becomes an unacknowledged batch
// of its own sequence; without, they are queued ahead of what arrived here
// meanwhile. One copy of each message is kept.
func (ss *ServerSession) arriveReplayed(replayed []*ServerMessage) bool {
	ss.mu.Lock()
	if !ss.arriving || ss.reason != nil {
		ss.mu.Unlock()
		return false
	}
	ss.mu.Unlock()
	q := &ss.queue
	restored := 0
	q.mu.Lock()
	if q.ack != nil {
		for _, m := range replayed {
			q.ack.unacked = append(q.ack.unacked, ackEntry{batch: int64(m.seq << seqShift), msg: m})
			q.ack.bytes += m.size()
		}
	} else {
		q.msgs = append(replayed, q.msgs...)
		restored = len(replayed)
	}
	q.mu.Unlock()
	q.arrive(restored, nil)
	ss.endArrival()
	return true
}

// watchArrival ends an arrival whose source node dies before finalizing it:
// the session's requests wait no longer, and with durability the next one
// adopts it from its record.
func (s *Server) watchArrival(ss *ServerSession, source string) {
	rq, _ := s.router()
	if rq == nil || source == "" || ss.arrivalDone == nil {
		return
	}
	gone, done := s.watchNode(rq, source)
	defer done()
	select {
	case <-gone:
		s.log.Warn("the node handing a session over died; the move is given up", "session", ss.id, "node", source)
		s.abortArrival(ss.id)
	case <-ss.arrivalDone:
	case <-s.closeCh:
	}
}
