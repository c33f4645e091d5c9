package bayeux

import (
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultMatchCacheSize bounds a Trie's match cache when NewTrie is given 0.
const DefaultMatchCacheSize = 4096

// Trie maps channel patterns to values and finds every value whose pattern
// matches a channel. It has explicit nodes for "*" and "**" and a bounded cache
// of match results. As in nats-server's sublist, a change updates the cached
// results it affects instead of dropping the cache, so the cache keeps its hits
// under subscription churn. It is safe for concurrent use.
type Trie[V comparable] struct {
	mu    sync.RWMutex
	root  trieNode[V]
	count int
	gen   uint64 // bumped on every change; mu guards it

	cache    map[string]matchResult[V] // mu guards it
	cacheMax int
	misses   atomic.Uint64 // hits are not counted: a shared counter would slow them

	afterMiss func() // tests: runs between a miss's match and its caching
}

type trieNode[V comparable] struct {
	children map[string]*trieNode[V]
	star     []V // values of "<this>/*"
	dstar    []V // values of "<this>/**"
	values   []V // values of exactly this channel
}

// matchResult is the cached result for one channel of depth n: the values in
// Match's order, grouped by rank, and where each group ends. Rank 0 is the
// channel itself, rank 1 its parent's "/*", rank 2+k the "/**" of the ancestor k
// segments above the parent (so rank n+1 is "/**"). A change never modifies a
// result in place (Match's callers may hold it): it builds a new one.
type matchResult[V comparable] struct {
	vals []V
	ends []int32 // ends[r] is the end of rank r's values in vals; len(ends) == n+2
}

// TrieStats describes a Trie's match cache.
type TrieStats struct {
	Misses uint64 // Match calls not answered from the cache (none counted without a cache)
	Cached int    // channels in the cache
}

// NewTrie returns an empty Trie whose match cache holds at most cacheSize
// channels (0 means DefaultMatchCacheSize, negative disables the cache).
func NewTrie[V comparable](cacheSize int) *Trie[V] {
	if cacheSize == 0 {
		cacheSize = DefaultMatchCacheSize
	}
	return &Trie[V]{cacheMax: cacheSize}
}

// splitSegments tokenises a channel into buf (no allocation for up to len(buf)
// segments).
func splitSegments(channel string, buf []string) []string {
	segs := buf[:0]
	s := channel[1:]
	for {
		i := strings.IndexByte(s, '/')
		if i < 0 {
			return append(segs, s)
		}
		segs = append(segs, s[:i])
		s = s[i+1:]
	}
}

// Insert adds v under pattern, which must be a valid channel or pattern. Adding
// the same pair twice stores it twice.
func (t *Trie[V]) Insert(pattern string, v V) {
	var buf [16]string
	segs := splitSegments(pattern, buf[:])
	last := segs[len(segs)-1]
	if last == "*" || last == "**" {
		segs = segs[:len(segs)-1]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for _, s := range segs {
		if n.children == nil {
			n.children = map[string]*trieNode[V]{}
		}
		c := n.children[s]
		if c == nil {
			c = &trieNode[V]{}
			n.children[s] = c
		}
		n = c
	}
	switch last {
	case "*":
		n.star = append(n.star, v)
	case "**":
		n.dstar = append(n.dstar, v)
	default:
		n.values = append(n.values, v)
	}
	t.count++
	t.gen++
	t.updateCache(pattern, len(segs), func(r matchResult[V], rank int) matchResult[V] {
		return r.with(rank, v)
	})
}

func removeValue[V comparable](l []V, v V) ([]V, bool) {
	for i, x := range l {
		if x == v {
			l[i] = l[len(l)-1]
			var zero V
			l[len(l)-1] = zero
			return l[:len(l)-1], true
		}
	}
	return l, false
}

// Remove deletes one occurrence of v under pattern and reports whether it was there.
func (t *Trie[V]) Remove(pattern string, v V) bool {
	var buf [16]string
	segs := splitSegments(pattern, buf[:])
	last := segs[len(segs)-1]
	if last == "*" || last == "**" {
		segs = segs[:len(segs)-1]
	}
	var pbuf [17]*trieNode[V]
	path := pbuf[:0]
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	path = append(path, n)
	for _, s := range segs {
		n = n.children[s]
		if n == nil {
			return false
		}
		path = append(path, n)
	}
	var ok bool
	switch last {
	case "*":
		n.star, ok = removeValue(n.star, v)
	case "**":
		n.dstar, ok = removeValue(n.dstar, v)
	default:
		n.values, ok = removeValue(n.values, v)
	}
	if !ok {
		return false
	}
	// Prune empty nodes bottom-up.
	for i := len(path) - 1; i > 0; i-- {
		c := path[i]
		if len(c.children) > 0 || len(c.values) > 0 || len(c.star) > 0 || len(c.dstar) > 0 {
			break
		}
		delete(path[i-1].children, segs[i-1])
	}
	t.count--
	t.gen++
	t.updateCache(pattern, len(segs), func(r matchResult[V], rank int) matchResult[V] {
		return r.without(rank, v)
	})
	return true
}

// updateCache replaces the cached result of every channel pattern matches with
// change(result, rank of pattern for that channel). prefixDepth is the number
// of segments of pattern before a final wildcard. A plain pattern touches one
// entry at most; a wildcard is checked against every cached channel (the cache
// is bounded). Lock must be held.
func (t *Trie[V]) updateCache(pattern string, prefixDepth int, change func(matchResult[V], int) matchResult[V]) {
	if len(t.cache) == 0 {
		return
	}
	switch {
	case strings.HasSuffix(pattern, "/**"):
		prefix := pattern[:len(pattern)-2] // with its final '/'
		for ch, r := range t.cache {
			if len(ch) > len(prefix) && strings.HasPrefix(ch, prefix) {
				depth := len(r.ends) - 2
				t.cache[ch] = change(r, 2+depth-1-prefixDepth)
			}
		}
	case strings.HasSuffix(pattern, "/*"):
		prefix := pattern[:len(pattern)-1]
		for ch, r := range t.cache {
			if len(ch) > len(prefix) && strings.HasPrefix(ch, prefix) &&
				strings.IndexByte(ch[len(prefix):], '/') < 0 {
				t.cache[ch] = change(r, 1)
			}
		}
	default:
		if r, ok := t.cache[pattern]; ok {
			t.cache[pattern] = change(r, 0)
		}
	}
}

// with returns a copy of r with v added at the end of rank's values.
func (r matchResult[V]) with(rank int, v V) matchResult[V] {
	at := int(r.ends[rank])
	vals := make([]V, len(r.vals)+1)
	copy(vals, r.vals[:at])
	vals[at] = v
	copy(vals[at+1:], r.vals[at:])
	ends := make([]int32, len(r.ends))
	copy(ends, r.ends)
	for i := rank; i < len(ends); i++ {
		ends[i]++
	}
	return matchResult[V]{vals: vals, ends: ends}
}

// without returns a copy of r with one v removed from rank's values.
func (r matchResult[V]) without(rank int, v V) matchResult[V] {
	start := 0
	if rank > 0 {
		start = int(r.ends[rank-1])
	}
	at := -1
	for i := start; i < int(r.ends[rank]); i++ {
		if r.vals[i] == v {
			at = i
			break
		}
	}
	if at < 0 {
		return r // not there: the trie and the cache agree that v is gone
	}
	var vals []V
	if len(r.vals) > 1 {
		vals = make([]V, 0, len(r.vals)-1)
		vals = append(append(vals, r.vals[:at]...), r.vals[at+1:]...)
	}
	ends := make([]int32, len(r.ends))
	copy(ends, r.ends)
	for i := rank; i < len(ends); i++ {
		ends[i]--
	}
	return matchResult[V]{vals: vals, ends: ends}
}

// Len is the number of stored (pattern, value) pairs.
func (t *Trie[V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// Stats reports the match cache's misses so far and its size.
func (t *Trie[V]) Stats() TrieStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return TrieStats{Misses: t.misses.Load(), Cached: len(t.cache)}
}

// Match returns every value whose pattern matches channel (a valid plain
// channel), most specific pattern first: the channel itself, then its parent's
// "/*", then the "/**" of each ancestor from the parent up to "/**" (the order
// of Wildcards). Values of one pattern come in no particular order. The result
// is shared with the cache and must not be modified.
func (t *Trie[V]) Match(channel string) []V {
	if t.cacheMax <= 0 {
		t.mu.RLock()
		r := t.match(channel, false)
		t.mu.RUnlock()
		return r.vals
	}
	t.mu.RLock()
	if r, ok := t.cache[channel]; ok {
		t.mu.RUnlock()
		return r.vals
	}
	gen := t.gen
	r := t.match(channel, true)
	t.mu.RUnlock()
	t.misses.Add(1)
	if t.afterMiss != nil {
		t.afterMiss()
	}

	t.mu.Lock()
	// A change since our read would not have updated a result it could not see:
	// store only a result computed from the current trie.
	if t.gen == gen {
		switch {
		case t.cache == nil:
			t.cache = make(map[string]matchResult[V], min(t.cacheMax, 64))
		case len(t.cache) >= t.cacheMax:
			t.evict()
		}
		t.cache[channel] = r
	}
	t.mu.Unlock()
	return r.vals
}

// evict makes room in a full cache by dropping a quarter of it, chosen by map
// iteration order (in effect, at random). Lock must be held.
func (t *Trie[V]) evict() {
	drop := len(t.cache) - t.cacheMax + 1 + t.cacheMax/4
	for ch := range t.cache {
		if drop <= 0 {
			break
		}
		delete(t.cache, ch)
		drop--
	}
}

// match walks the trie for channel. With ends, it also records where each rank
// ends (for the cache). Lock must be held (read).
func (t *Trie[V]) match(channel string, withEnds bool) matchResult[V] {
	var sbuf [16]string
	segs := splitSegments(channel, sbuf[:])
	depth := len(segs)
	// path[k] is the node of the channel's first k segments.
	var pbuf [17]*trieNode[V]
	path := append(pbuf[:0], &t.root)
	for n, i := &t.root, 0; i < depth; i++ {
		if n = n.children[segs[i]]; n == nil {
			break
		}
		path = append(path, n)
	}
	// Size the result once: the lists of every rank the walk reached.
	size := 0
	if len(path) > depth {
		size += len(path[depth].values)
	}
	if len(path) >= depth {
		size += len(path[depth-1].star)
	}
	for k := range min(depth, len(path)) {
		size += len(path[k].dstar)
	}
	var r matchResult[V]
	if size > 0 {
		r.vals = make([]V, 0, size)
	}
	if withEnds {
		r.ends = make([]int32, depth+2)
	}
	if len(path) > depth {
		r.vals = append(r.vals, path[depth].values...)
	}
	if withEnds {
		r.ends[0] = int32(len(r.vals))
	}
	if len(path) >= depth {
		r.vals = append(r.vals, path[depth-1].star...)
	}
	if withEnds {
		r.ends[1] = int32(len(r.vals))
	}
	for k := depth - 1; k >= 0; k-- {
		if k < len(path) {
			r.vals = append(r.vals, path[k].dstar...)
		}
		if withEnds {
			r.ends[2+depth-1-k] = int32(len(r.vals))
		}
	}
	return r
}
