package bayeux

import (
	"encoding/json"
	"strconv"
	"testing"
)

var benchBatch = []byte(`[{"channel":"/chat/room1","clientId":"node-1~3b2c9f0e8d7a6b5c4d3e2f1a0b9c8d7e","id":"42","data":{"user":"alice","text":"hello, world","ts":1700000000000}},` +
	`{"channel":"/meta/connect","clientId":"node-1~3b2c9f0e8d7a6b5c4d3e2f1a0b9c8d7e","connectionType":"long-polling","id":"43","advice":{"timeout":0}}]`)

func BenchmarkDecodeBatch(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBatch)))
	for b.Loop() {
		if _, err := DecodeBatch(benchBatch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBatchStdlib is the encoding/json baseline for the same input.
func BenchmarkDecodeBatchStdlib(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBatch)))
	type msg struct {
		Channel, ClientID, ID, ConnectionType string
		Data, Advice                          json.RawMessage
	}
	for b.Loop() {
		var out []msg
		if err := json.Unmarshal(benchBatch, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	msgs, _ := DecodeBatch(benchBatch)
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = msgs[0].AppendJSON(buf[:0])
	}
}

func benchTrie(n int) *Trie[int] {
	tr := NewTrie[int](0)
	for i := range n {
		tr.Insert("/chat/room"+strconv.Itoa(i), i)
		tr.Insert("/chat/room"+strconv.Itoa(i)+"/*", i)
	}
	tr.Insert("/chat/**", -1)
	tr.Insert("/**", -2)
	return tr
}

func BenchmarkTrieMatchCached(b *testing.B) {
	tr := benchTrie(1000)
	b.ReportAllocs()
	for b.Loop() {
		if len(tr.Match("/chat/room500")) != 3 {
			b.Fatal("wrong match")
		}
	}
}

func BenchmarkTrieMatchUncached(b *testing.B) {
	tr := benchTrie(1000)
	tr.cacheMax = -1
	b.ReportAllocs()
	for b.Loop() {
		if len(tr.Match("/chat/room500/x")) != 3 {
			b.Fatal("wrong match")
		}
	}
}

// BenchmarkTrieMatchChurn is Match under subscription churn: each iteration a
// subscriber joins one room, 16 messages are published across the rooms, and
// the subscriber leaves again. A cache that is thrown away on every change
// misses on every publish here.
func BenchmarkTrieMatchChurn(b *testing.B) {
	tr := benchTrie(1000)
	var channels [64]string
	for i := range channels {
		channels[i] = "/chat/room" + strconv.Itoa(i*7)
	}
	joiner := make([]string, len(channels))
	for i := range joiner {
		joiner[i] = "/chat/room" + strconv.Itoa(i*13%1000)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := joiner[i%len(joiner)]
		tr.Insert(p, -3)
		for j := range 16 {
			if len(tr.Match(channels[(i+j)%len(channels)])) < 3 {
				b.Fatal("wrong match")
			}
		}
		tr.Remove(p, -3)
		i++
	}
}

func BenchmarkWildcards(b *testing.B) {
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += len(Wildcards("/chat/room/42/x"))
	}
	if n == 0 {
		b.Fatal("no wildcards")
	}
}
