package backbone

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/cometd-operator/cometd-operator/broker/config"
)

// durableNodes starts a NATS server with JetStream and n backbone nodes of one
// cluster with durability on.
func durableNodes(t *testing.T, n int, settings config.Durability) ([]*NATS, []*Durable) {
	t.Helper()
	s := startNATS(t, 0, func(o *server.Options) { o.JetStream = true; o.StoreDir = t.TempDir() })
	var ns []*NATS
	var ds []*Durable
	for i := range n {
		b := newNATS(t, NATSConfig{URL: s.ClientURL(), Cluster: "durable", NodeID: fmt.Sprintf("d-%d", i), FailFast: true})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d, err := b.EnableDurability(ctx, DurableConfig{Settings: settings})
		cancel()
		if err != nil {
			t.Fatalf("EnableDurability: %v", err)
		}
		ns, ds = append(ns, b), append(ds, d)
	}
	return ns, ds
}

type collector struct {
	mu   sync.Mutex
	msgs []Message
}

func (c *collector) handle(m Message) { c.mu.Lock(); c.msgs = append(c.msgs, m); c.mu.Unlock() }
func (c *collector) got() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs...)
}

func TestDurablePublishCarriesSequences(t *testing.T) {
	ns, ds := durableNodes(t, 2, config.Durability{})
	var a, b collector
	ns[0].SetHandler(a.handle)
	ns[1].SetHandler(b.handle)
	for _, n := range ns {
		if err := n.Subscribe("/room/*"); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	var seqs []uint64
	for i := range 5 {
		seq, err := ds[0].Publish(ctx, "/room/a", []byte(fmt.Sprintf(`{"channel":"/room/a","data":%d}`, i)), fmt.Sprintf("id-%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("stream sequences %v are not consecutive", seqs)
		}
	}
	waitCond(t, "node 1 to receive the 5 republished messages", func() bool { return len(b.got()) == 5 })
	for i, m := range b.got() {
		if m.Seq != seqs[i] || m.ID != fmt.Sprintf("id-%d", i) || m.Origin != "d-0" || m.Channel != "/room/a" {
			t.Errorf("message %d = %+v, want seq %d, id id-%d from d-0 on /room/a", i, m, seqs[i], i)
		}
	}
	if got := ds[1].LastSeen(); got != seqs[4] {
		t.Errorf("node 1 LastSeen = %d, want %d", got, seqs[4])
	}
	// The publisher's own copy comes back from the stream and is dropped.
	if err := ns[0].Publish("/room/sync", []byte(`{"channel":"/room/sync"}`), ""); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "node 1 to receive the marker", func() bool { return len(b.got()) == 6 })
	if n := len(a.got()); n != 0 {
		t.Errorf("the publishing node received %d of its own messages", n)
	}
}

func TestDurableRecordsCompareAndSet(t *testing.T) {
	_, ds := durableNodes(t, 2, config.Durability{MaxSessionBytes: 1024})
	ctx := context.Background()
	if _, _, err := ds[0].GetRecord(ctx, "n1-abc"); !errors.Is(err, ErrRecordNotFound) {
		t.Fatalf("GetRecord of nothing: %v, want ErrRecordNotFound", err)
	}
	rev, err := ds[0].PutRecord(ctx, "n1-abc", []byte(`{"owner":"d-0"}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ds[1].PutRecord(ctx, "n1-abc", []byte(`{"owner":"d-1"}`), 0); !errors.Is(err, ErrRecordConflict) {
		t.Fatalf("second create: %v, want ErrRecordConflict", err)
	}
	rev2, err := ds[1].PutRecord(ctx, "n1-abc", []byte(`{"owner":"d-1"}`), rev)
	if err != nil {
		t.Fatalf("adopting update: %v", err)
	}
	if _, err := ds[0].PutRecord(ctx, "n1-abc", []byte(`{"owner":"d-0","seq":9}`), rev); !errors.Is(err, ErrRecordConflict) {
		t.Fatalf("stale owner's update: %v, want ErrRecordConflict", err)
	}
	data, got, err := ds[0].GetRecord(ctx, "n1-abc")
	if err != nil || got != rev2 || string(data) != `{"owner":"d-1"}` {
		t.Fatalf("GetRecord = %s rev %d, %v; want the adopter's record at rev %d", data, got, err, rev2)
	}
	if _, err := ds[0].PutRecord(ctx, "n1-big", make([]byte, 2048), 0); err == nil {
		t.Fatal("a record over maxSessionBytes was written")
	}
	if err := ds[0].DeleteRecord(ctx, "n1-abc", rev); !errors.Is(err, ErrRecordConflict) {
		t.Fatalf("stale delete: %v, want ErrRecordConflict", err)
	}
	if err := ds[1].DeleteRecord(ctx, "n1-abc", rev2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ds[0].GetRecord(ctx, "n1-abc"); !errors.Is(err, ErrRecordNotFound) {
		t.Fatalf("GetRecord after delete: %v, want ErrRecordNotFound", err)
	}
}

func TestDurableReplay(t *testing.T) {
	_, ds := durableNodes(t, 1, config.Durability{})
	ctx := context.Background()
	var seqs []uint64
	for i, ch := range []string{"/a/x", "/b/y", "/a/x/deep", "/a/z", "/c"} {
		seq, err := ds[0].Publish(ctx, ch, []byte(fmt.Sprintf(`{"channel":%q}`, ch)), fmt.Sprint(i), "")
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	channels := func(ms []Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Channel)
		}
		return out
	}
	for _, tt := range []struct {
		patterns []string
		from     uint64
		want     string
	}{
		{[]string{"/a/*"}, 0, "[/a/x /a/z]"},
		{[]string{"/a/*", "/a/**"}, 0, "[/a/x /a/x/deep /a/z]"},
		{[]string{"/a/**", "/c"}, seqs[2], "[/a/x/deep /a/z /c]"},
		{[]string{"/nothing"}, 0, "[]"},
		{[]string{"/b/y"}, seqs[4] + 1, "[]"},
	} {
		ms, last, err := ds[0].Replay(ctx, tt.patterns, tt.from)
		if err != nil {
			t.Fatalf("Replay(%v, %d): %v", tt.patterns, tt.from, err)
		}
		if got := fmt.Sprint(channels(ms)); got != tt.want || last != seqs[4] {
			t.Errorf("Replay(%v, %d) = %s, last %d; want %s, last %d", tt.patterns, tt.from, got, last, tt.want, seqs[4])
		}
		for _, m := range ms {
			if m.Seq == 0 || m.Origin != "d-0" || m.ID == "" {
				t.Errorf("replayed %+v lacks its sequence, origin or ID", m)
			}
		}
	}
	if err := ds[0].stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ds[0].Publish(ctx, "/a/x", []byte(`{"channel":"/a/x"}`), "after", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ds[0].Replay(ctx, []string{"/a/*"}, seqs[1]); !errors.Is(err, ErrGap) {
		t.Fatalf("Replay over purged messages: %v, want ErrGap", err)
	}
}

func TestDurableStreamFullRefuses(t *testing.T) {
	_, ds := durableNodes(t, 1, config.Durability{MaxBytes: 4096, MaxSessionBytes: 1024})
	ctx := context.Background()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = ds[0].Publish(ctx, "/full", make([]byte, 512), "", "")
	}
	if !errors.Is(err, ErrNotStored) {
		t.Fatalf("publishing past maxBytes: %v, want ErrNotStored", err)
	}
}

func TestCovers(t *testing.T) {
	for _, tt := range []struct {
		g, s string
		want bool
	}{
		{"p.a.>", "p.a.b", true}, {"p.a.>", "p.a.*", true}, {"p.a.>", "p.a", false},
		{"p.a.*", "p.a.b", true}, {"p.a.*", "p.a.>", false}, {"p.a.*", "p.a.b.c", false},
		{"p.a.b", "p.a.b", true}, {"p.a.b", "p.a.c", false},
	} {
		if got := covers(tt.g, tt.s); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.g, tt.s, got, tt.want)
		}
	}
}

func TestDurablePublishDeduplicates(t *testing.T) {
	_, ds := durableNodes(t, 2, config.Durability{})
	ctx := context.Background()
	seq, err := ds[0].Publish(ctx, "/d", []byte(`{"channel":"/d"}`), "u1", "client-1/7")
	if err != nil {
		t.Fatal(err)
	}
	// The same publish processed again by another node: one copy is kept.
	again, err := ds[1].Publish(ctx, "/d", []byte(`{"channel":"/d"}`), "u2", "client-1/7")
	if !errors.Is(err, ErrDuplicate) || again != seq {
		t.Fatalf("second publish with the same key: seq %d, %v; want seq %d, ErrDuplicate", again, err, seq)
	}
	if _, err := ds[1].Publish(ctx, "/d", []byte(`{"channel":"/d"}`), "u3", "client-1/8"); err != nil {
		t.Fatalf("a publish with another key: %v", err)
	}
}

func TestDurableRetriesWhatPasses(t *testing.T) {
	ctx := context.Background()
	calls := 0
	v, err := retry(ctx, func() (int, error) {
		calls++
		if calls < 3 {
			return 0, fmt.Errorf("wrapped: %w", nats.ErrNoResponders)
		}
		return 7, nil
	})
	if v != 7 || err != nil || calls != 3 {
		t.Fatalf("retry over two no-responders = %d, %v after %d calls; want 7, nil after 3", v, err, calls)
	}
	calls = 0
	_, err = retry(ctx, func() (int, error) { calls++; return 0, ErrRecordConflict })
	if !errors.Is(err, ErrRecordConflict) || calls != 1 {
		t.Fatalf("a conflict was tried %d times (%v); want once", calls, err)
	}
	calls = 0
	_, err = retry(ctx, func() (int, error) { calls++; return 0, nats.ErrNoResponders })
	if !errors.Is(err, nats.ErrNoResponders) || calls != maxAttempts {
		t.Fatalf("no responders for good: %d calls (%v); want %d", calls, err, maxAttempts)
	}
}
