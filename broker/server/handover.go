package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Handover: a session moves to another node, whole, while its client goes on.
//
// The node that lets a session go (the source) freezes it: its queue takes in
// deliveries but gives nothing out, and requests for it wait. It writes the
// session out (a SessionSnapshot) and asks the backbone for any other node that
// takes work to adopt it. The adopting node (the target) restores it, with its
// subscriptions on the backbone, but keeps it closed ("arriving") and replies.
// The source then sends the target the tail: whatever reached the frozen queue
// after the snapshot. Some of those messages may also have reached the target
// through its own new subscriptions; every published message carries an ID, so
// the target keeps one copy, in order: the snapshot's queue, the tail, then
// what only it received. It opens the session and replies; the source ends its
// copy (ErrMoved: its held connects are answered with advice to connect again
// at once, its websockets closed after that reply), remembers where the session
// went, and lets the waiting requests go there.
//
// Any node finds a session that moved: its own session map, then where it
// sent the session (moved), then where it last learned it is (routes), then
// the node that created it (the clientId's prefix); a node that has none of
// these, or whose guess is gone, asks every node (backbone.Router.Ask). A
// node that receives a forwarded request for a session it does not hold looks
// again, up to maxHops.

// Handover errors and reasons.
var (
	// ErrMoved ends a session that moved to another node.
	ErrMoved = &DisconnectReason{Code: "moved", Reconnect: bayeux.ReconnectRetry}
	// errMoveAborted ends an arriving session whose move was given up.
	errMoveAborted = &DisconnectReason{Code: "move_aborted", Reconnect: bayeux.ReconnectHandshake}
	// ErrNoHandover says the backbone cannot move sessions (it is not a
	// backbone.Router and Requester, or handover is disabled).
	ErrNoHandover = errors.New("server: handover needs a backbone that routes requests")
)

// Node request kinds (forwardMeta.Kind) of a handover.
const (
	kindAdopt    = "adopt"    // body: SessionSnapshot
	kindFinalize = "finalize" // body: finalizeBody
	kindAbort    = "abort"    // body: the clientId
	kindWhere    = "where"    // body: the clientId; the reply is the node, or silence
)

// maxHops bounds how often a request for a session is passed on between nodes.
const maxHops = 3

// Handover defaults.
const (
	DefaultHandoverTimeout     = 5 * time.Second
	DefaultHandoverConcurrency = 64
	// DefaultHandoverSettle is how long the source waits between the target's
	// adoption and collecting the tail: long enough for the target's new
	// interest to reach every NATS server of a cluster, so that the tail
	// covers what the target could not hear yet.
	DefaultHandoverSettle = 20 * time.Millisecond
	// DefaultLocateTimeout bounds Ask when a session is nowhere to be found.
	DefaultLocateTimeout = 500 * time.Millisecond
	// movedTTL is how long a node remembers where a session went.
	movedTTL = 10 * time.Minute
	// maxRoutes bounds the sessions a node remembers in each of moved and routes.
	maxRoutes = 1 << 20
)

type finalizeBody struct {
	ID   string          `json:"id"`
	Tail []QueuedMessage `json:"tail,omitempty"`
}

// handoverStats counts moves.
type handoverStats struct {
	out, failed, timedOut, adopted, located atomic.Uint64
}

// routeTable maps clientIds to nodes, with an expiry, bounded in size.
type routeTable struct {
	mu    sync.Mutex
	m     map[string]routeEntry
	swept time.Time // the last sweep
}

type routeEntry struct {
	node    string
	expires time.Time
}

func (rt *routeTable) get(id string) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	e, ok := rt.m[id]
	if !ok {
		return ""
	}
	if time.Now().After(e.expires) {
		delete(rt.m, id)
		return ""
	}
	return e.node
}

func (rt *routeTable) put(id, node string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.m == nil {
		rt.m = map[string]routeEntry{}
	}
	if _, ok := rt.m[id]; !ok && len(rt.m) >= maxRoutes {
		rt.sweepLocked(time.Now())
		if len(rt.m) >= maxRoutes {
			return // full of live entries: the clientId prefix and Ask still find it
		}
	}
	rt.m[id] = routeEntry{node: node, expires: time.Now().Add(movedTTL)}
}

func (rt *routeTable) drop(id string) {
	rt.mu.Lock()
	delete(rt.m, id)
	rt.mu.Unlock()
}

// sweep drops expired entries, at most every tenth of their lifetime (the
// table may hold a million of them; a lookup drops an expired one anyway).
func (rt *routeTable) sweep(now time.Time) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if now.Sub(rt.swept) < movedTTL/10 {
		return
	}
	rt.sweepLocked(now)
}

// Lock must be held.
func (rt *routeTable) sweepLocked(now time.Time) {
	rt.swept = now
	for id, e := range rt.m {
		if now.After(e.expires) {
			delete(rt.m, id)
		}
	}
}

// router returns the backbone's Requester and Router, or nils when sessions
// cannot move.
func (s *Server) router() (backbone.Requester, backbone.Router) {
	if s.cfg.DisableHandover {
		return nil, nil
	}
	rq, ok1 := s.cfg.Backbone.(backbone.Requester)
	ro, ok2 := s.cfg.Backbone.(backbone.Router)
	if !ok1 || !ok2 {
		return nil, nil
	}
	return rq, ro
}

// msgID identifies a published message across the cluster: a number drawn
// at random by the publishing node's process, and the node's count of its
// publishes. The zero msgID identifies nothing.
type msgID struct{ node, seq uint64 }

// String is the form the backbone carries: both numbers in base 36.
func (id msgID) String() string {
	if id == (msgID{}) {
		return ""
	}
	b := make([]byte, 0, 27)
	b = strconv.AppendUint(b, id.node, 36)
	b = append(b, '.')
	return string(strconv.AppendUint(b, id.seq, 36))
}

// parseMsgID reads String's form; anything else is the zero msgID (a message
// without an ID is never taken for another).
func parseMsgID(s string) msgID {
	node, seq, ok := strings.Cut(s, ".")
	if !ok {
		return msgID{}
	}
	n, err1 := strconv.ParseUint(node, 36, 64)
	q, err2 := strconv.ParseUint(seq, 36, 64)
	if err1 != nil || err2 != nil {
		return msgID{}
	}
	return msgID{n, q}
}

// nextMessageID identifies a message this node publishes, across the cluster.
func (s *Server) nextMessageID() msgID { return msgID{s.msgNode, s.msgSeq.Add(1)} }

// HandOver moves the session with the given clientId to another node that
// takes work and returns that node. The session keeps its clientId,
// subscriptions, queue, ack batches and attributes; its client's next request
// finds it there. On failure the session stays here, as it was.
func (s *Server) HandOver(ctx context.Context, clientID string) (string, error) {
	ss := s.hub.session(clientID)
	if ss == nil {
		return "", ErrSessionClosed
	}
	return s.handOver(ctx, ss, "")
}

// handOver moves ss to node, or to any node that takes work when node is "".
func (s *Server) handOver(ctx context.Context, ss *ServerSession, node string) (string, error) {
	rq, ro := s.router()
	if ro == nil {
		return "", ErrNoHandover
	}
	if ss.local != nil {
		return "", ErrLocalSession
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HandoverTimeout)
	defer cancel()
	ss.use.Lock() // batches being processed for the session finish; new ones wait
	defer ss.use.Unlock()
	snap, kept, err := ss.freeze()
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(snap)
	if err != nil {
		ss.thaw()
		return "", err
	}
	adopt := frame(forwardMeta{Kind: kindAdopt, Node: s.nodeID}, body)
	if node == "" {
		node, _, err = ro.RequestAny(ctx, adopt)
	} else {
		_, err = rq.Request(ctx, node, adopt)
	}
	if err != nil {
		ss.thaw()
		return "", fmt.Errorf("server: no node adopted session %s: %w", ss.id, err)
	}
	select {
	case <-time.After(s.cfg.HandoverSettle):
	case <-ctx.Done():
	}
	fin := finalizeBody{ID: ss.id}
	for _, m := range ss.queue.tail(kept) {
		fin.Tail = append(fin.Tail, queuedMessage(m))
	}
	body, _ = json.Marshal(fin) // strings and raw JSON: cannot fail
	if _, err := rq.Request(ctx, node, frame(forwardMeta{Kind: kindFinalize}, body)); err != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = rq.Request(actx, node, frame(forwardMeta{Kind: kindAbort}, []byte(ss.id)))
		acancel()
		ss.thaw()
		return "", fmt.Errorf("server: node %s did not take session %s: %w", node, ss.id, err)
	}
	s.moved.put(ss.id, node)
	s.removeSession(ss, ErrMoved)
	s.handover.out.Add(1)
	return node, nil
}

// adopt restores a session source hands over, closed until finalize (or
// until source is found dead: durable.go's watchArrival).
func (s *Server) adopt(body []byte, source string) ([]byte, error) {
	var snap SessionSnapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		return nil, fmt.Errorf("server: adopt: %w", err)
	}
	ss, err := s.restoreSession(snap, true)
	if err != nil {
		return nil, err
	}
	go s.watchArrival(ss, source)
	return []byte(s.nodeID), nil
}

// finalize opens an arriving session with the tail of its queue.
func (s *Server) finalize(body []byte) ([]byte, error) {
	var fin finalizeBody
	if err := json.Unmarshal(body, &fin); err != nil {
		return nil, fmt.Errorf("server: finalize: %w", err)
	}
	ss := s.hub.session(fin.ID)
	if ss == nil {
		return nil, fmt.Errorf("server: finalize: no arriving session %s", fin.ID)
	}
	tail, err := decodeQueued("finalize: tail", fin.Tail)
	if err != nil {
		return nil, err
	}
	if !ss.arrive(tail) {
		return nil, fmt.Errorf("server: finalize: session %s is not arriving", fin.ID)
	}
	s.handover.adopted.Add(1)
	return []byte(s.nodeID), nil
}

// abortArrival gives up an arriving session.
func (s *Server) abortArrival(id string) {
	if ss := s.hub.session(id); ss != nil && ss.isArriving() {
		s.removeSession(ss, errMoveAborted)
		ss.endArrival()
	}
}

// where answers Ask: this node's ID when it holds the session, live.
func (s *Server) where(id string) []byte {
	if ss := s.hub.session(id); ss != nil && ss.Err() == nil && !ss.isArriving() {
		return []byte(s.nodeID)
	}
	return nil
}

// locate asks every node where the session id is, and remembers the answer.
// It returns "" when nobody holds it.
func (s *Server) locate(ctx context.Context, id string) string {
	_, ro := s.router()
	if ro == nil || !s.askLimit.Allow() {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LocateTimeout)
	defer cancel()
	node, reply, err := ro.Ask(ctx, frame(forwardMeta{Kind: kindWhere}, []byte(id)))
	if err != nil || node == "" || !bytes.Equal(reply, []byte(node)) || node == s.nodeID {
		return ""
	}
	s.handover.located.Add(1)
	s.routes.put(id, node)
	return node
}

// batchSession returns the one clientId a batch is about, or "" when it holds
// a handshake, names no session or names several.
func batchSession(msgs []*bayeux.Mutable) string {
	id := ""
	for _, m := range msgs {
		if m.Channel == bayeux.MetaHandshake {
			return ""
		}
		if m.ClientID == "" {
			continue
		}
		if id != "" && m.ClientID != id {
			return ""
		}
		id = m.ClientID
	}
	return id
}

// route says where a batch is served: here (release, when not nil, must be
// called once the batch is processed: until then the session cannot move),
// or on node. A session that is moving is waited for.
func (s *Server) route(msgs []*bayeux.Mutable) (release func(), node string) {
	id := batchSession(msgs)
	if id == "" {
		return nil, ""
	}
	for range 2 {
		ss := s.hub.session(id)
		if ss == nil {
			break
		}
		ss.use.RLock() // waits while the session moves in or out
		if ss.Err() == nil {
			return ss.use.RUnlock, ""
		}
		ss.use.RUnlock()
		// It ended meanwhile, maybe moved: look again.
	}
	if node := s.moved.get(id); node != "" {
		return nil, node
	}
	if node := s.routes.get(id); node != "" {
		return nil, node
	}
	if o := OwnerOf(id); o != "" && o != s.nodeID {
		return nil, o
	}
	return nil, ""
}

// forgetRoute drops what this node believed about where id is.
func (s *Server) forgetRoute(id string) { s.routes.drop(id) }

// askRate is how many Asks a second a node sends at most (bursts included),
// so that requests with made-up clientIds cannot make it flood the others.
const askRate = 200
