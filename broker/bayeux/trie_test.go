package bayeux

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// rank is where Match puts the values of pattern for channel: the channel
// itself, its parent's "/*", then each ancestor's "/**" from the parent up.
func rank(pattern, channel string) int {
	switch {
	case strings.HasSuffix(pattern, "/**"):
		return 2 + strings.Count(channel, "/") - strings.Count(pattern, "/")
	case strings.HasSuffix(pattern, "/*"):
		return 1
	}
	return 0
}

// bruteTrie is the reference: a list of pairs, matched one by one.
type bruteTrie struct {
	pairs []brutePair
}

type brutePair struct {
	pattern string
	v       int
}

func (b *bruteTrie) remove(pattern string, v int) bool {
	i := slices.Index(b.pairs, brutePair{pattern, v})
	if i < 0 {
		return false
	}
	b.pairs = slices.Delete(b.pairs, i, i+1)
	return true
}

func (b *bruteTrie) match(channel string) []int {
	var out []int
	for _, p := range b.pairs {
		if Match(p.pattern, channel) {
			out = append(out, p.v)
		}
	}
	slices.Sort(out)
	return out
}

// checkMatch compares tr.Match(channel) with the reference: the same values,
// in rank order. patternOf maps each value to its pattern.
func checkMatch(t *testing.T, tr *Trie[int], ref *bruteTrie, patternOf map[int]string, channel string) {
	t.Helper()
	got := tr.Match(channel)
	for i := 1; i < len(got); i++ {
		if rank(patternOf[got[i-1]], channel) > rank(patternOf[got[i]], channel) {
			t.Fatalf("Match(%q) out of order: %v (%q before %q)", channel, got,
				patternOf[got[i-1]], patternOf[got[i]])
		}
	}
	sorted := slices.Sorted(slices.Values(got))
	if want := ref.match(channel); !slices.Equal(sorted, want) {
		t.Fatalf("Match(%q) = %v, want %v", channel, sorted, want)
	}
}

func TestTrieOrder(t *testing.T) {
	tr := NewTrie[string](0)
	patterns := []string{"/**", "/a/b/c", "/a/**", "/a/b/*", "/a/b/**", "/*", "/a/b/c/**"}
	for _, p := range patterns {
		tr.Insert(p, p)
	}
	want := []string{"/a/b/c", "/a/b/*", "/a/b/**", "/a/**", "/**"}
	for _, from := range []string{"trie", "cache"} {
		if got := tr.Match("/a/b/c"); !reflect.DeepEqual(got, want) {
			t.Fatalf("Match from the %s = %q, want %q", from, got, want)
		}
	}
	// Changes update the cached result in place and keep the order.
	tr.Insert("/a/b/**", "/a/b/** again")
	tr.Remove("/a/b/c", "/a/b/c")
	tr.Insert("/a/b/c", "/a/b/c again")
	want = []string{"/a/b/c again", "/a/b/*", "/a/b/**", "/a/b/** again", "/a/**", "/**"}
	if got := tr.Match("/a/b/c"); !reflect.DeepEqual(got, want) {
		t.Fatalf("Match after changes = %q, want %q", got, want)
	}
	if s := tr.Stats(); s.Misses != 1 || s.Cached != 1 {
		t.Fatalf("stats %+v after 3 matches of one channel, want 1 miss and 1 channel cached", s)
	}
}

// TestTrieChurnKeepsCache: subscriptions coming and going, on the channels that
// are matched and on wildcards above them, leave every cached result in place
// and correct.
func TestTrieChurnKeepsCache(t *testing.T) {
	tr := NewTrie[int](0)
	ref := &bruteTrie{}
	patternOf := map[int]string{}
	insert := func(p string, v int) {
		tr.Insert(p, v)
		ref.pairs = append(ref.pairs, brutePair{p, v})
		patternOf[v] = p
	}
	var channels []string
	for i := range 50 {
		ch := "/chat/room" + string(rune('a'+i%26)) + "/" + strings.Repeat("m", i/26+1)
		channels = append(channels, ch)
		insert(ch, i)
	}
	insert("/chat/**", 1000)
	for _, ch := range channels {
		checkMatch(t, tr, ref, patternOf, ch)
	}
	before := tr.Stats()
	if before.Misses != uint64(len(channels)) || before.Cached != len(channels) {
		t.Fatalf("after the first matches: %+v", before)
	}
	v := 2000
	for round := range 200 {
		p := channels[round%len(channels)]
		switch round % 4 {
		case 1:
			p = p[:strings.LastIndexByte(p, '/')] + "/*"
		case 2:
			p = p[:strings.LastIndexByte(p, '/')] + "/**"
		case 3:
			p = "/**"
		}
		insert(p, v)
		for _, ch := range channels[:10] {
			checkMatch(t, tr, ref, patternOf, ch)
		}
		if !tr.Remove(p, v) || !ref.remove(p, v) {
			t.Fatalf("Remove(%q, %d) found nothing", p, v)
		}
		checkMatch(t, tr, ref, patternOf, channels[round%len(channels)])
		v++
	}
	// 200 rounds of 11 matches, every one answered from the cache.
	after := tr.Stats()
	if after.Misses != before.Misses || after.Cached != len(channels) {
		t.Fatalf("churn cost cache entries: before %+v, after %+v", before, after)
	}
}

// randomTrieOps applies n random inserts, removes and matches to tr and to the
// reference, on a small set of patterns and channels so that they collide.
func randomTrieOps(t *testing.T, rng *rand.Rand, tr *Trie[int], n int) {
	segs := []string{"a", "b", "c"}
	randChannel := func() string {
		var sb strings.Builder
		for range 1 + rng.IntN(4) {
			sb.WriteString("/" + segs[rng.IntN(len(segs))])
		}
		return sb.String()
	}
	randPattern := func() string {
		ch := randChannel()
		switch rng.IntN(3) {
		case 1:
			return ch[:strings.LastIndexByte(ch, '/')] + "/*"
		case 2:
			return ch[:strings.LastIndexByte(ch, '/')] + "/**"
		}
		return ch
	}
	ref := &bruteTrie{}
	patternOf := map[int]string{}
	next := 0
	for range n {
		switch op := rng.IntN(10); {
		case op < 3:
			p := randPattern()
			v := next
			next++
			if op == 0 && len(ref.pairs) > 0 { // sometimes the same pair twice
				pair := ref.pairs[rng.IntN(len(ref.pairs))]
				p, v = pair.pattern, pair.v
			}
			tr.Insert(p, v)
			ref.pairs = append(ref.pairs, brutePair{p, v})
			patternOf[v] = p
		case op < 5 && len(ref.pairs) > 0:
			pair := ref.pairs[rng.IntN(len(ref.pairs))]
			if !tr.Remove(pair.pattern, pair.v) || !ref.remove(pair.pattern, pair.v) {
				t.Fatalf("Remove(%q, %d) found nothing", pair.pattern, pair.v)
			}
		case op < 6:
			p, v := randPattern(), rng.IntN(next+1)
			if got, want := tr.Remove(p, v), ref.remove(p, v); got != want {
				t.Fatalf("Remove(%q, %d) = %v, want %v", p, v, got, want)
			}
		default:
			checkMatch(t, tr, ref, patternOf, randChannel())
		}
	}
	if tr.Len() != len(ref.pairs) {
		t.Fatalf("Len = %d, want %d", tr.Len(), len(ref.pairs))
	}
}

func TestTrieRandomized(t *testing.T) {
	for _, size := range []int{-1, 4, 0} { // no cache, a cache that evicts, the default
		for seed := range uint64(20) {
			tr := NewTrie[int](size)
			randomTrieOps(t, rand.New(rand.NewPCG(seed, uint64(size))), tr, 2000)
			if s := tr.Stats(); size > 0 && s.Cached > size {
				t.Fatalf("cache of %d holds %d channels", size, s.Cached)
			}
		}
	}
}

// TestTrieChangeDuringMiss: a change made while a missed Match is between its
// walk of the trie and its caching must not leave a stale result in the cache.
func TestTrieChangeDuringMiss(t *testing.T) {
	for _, pattern := range []string{"/a/b", "/a/*", "/**"} {
		tr := NewTrie[string](0)
		tr.Insert("/a/b", "first")
		tr.afterMiss = func() {
			tr.afterMiss = nil
			tr.Insert(pattern, "second")
		}
		if got := tr.Match("/a/b"); !reflect.DeepEqual(got, []string{"first"}) {
			t.Fatalf("Match during the change = %q", got)
		}
		got := slices.Sorted(slices.Values(tr.Match("/a/b")))
		if !reflect.DeepEqual(got, []string{"first", "second"}) {
			t.Fatalf("Match after inserting %q during a miss = %q", pattern, got)
		}
	}
}

// TestTrieConcurrent changes and matches from several goroutines; once they are
// done, every cached result must equal a fresh match (run with -race).
func TestTrieConcurrent(t *testing.T) {
	tr := NewTrie[int](0)
	channels := []string{"/a", "/a/b", "/a/b/c", "/a/c", "/b/c"}
	patterns := []string{"/a", "/a/b", "/a/*", "/a/**", "/**", "/*", "/a/b/*", "/b/**"}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 3000 {
				p := patterns[rng.IntN(len(patterns))]
				v := w*1_000_000 + i
				tr.Insert(p, v)
				for _, ch := range channels {
					if !slices.Contains(tr.Match(ch), v) == Match(p, ch) {
						t.Errorf("Match(%q) misses %d of %q, inserted before", ch, v, p)
						return
					}
				}
				if rng.IntN(4) > 0 && !tr.Remove(p, v) {
					t.Errorf("Remove(%q, %d) found nothing", p, v)
					return
				}
			}
		})
	}
	wg.Wait()
	var all []int
	for _, ch := range channels {
		got := slices.Sorted(slices.Values(tr.Match(ch)))
		tr.mu.RLock()
		want := slices.Sorted(slices.Values(tr.match(ch, false).vals)) // past the cache
		tr.mu.RUnlock()
		if !slices.Equal(got, want) {
			t.Fatalf("cached Match(%q) = %d values, a fresh match %d", ch, len(got), len(want))
		}
		all = append(all, got...)
	}
	// Each channel misses once, and again only when a change lands between a
	// miss's walk and its caching.
	const matches = 4*3000*5 + 5
	if s := tr.Stats(); len(all) == 0 || s.Misses > 100 {
		t.Fatalf("nothing matched (%d) or the cache missed %d of %d matches", len(all), s.Misses, matches)
	}
}
