package backbone

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"
)

var (
	_ Backbone    = (*Memory)(nil)
	_ Requester   = (*Memory)(nil)
	_ Router      = (*Memory)(nil)
	_ Health      = (*Memory)(nil)
	_ StatsSource = (*Memory)(nil)
)

// MemoryHub connects Memory nodes living in one process, as NATS connects brokers:
// a message one node publishes reaches every other node of the hub that has
// interest in its channel. The zero value is not usable; call NewMemoryHub.
type MemoryHub struct {
	mu    sync.RWMutex
	nodes map[string]*Memory
}

// NewMemoryHub returns an empty hub.
func NewMemoryHub() *MemoryHub {
	return &MemoryHub{nodes: make(map[string]*Memory)}
}

// MemoryConfig configures a Memory node.
type MemoryConfig struct {
	// Hub is the hub the node joins. Nil means a private hub: the node is alone, so
	// it never receives anything (a single broker).
	Hub *MemoryHub
	// NodeID is the node's ID, unique in the hub. Empty means a random ID.
	NodeID string
}

// Memory is an in-process Backbone: several Memory nodes sharing one MemoryHub
// behave like brokers sharing one NATS. It honours every guarantee of the
// interfaces: reference-counted interest, no echo, at most one delivery per node
// per message, per-origin order, node-to-node requests and health.
//
// Each node delivers to its Handler on its own goroutine, through an unbounded
// queue, so a publisher never waits for a receiver.
type Memory struct {
	hub *MemoryHub
	id  string

	mu       sync.Mutex
	patterns map[string]int // pattern → references
	handler  Handler
	reqH     RequestHandler
	noWork   bool // TakeWork(false)
	queue    []memItem
	closed   bool
	health   error

	wake chan struct{} // capacity 1: queue became non-empty
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the delivery goroutine exits
	reqs sync.WaitGroup

	stats counters
}

type memItem struct {
	msg Message
	at  time.Time
}

// NewMemory creates a node and joins it to cfg.Hub.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	hub := cfg.Hub
	if hub == nil {
		hub = NewMemoryHub()
	}
	id := cfg.NodeID
	if id == "" {
		id = randomID()
	}
	m := &Memory{
		hub:      hub,
		id:       id,
		patterns: make(map[string]int),
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	hub.mu.Lock()
	if _, dup := hub.nodes[id]; dup {
		hub.mu.Unlock()
		return nil, fmt.Errorf("backbone: node ID %q is already in use on this hub", id)
	}
	hub.nodes[id] = m
	hub.mu.Unlock()
	go m.deliver()
	return m, nil
}

// randomID returns 64 random bits in hex.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// NodeID returns the node's ID.
func (m *Memory) NodeID() string { return m.id }

// SetHandler installs the receiver of remote messages.
func (m *Memory) SetHandler(h Handler) {
	m.mu.Lock()
	m.handler = h
	m.mu.Unlock()
}

// Subscribe adds one reference to pattern.
func (m *Memory) Subscribe(pattern string) error {
	if err := validatePattern(pattern); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.patterns[pattern]++
	return nil
}

// Unsubscribe drops one reference to pattern. Dropping a pattern with no
// references is an error.
func (m *Memory) Unsubscribe(pattern string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	n, ok := m.patterns[pattern]
	if !ok {
		return fmt.Errorf("backbone: unsubscribe from %q, which has no subscription", pattern)
	}
	if n <= 1 {
		delete(m.patterns, pattern)
	} else {
		m.patterns[pattern] = n - 1
	}
	return nil
}

// Publish queues data for every other node of the hub with a pattern matching
// channel, once per node. The queues are filled before Publish returns, so
// publishes made one after another arrive in that order.
func (m *Memory) Publish(channel string, data []byte, id string) error {
	if err := validateChannel(channel); err != nil {
		return err
	}
	if len(id) > MaxMessageIDLength {
		return fmt.Errorf("backbone: message ID longer than %d bytes", MaxMessageIDLength)
	}
	if m.isClosed() {
		return ErrClosed
	}
	m.stats.published(len(data))
	msg := Message{Channel: channel, Data: data, Origin: m.id, ID: id}
	now := time.Now()
	m.hub.mu.RLock()
	defer m.hub.mu.RUnlock()
	for id, n := range m.hub.nodes {
		if id != m.id {
			n.offer(msg, now)
		}
	}
	return nil
}

// offer queues msg if one of the node's patterns matches its channel.
func (m *Memory) offer(msg Message, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || len(m.patterns) == 0 {
		return
	}
	if !interested(m.patterns, msg.Channel) {
		return
	}
	m.queue = append(m.queue, memItem{msg: msg, at: at})
	if len(m.queue) == 1 {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// deliver is the node's delivery goroutine.
func (m *Memory) deliver() {
	defer close(m.done)
	var batch []memItem
	for {
		select {
		case <-m.quit:
			return
		case <-m.wake:
		}
		m.mu.Lock()
		batch, m.queue = m.queue, batch[:0]
		h := m.handler
		m.mu.Unlock()
		for i := range batch {
			select {
			case <-m.quit:
				return
			default:
			}
			it := &batch[i]
			m.stats.received(len(it.msg.Data), time.Since(it.at))
			if h != nil {
				h(it.msg)
			}
			*it = memItem{} // let the data go
		}
	}
}

// HandleRequests installs the handler for requests addressed to this node.
func (m *Memory) HandleRequests(h RequestHandler) {
	m.mu.Lock()
	m.reqH = h
	m.mu.Unlock()
}

// Request sends data to node and waits for its reply. It returns ErrNoNode when no
// node of the hub has that ID or the node handles no requests.
func (m *Memory) Request(ctx context.Context, node string, data []byte) ([]byte, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	m.hub.mu.RLock()
	target := m.hub.nodes[node]
	m.hub.mu.RUnlock()
	if target == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoNode, node)
	}
	return target.serve(ctx, data)
}

// serve runs the node's request handler for one request, as a node's NATS
// subscription would: on a goroutine of its own, cancelled when ctx ends or
// the node closes.
func (m *Memory) serve(ctx context.Context, data []byte) ([]byte, error) {
	node := m.id
	m.mu.Lock()
	h := m.reqH
	if m.closed || h == nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrNoNode, node)
	}
	m.reqs.Add(1)
	m.mu.Unlock()

	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	hctx, cancel := context.WithCancel(ctx)
	go func() {
		defer m.reqs.Done()
		defer cancel()
		go func() { // a closing m cancels the requests it serves
			select {
			case <-m.quit:
				cancel()
			case <-hctx.Done():
			}
		}()
		var r result
		func() {
			defer func() {
				if p := recover(); p != nil {
					r = result{nil, fmt.Errorf("%w: %v", errHandlerPanic, p)}
				}
			}()
			r.b, r.err = h(hctx, data)
		}()
		ch <- r
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// RequestAny sends data to a random other node of the hub that takes work.
func (m *Memory) RequestAny(ctx context.Context, data []byte) (string, []byte, error) {
	cands, err := m.others(func(n *Memory) bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return !n.noWork && !n.closed && n.reqH != nil
	})
	if err != nil {
		return "", nil, err
	}
	if len(cands) == 0 {
		return "", nil, fmt.Errorf("%w: no other node takes work", ErrNoNode)
	}
	target := cands[mrand.IntN(len(cands))]
	reply, err := target.serve(ctx, data)
	return target.id, reply, err
}

func (m *Memory) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// others returns the hub's other nodes that keep says to keep (in random
// order), or ErrClosed once this node is closed.
func (m *Memory) others(keep func(*Memory) bool) ([]*Memory, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	m.hub.mu.RLock()
	defer m.hub.mu.RUnlock()
	var out []*Memory
	for id, n := range m.hub.nodes { // map order is random
		if id != m.id && keep(n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// TakeWork makes the node one that RequestAny may choose, or not.
func (m *Memory) TakeWork(on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.noWork = !on
	return nil
}

// Ask asks every other node in turn; the first non-nil reply wins.
func (m *Memory) Ask(ctx context.Context, data []byte) (string, []byte, error) {
	others, err := m.others(func(*Memory) bool { return true })
	if err != nil {
		return "", nil, err
	}
	for _, n := range others {
		reply, err := n.serve(ctx, data)
		if err == nil && reply != nil {
			return n.id, reply, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return "", nil, fmt.Errorf("%w: no node answered", ErrNoNode)
}

// SetHealth sets what Healthy reports: nil for healthy, an error to simulate a
// backbone outage (traffic still flows; only the report changes).
func (m *Memory) SetHealth(err error) {
	m.mu.Lock()
	m.health = err
	m.mu.Unlock()
}

// Healthy reports nil unless the node is closed or SetHealth set an error.
func (m *Memory) Healthy() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return m.health
}

// Stats returns the node's traffic counters.
func (m *Memory) Stats() Stats { return m.stats.snapshot() }

// Close leaves the hub, drops undelivered messages, cancels the requests being
// served and waits for the delivery goroutine and request handlers to return.
// It must not be called from the Handler or a RequestHandler.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.closed = true
	m.queue = nil
	m.patterns = nil
	close(m.quit)
	m.mu.Unlock()

	m.hub.mu.Lock()
	if m.hub.nodes[m.id] == m {
		delete(m.hub.nodes, m.id)
	}
	m.hub.mu.Unlock()
	<-m.done
	m.reqs.Wait()
	return nil
}

// errHandlerPanic is returned to a requester when the request handler panicked.
var errHandlerPanic = errors.New("backbone: request handler panicked")
