package bayeux

import (
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultMatchCacheSize bounds a Trie's match cache when NewTrie is given 0.
const DefaultMatchCacheSize = 4096

// Trie maps channel patterns to values and finds every value whose pattern
// matches a channel. It has explicit nodes for "*" and "**" and a bounded cache of
// match results, invalidated on every change. It is safe for concurrent use.
type Trie[V comparable] struct {
	mu    sync.RWMutex
	root  trieNode[V]
	gen   atomic.Uint64 // bumped on every change; written with mu held
	count int

	cacheMu  sync.Mutex
	cache    map[string][]V
	cacheMax int
}

type trieNode[V comparable] struct {
	children map[string]*trieNode[V]
	star     []V // values of "<this>/*"
	dstar    []V // values of "<this>/**"
	values   []V // values of exactly this channel
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
	t.mu.Lock()
	n := &t.root
	last := segs[len(segs)-1]
	if last == "*" || last == "**" {
		segs = segs[:len(segs)-1]
	}
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
	t.gen.Add(1)
	t.mu.Unlock()
	t.clearCache()
}

func (t *Trie[V]) clearCache() {
	t.cacheMu.Lock()
	t.cache = nil
	t.cacheMu.Unlock()
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
	t.mu.Lock()
	path := make([]*trieNode[V], 0, len(segs)+1)
	n := &t.root
	path = append(path, n)
	for _, s := range segs {
		n = n.children[s]
		if n == nil {
			t.mu.Unlock()
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
		t.mu.Unlock()
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
	t.gen.Add(1)
	t.mu.Unlock()
	t.clearCache()
	return true
}

// Len is the number of stored (pattern, value) pairs.
func (t *Trie[V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// Match returns every value whose pattern matches channel (a valid plain channel),
// exact patterns first. The result is shared with the cache and must not be
// modified.
func (t *Trie[V]) Match(channel string) []V {
	if t.cacheMax > 0 {
		t.cacheMu.Lock()
		if r, ok := t.cache[channel]; ok {
			t.cacheMu.Unlock()
			return r
		}
		t.cacheMu.Unlock()
	}
	var buf [16]string
	segs := splitSegments(channel, buf[:])
	t.mu.RLock()
	gen := t.gen.Load()
	var out []V
	n := &t.root
	for i, s := range segs {
		out = append(out, n.dstar...)
		if i == len(segs)-1 {
			out = append(out, n.star...)
		}
		n = n.children[s]
		if n == nil {
			break
		}
		if i == len(segs)-1 {
			out = append(out, n.values...)
		}
	}
	t.mu.RUnlock()
	if t.cacheMax > 0 {
		t.cacheMu.Lock()
		// A change since our read clears the cache after bumping gen, so a stale
		// result stored here is always wiped; skip storing when we can tell.
		if t.gen.Load() == gen {
			if t.cache == nil || len(t.cache) >= t.cacheMax {
				t.cache = make(map[string][]V, 64)
			}
			t.cache[channel] = out
		}
		t.cacheMu.Unlock()
	}
	return out
}
