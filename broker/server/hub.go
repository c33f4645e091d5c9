package server

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// The hub is the node's registry: its sessions by clientId, its channels by
// name, and the subscription trie that finds the channels a message matches.
// Subscribing and unsubscribing, and creating and removing channels, happen
// here; the backbone hears about a channel's first and last subscriber through
// the interest hook. The hub knows nothing of transports or the protocol.

const numShards = 64

// shardedMap is a map from string keys, split into numShards shards by FNV
// hash, each behind its own lock, so that lookups of different keys rarely
// contend.
type shardedMap[V comparable] struct {
	shards [numShards]mapShard[V]
}

type mapShard[V comparable] struct {
	mu sync.RWMutex
	m  map[string]V
}

func newShardedMap[V comparable]() *shardedMap[V] {
	sm := &shardedMap[V]{}
	for i := range sm.shards {
		sm.shards[i].m = map[string]V{}
	}
	return sm
}

// shardOf is FNV-1a of key, modulo numShards (no allocation).
func shardOf(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % numShards)
}

func (sm *shardedMap[V]) shard(key string) *mapShard[V] { return &sm.shards[shardOf(key)] }

func (sm *shardedMap[V]) get(key string) V {
	sh := sm.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[key]
}

// putIfAbsent stores v under key unless a value is there; it returns the value
// stored and whether it is v.
func (sm *shardedMap[V]) putIfAbsent(key string, v V) (V, bool) {
	sh := sm.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var zero V
	if old := sh.m[key]; old != zero {
		return old, false
	}
	sh.m[key] = v
	return v, true
}

// deleteIf removes key if it still maps to v.
func (sm *shardedMap[V]) deleteIf(key string, v V) {
	sh := sm.shard(key)
	sh.mu.Lock()
	if sh.m[key] == v {
		delete(sh.m, key)
	}
	sh.mu.Unlock()
}

// each calls fn for every value, one shard at a time with the shard's read
// lock held: fn must not change the map.
func (sm *shardedMap[V]) each(fn func(V)) {
	for i := range sm.shards {
		sh := &sm.shards[i]
		sh.mu.RLock()
		for _, v := range sh.m {
			fn(v)
		}
		sh.mu.RUnlock()
	}
}

func (sm *shardedMap[V]) values() []V {
	var out []V
	sm.each(func(v V) { out = append(out, v) })
	return out
}

// hub holds a node's sessions and channels.
type hub struct {
	sessions *shardedMap[*ServerSession]
	channels *shardedMap[*ServerChannel]
	trie     *bayeux.Trie[*ServerChannel]

	stats     *counters
	listeners *cowList[ServerListener]
	// interest is told when a broadcast channel gets its first subscriber
	// (true) or loses its last one (false), in the order of those changes.
	interest func(channel string, subscribed bool)
}

func newHub(stats *counters, listeners *cowList[ServerListener], interest func(string, bool)) *hub {
	return &hub{
		sessions:  newShardedMap[*ServerSession](),
		channels:  newShardedMap[*ServerChannel](),
		trie:      bayeux.NewTrie[*ServerChannel](0),
		stats:     stats,
		listeners: listeners,
		interest:  interest,
	}
}

func (h *hub) session(id string) *ServerSession { return h.sessions.get(id) }

func (h *hub) channel(name string) *ServerChannel { return h.channels.get(name) }

// match returns the channels whose name or pattern matches the plain channel name.
func (h *hub) match(name string) []*ServerChannel { return h.trie.Match(name) }

// channelFor returns the channel named id, creating it if needed, and reports
// whether this call created it. The creator runs init after the channel is in
// the hub, outside any hub lock, so init may use the channel (subscribe a
// session, change its flags); callers that find a channel still being
// initialised wait until init is done, so nobody else uses it half-made.
// init must not create its own channel again.
func (h *hub) channelFor(srv *Server, id bayeux.ChannelID, init ...func(*ServerChannel)) (*ServerChannel, bool) {
	name := id.String()
	if c := h.channels.get(name); c != nil {
		<-c.initialized
		return c, false
	}
	c := &ServerChannel{id: id, srv: srv, subs: map[*ServerSession]struct{}{}, initialized: make(chan struct{})}
	if got, created := h.channels.putIfAbsent(name, c); !created {
		<-got.initialized
		return got, false
	}
	h.trie.Insert(name, c)
	h.stats.channels.Add(1)
	for _, f := range init {
		f(c)
	}
	close(c.initialized)
	for _, l := range h.listeners.list() {
		if l.ChannelAdded != nil {
			l.ChannelAdded(c)
		}
	}
	return c, true
}

// maybeRemoveChannel removes c once nothing keeps it: no subscriber, listener
// or authorizer, and not persistent. A channel whose initializers still run
// stays: they may be about to add what keeps it.
func (h *hub) maybeRemoveChannel(c *ServerChannel) {
	if !closed(c.initialized) {
		return
	}
	c.mu.Lock()
	if c.removed || len(c.subs) > 0 || len(c.listeners) > 0 || len(c.authorizers) > 0 || c.persistent {
		c.mu.Unlock()
		return
	}
	c.removed = true
	name := c.Name()
	h.channels.deleteIf(name, c)
	h.trie.Remove(name, c)
	c.mu.Unlock()
	h.stats.channels.Add(-1)
	for _, l := range h.listeners.list() {
		if l.ChannelRemoved != nil {
			l.ChannelRemoved(c)
		}
	}
}

// errChannelRemoved: the channel was removed before a subscription to it
// could be added.
var errChannelRemoved = errors.New("server: channel removed")

// subscribe adds ss to the channel id (created if needed). m is the
// /meta/subscribe that asked for it, nil from the server side.
func (h *hub) subscribe(srv *Server, ss *ServerSession, id bayeux.ChannelID, m *ServerMessage) error {
	for {
		c, _ := h.channelFor(srv, id)
		switch err := h.subscribeTo(ss, c, m); err {
		case errChannelRemoved:
			continue // removed between the lookup and the subscription: make it anew
		default:
			return err
		}
	}
}

// subscribeTo adds ss to c. It returns errChannelRemoved when c was removed
// meanwhile, and ErrSessionClosed for a session that ended.
func (h *hub) subscribeTo(ss *ServerSession, c *ServerChannel, m *ServerMessage) error {
	c.interestMu.Lock()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		c.interestMu.Unlock()
		return errChannelRemoved
	}
	if !ss.addSub(c) {
		c.mu.Unlock()
		c.interestMu.Unlock()
		h.maybeRemoveChannel(c)
		return ErrSessionClosed
	}
	_, already := c.subs[ss]
	first := false
	if !already {
		c.subs[ss] = struct{}{}
		c.snap.Store(nil)
		h.stats.subscriptions.Add(1)
		first = len(c.subs) == 1
	}
	c.mu.Unlock()
	// The backbone may take a round trip: publishes, which need c.mu, go on
	// meanwhile; interestMu keeps the backbone calls in the order of the
	// changes they follow.
	if first && c.id.IsBroadcast() {
		h.interest(c.Name(), true)
	}
	c.interestMu.Unlock()
	if !already {
		for _, l := range h.listeners.list() {
			if l.Subscribed != nil {
				l.Subscribed(ss, c, m)
			}
		}
	}
	return nil
}

// unsubscribe removes ss from c, and c from the hub if nothing else keeps it.
func (h *hub) unsubscribe(ss *ServerSession, c *ServerChannel) {
	c.interestMu.Lock()
	c.mu.Lock()
	ss.dropSub(c)
	_, was := c.subs[ss]
	last := false
	if was {
		delete(c.subs, ss)
		c.snap.Store(nil)
		h.stats.subscriptions.Add(-1)
		last = len(c.subs) == 0
	}
	c.mu.Unlock()
	if last && c.id.IsBroadcast() {
		h.interest(c.Name(), false)
	}
	c.interestMu.Unlock()
	if was {
		for _, l := range h.listeners.list() {
			if l.Unsubscribed != nil {
				l.Unsubscribed(ss, c)
			}
		}
	}
	h.maybeRemoveChannel(c)
}

// cowList is a copy-on-write list: readers take the current slice without a
// lock, writers replace it.
type cowList[T any] struct {
	mu sync.Mutex // serialises writers
	p  atomic.Pointer[[]T]
}

func (l *cowList[T]) add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var next []T
	if p := l.p.Load(); p != nil {
		next = slices.Clone(*p)
	}
	next = append(next, v)
	l.p.Store(&next)
}

func (l *cowList[T]) list() []T {
	if p := l.p.Load(); p != nil {
		return *p
	}
	return nil
}
