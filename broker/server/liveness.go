package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
)

// Liveness of the nodes this node waits on.
//
// A request forwarded to a session's owner (a held /meta/connect, above all)
// may wait for its reply for the connect timeout and more. When the owner dies
// without answering (SIGKILL, an OOM kill, a lost node), the backbone does not
// say so: the reply just never comes, and the client, and every publish it
// sends meanwhile, waits with it. So while requests wait on a node, one
// watcher per node pings it every LivenessInterval; when the node is gone from
// the backbone (no responder), misses two pings in a row, or answers from
// another process (it restarted under the same ID, as a container restarted
// in place does, and knows nothing of the requests), every request
// waiting on it ends at once as if the node had never been there: the batch
// goes where the session is now, or is answered 402::session_unknown so that
// the client handshakes again.

// kindPing is a node request that only proves the node answers.
const kindPing = "ping"

// kindStarted tells every node that a node (forwardMeta.Node) has just
// started: whatever waits on a process of that node that ran before waits
// in vain (a container restarted in place keeps its pod's name, so its node
// ID; pings would be answered by the new process).
const kindStarted = "started"

// startedTimeout bounds the announcement of a node's start.
const startedTimeout = 2 * time.Second

// announceStart tells the other nodes that this node has started.
func (s *Server) announceStart() {
	_, ro := s.router()
	if ro == nil {
		return
	}
	ctx, cancel := s.untilClose(startedTimeout)
	defer cancel()
	_, _, _ = ro.Ask(ctx, frame(forwardMeta{Kind: kindStarted, Node: s.nodeID}, nil)) // nobody answers
}

// nodeStarted ends every wait on node: its process that the waits were
// for is gone.
func (s *Server) nodeStarted(node string) {
	if node == "" || node == s.nodeID {
		return
	}
	nw := &s.nodeWatch
	nw.mu.Lock()
	w := nw.m[node]
	if w != nil {
		delete(nw.m, node) // the next waiter starts afresh
	}
	nw.mu.Unlock()
	if w != nil {
		s.log.Warn("a node that requests wait on restarted; they end now", "node", node)
		w.end()
	}
}

// DefaultLivenessInterval is how often a node waited on is pinged.
const DefaultLivenessInterval = time.Second

// livenessMisses is how many pings in a row a node may miss before it counts
// as dead.
const livenessMisses = 2

// errOwnerGone ends a request whose node stopped answering.
var errOwnerGone = errors.New("server: the node stopped answering")

// errNodeRestarted: a node answers under the same ID from another process.
var errNodeRestarted = errors.New("server: the node restarted")

type nodeWatch struct {
	mu sync.Mutex
	m  map[string]*watched
}

type watched struct {
	waiters int
	gone    chan struct{} // closed when the node is found dead
	stop    chan struct{} // closed when nobody waits any more
	once    sync.Once
}

// end closes gone, once.
func (w *watched) end() { w.once.Do(func() { close(w.gone) }) }

// watchNode returns a channel closed if node is found dead while the caller
// waits on it; the caller calls done when it no longer waits.
func (s *Server) watchNode(req backbone.Requester, node string) (gone <-chan struct{}, done func()) {
	nw := &s.nodeWatch
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.m == nil {
		nw.m = map[string]*watched{}
	}
	w := nw.m[node]
	if w == nil {
		w = &watched{gone: make(chan struct{}), stop: make(chan struct{})}
		nw.m[node] = w
		go s.pingLoop(req, node, w)
	}
	w.waiters++
	var once sync.Once
	return w.gone, func() {
		once.Do(func() {
			nw.mu.Lock()
			defer nw.mu.Unlock()
			if w.waiters--; w.waiters == 0 {
				close(w.stop)
				if nw.m[node] == w {
					delete(nw.m, node)
				}
			}
		})
	}
}

// pingLoop pings node until nobody waits on it or it is found dead.
func (s *Server) pingLoop(req backbone.Requester, node string, w *watched) {
	t := time.NewTicker(s.cfg.LivenessInterval)
	defer t.Stop()
	ping := frame(forwardMeta{Kind: kindPing}, nil)
	missed := 0
	var process string // the first answer's process number
	for {
		select {
		case <-w.stop:
			return
		case <-s.closeCh:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LivenessInterval)
		reply, err := req.Request(ctx, node, ping)
		cancel()
		switch {
		case err == nil && (process == "" || string(reply) == process):
			process = string(reply)
			missed = 0
			continue
		case err == nil:
			// Another process under the node's ID: the one requests wait on died.
			err = errNodeRestarted
			missed = livenessMisses
		case errors.Is(err, backbone.ErrNoNode):
			missed = livenessMisses
		default:
			missed++
		}
		if missed >= livenessMisses {
			s.log.Warn("a node that requests wait on stopped answering; they end now", "node", node, "err", err)
			s.nodeWatch.mu.Lock()
			if s.nodeWatch.m[node] == w {
				delete(s.nodeWatch.m, node) // the next waiter starts afresh
			}
			s.nodeWatch.mu.Unlock()
			w.end()
			return
		}
	}
}

// requestLive sends payload to node like req.Request, but ends it with an
// error wrapping backbone.ErrNoNode as soon as node is found dead.
func (s *Server) requestLive(ctx context.Context, req backbone.Requester, node string, payload []byte) ([]byte, error) {
	gone, done := s.watchNode(req, node)
	defer done()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-gone:
			cancel(errOwnerGone)
		case <-ctx.Done():
		}
	}()
	resp, err := req.Request(ctx, node, payload)
	if err != nil && context.Cause(ctx) == errOwnerGone {
		return nil, errors.Join(backbone.ErrNoNode, errOwnerGone)
	}
	return resp, err
}
