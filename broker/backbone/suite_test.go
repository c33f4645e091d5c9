package backbone

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests: generous for a loaded machine,
// while the happy path returns as soon as the condition holds.
const waitTimeout = 15 * time.Second

// node is the full set of abilities both implementations offer.
type node interface {
	Backbone
	Requester
	Router
	Health
	StatsSource
}

// cluster makes n nodes sharing one backbone; the nodes are closed by t.Cleanup.
type cluster func(t *testing.T, n int) []node

// recorder collects what a node's Handler receives.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
	ch   chan struct{} // signalled on every message
}

func newRecorder(b Backbone) *recorder {
	r := &recorder{ch: make(chan struct{}, 1)}
	b.SetHandler(func(m Message) {
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		select {
		case r.ch <- struct{}{}:
		default:
		}
	})
	return r
}

func (r *recorder) snapshot() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// waitFor waits until some received message satisfies ok, and returns all messages
// received so far.
func (r *recorder) waitFor(t *testing.T, what string, ok func(Message) bool) []Message {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		msgs := r.snapshot()
		for _, m := range msgs {
			if ok(m) {
				return msgs
			}
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; received %d messages: %v", what, len(msgs), summary(msgs))
		}
	}
}

func (r *recorder) waitData(t *testing.T, data string) []Message {
	t.Helper()
	return r.waitFor(t, "message "+data, func(m Message) bool { return string(m.Data) == data })
}

func summary(msgs []Message) string {
	var b strings.Builder
	for i, m := range msgs {
		if i == 10 {
			fmt.Fprintf(&b, " …")
			break
		}
		fmt.Fprintf(&b, " %s@%s", m.Data, m.Channel)
	}
	return b.String()
}

func count(msgs []Message, data string) int {
	n := 0
	for _, m := range msgs {
		if string(m.Data) == data {
			n++
		}
	}
	return n
}

func mustSub(t *testing.T, b Backbone, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if err := b.Subscribe(p); err != nil {
			t.Fatalf("Subscribe(%q): %v", p, err)
		}
	}
}

func mustPub(t *testing.T, b Backbone, channel, data string) {
	t.Helper()
	if err := b.Publish(channel, []byte(data), ""); err != nil {
		t.Fatalf("Publish(%q): %v", channel, err)
	}
}

// settle makes sure interest registered on receivers is in effect before the
// publisher publishes: the publisher sends probes on a channel the receiver
// listens to until one arrives. Memory needs none of this; NATS does, because a
// subscription travels to the server asynchronously.
func settle(t *testing.T, pub Backbone, rec *recorder, channel string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		probe := fmt.Sprintf("probe-%s-%d", pub.NodeID(), i)
		mustPub(t, pub, channel, probe)
		select {
		case <-rec.ch:
		case <-time.After(50 * time.Millisecond): // pace the probes
		}
		if count(rec.snapshot(), probe) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("interest on %s never took effect", channel)
		}
	}
}

// flushInterest makes sure b's subscription changes have reached the backbone.
func flushInterest(t *testing.T, b Backbone) {
	t.Helper()
	if n, ok := b.(interface{ flush() error }); ok {
		if err := n.flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// runSuite checks the guarantees of the Backbone, Requester and Health interfaces.
func runSuite(t *testing.T, mk cluster) {
	t.Run("FanoutNoEcho", func(t *testing.T) {
		ns := mk(t, 3)
		recs := make([]*recorder, len(ns))
		for i, n := range ns {
			recs[i] = newRecorder(n)
			mustSub(t, n, "/chat/room")
		}
		sync3(t, ns, recs, "/chat/room")
		for i, n := range ns {
			data := fmt.Sprintf(`{"from":%d}`, i)
			mustPub(t, n, "/chat/room", data)
			for j, r := range recs {
				if j == i {
					continue
				}
				msgs := r.waitData(t, data)
				for _, m := range msgs {
					if string(m.Data) == data && (m.Origin != n.NodeID() || m.Channel != "/chat/room") {
						t.Errorf("node %d got %+v, want origin %s on /chat/room", j, m, n.NodeID())
					}
				}
			}
		}
		// The publisher never hears itself: a later message from another node
		// arrives after anything the publisher could have echoed.
		mustPub(t, ns[1], "/chat/room", "marker")
		msgs := recs[0].waitData(t, "marker")
		if c := count(msgs, `{"from":0}`); c != 0 {
			t.Errorf("publisher received its own message %d times", c)
		}
	})

	t.Run("Wildcards", func(t *testing.T) {
		ns := mk(t, 2)
		pub, sub := ns[0], ns[1]
		rec := newRecorder(sub)
		mustSub(t, sub, "/a/*", "/deep/**", "/sync")
		settle(t, pub, rec, "/sync")
		cases := []struct {
			channel string
			want    bool
		}{
			{"/a/b", true},
			{"/a/b/c", false},
			{"/a", false},
			{"/ab/c", false},
			{"/deep/x", true},
			{"/deep/x/y/z", true},
			{"/deep", false},
			{"/deeper/x", false},
			{"/a/with space", true},
			{"/a/dot.ted", true},
			{"/a/gt>", true},
			{"/a/>", true},
			{"/a/é", true},
			{"/deep/a.b/>x/>", true},
		}
		for _, c := range cases {
			mustPub(t, pub, c.channel, "m"+c.channel)
		}
		mustPub(t, pub, "/sync", "end")
		msgs := rec.waitData(t, "end")
		for _, c := range cases {
			n := count(msgs, "m"+c.channel)
			if c.want && n != 1 || !c.want && n != 0 {
				t.Errorf("%s: delivered %d times, want match=%v", c.channel, n, c.want)
			}
			for _, m := range msgs {
				if string(m.Data) == "m"+c.channel && m.Channel != c.channel {
					t.Errorf("message for %s arrived with channel %q", c.channel, m.Channel)
				}
			}
		}
	})

	t.Run("AtMostOncePerNode", func(t *testing.T) {
		ns := mk(t, 2)
		pub, sub := ns[0], ns[1]
		rec := newRecorder(sub)
		mustSub(t, sub, "/x/y", "/x/*", "/x/**", "/**")
		mustSub(t, sub, "/x/*") // a second reference is not a second delivery
		settle(t, pub, rec, "/x/y")
		const n = 200
		for i := range n {
			mustPub(t, pub, "/x/y", fmt.Sprint(i))
		}
		mustPub(t, pub, "/x/y", "end")
		msgs := rec.waitData(t, "end")
		for i := range n {
			if c := count(msgs, fmt.Sprint(i)); c != 1 {
				t.Fatalf("message %d delivered %d times, want once", i, c)
			}
		}
		if nb, ok := sub.(*NATS); ok {
			// NATS hands the node one copy per matching subscription: the
			// de-duplication must have dropped the extra copies.
			if d := nb.Stats().Duplicates; d < 3*n {
				t.Errorf("Duplicates = %d, want at least %d", d, 3*n)
			}
		}
	})

	t.Run("PerOriginOrder", func(t *testing.T) {
		ns := mk(t, 3)
		rec := newRecorder(ns[2])
		mustSub(t, ns[2], "/o/**")
		settle(t, ns[0], rec, "/o/sync")
		settle(t, ns[1], rec, "/o/sync")
		const n = 1000
		var wg sync.WaitGroup
		for p := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					// Alternate channels: order holds per origin across channels too.
					ch := fmt.Sprintf("/o/%d", i%3)
					if err := ns[p].Publish(ch, fmt.Appendf(nil, "%d:%d", p, i), fmt.Sprint(i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		rec.waitData(t, fmt.Sprintf("0:%d", n-1))
		msgs := rec.waitData(t, fmt.Sprintf("1:%d", n-1))
		next := map[string]int{}
		for _, m := range msgs {
			var p, i int
			if _, err := fmt.Sscanf(string(m.Data), "%d:%d", &p, &i); err != nil {
				continue // a probe
			}
			if m.Origin != ns[p].NodeID() {
				t.Fatalf("message %s has origin %s, want %s", m.Data, m.Origin, ns[p].NodeID())
			}
			if i != next[m.Origin] {
				t.Fatalf("from %s got %d, want %d", m.Origin, i, next[m.Origin])
			}
			if m.ID != fmt.Sprint(i) {
				t.Fatalf("message %s has ID %q, want %q", m.Data, m.ID, fmt.Sprint(i))
			}
			next[m.Origin]++
		}
	})

	t.Run("ReferenceCounting", func(t *testing.T) {
		ns := mk(t, 2)
		pub, sub := ns[0], ns[1]
		rec := newRecorder(sub)
		mustSub(t, sub, "/marker", "/rc", "/rc")
		settle(t, pub, rec, "/marker")
		if err := sub.Unsubscribe("/rc"); err != nil {
			t.Fatal(err)
		}
		mustPub(t, pub, "/rc", "one-ref-left")
		rec.waitData(t, "one-ref-left")
		if err := sub.Unsubscribe("/rc"); err != nil {
			t.Fatal(err)
		}
		// The unsubscription must reach the server before the publish for the
		// check to mean anything; a round trip through the marker proves it.
		flushInterest(t, sub)
		mustPub(t, pub, "/rc", "no-ref-left")
		mustPub(t, pub, "/marker", "after")
		msgs := rec.waitData(t, "after")
		if c := count(msgs, "no-ref-left"); c != 0 {
			t.Errorf("received %d messages after the last reference went", c)
		}
		if err := sub.Unsubscribe("/rc"); err == nil {
			t.Error("unsubscribing a pattern with no references succeeded")
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		ns := mk(t, 1)
		n := ns[0]
		for _, p := range []string{"", "a", "/", "//", "/a//b", "/a/", "/*/a", "/**/a", "/a/**/b"} {
			if err := n.Subscribe(p); err == nil {
				t.Errorf("Subscribe(%q) succeeded", p)
			}
		}
		for _, c := range []string{"", "x", "/", "/a/", "/a/*", "/a/**", "/a//b"} {
			if err := n.Publish(c, []byte("{}"), ""); err == nil {
				t.Errorf("Publish(%q) succeeded", c)
			}
		}
		// A bad call leaves the node working.
		mustSub(t, n, "/still/ok")
		if err := n.Unsubscribe("/still/ok"); err != nil {
			t.Error(err)
		}
	})

	t.Run("Requests", func(t *testing.T) {
		ns := mk(t, 2)
		a, b := ns[0], ns[1]
		release := make(chan struct{})
		watching, watchEnded := make(chan struct{}), make(chan struct{})
		b.HandleRequests(func(ctx context.Context, data []byte) ([]byte, error) {
			switch s := string(data); {
			case s == "fail":
				return nil, errors.New("refused")
			case s == "hold":
				select {
				case <-release:
					return []byte("released"), nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			case s == "panic":
				panic("boom")
			case s == "watch":
				close(watching)
				<-ctx.Done()
				close(watchEnded)
				return nil, ctx.Err()
			default:
				return append([]byte("re:"), data...), nil
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		got, err := a.Request(ctx, b.NodeID(), []byte("hello"))
		if err != nil || string(got) != "re:hello" {
			t.Fatalf("Request = %q, %v; want re:hello", got, err)
		}
		if _, err := a.Request(ctx, b.NodeID(), []byte("fail")); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("failing handler: err = %v, want one containing 'refused'", err)
		}
		if _, err := a.Request(ctx, b.NodeID(), []byte("panic")); err == nil {
			t.Error("panicking handler: no error")
		}
		if _, err := a.Request(ctx, "no-such-node", []byte("x")); !errors.Is(err, ErrNoNode) {
			t.Errorf("unknown node: err = %v, want ErrNoNode", err)
		}
		if _, err := b.Request(ctx, a.NodeID(), []byte("x")); !errors.Is(err, ErrNoNode) {
			t.Errorf("node without a request handler: err = %v, want ErrNoNode", err)
		}
		// Many held requests are served concurrently.
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := a.Request(ctx, b.NodeID(), []byte("hold"))
				if err == nil && string(got) != "released" {
					err = fmt.Errorf("got %q", got)
				}
				errs <- err
			}()
		}
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		// The requester's context bounds the wait.
		short, cancelShort := context.WithCancel(ctx)
		cancelShort()
		if _, err := a.Request(short, b.NodeID(), []byte("hold")); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled request: err = %v, want context.Canceled", err)
		}
		// A requester that gives up cancels the handler's context.
		watchCtx, cancelWatch := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			_, err := a.Request(watchCtx, b.NodeID(), []byte("watch"))
			errc <- err
		}()
		select {
		case <-watching:
		case <-time.After(waitTimeout):
			t.Fatal("the watch request never reached the handler")
		}
		cancelWatch()
		select {
		case <-watchEnded:
		case <-time.After(waitTimeout):
			t.Fatal("the handler's context was not cancelled when the requester gave up")
		}
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("watch request: err = %v, want context.Canceled", err)
		}
	})

	t.Run("Router", func(t *testing.T) {
		ns := mk(t, 3)
		for _, n := range ns {
			n.HandleRequests(func(_ context.Context, data []byte) ([]byte, error) {
				switch string(data) {
				case "who":
					return []byte(n.NodeID()), nil
				case "where is x":
					if n == ns[2] {
						return []byte("here"), nil
					}
					return nil, nil // silent
				}
				return nil, errors.New("unknown request")
			})
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		// RequestAny never picks the asker, and picks each other node sometimes.
		seen := map[string]int{}
		for range 60 {
			node, reply, err := ns[0].RequestAny(ctx, []byte("who"))
			if err != nil {
				t.Fatal(err)
			}
			if node != string(reply) || node == ns[0].NodeID() {
				t.Fatalf("RequestAny: node %q replied %q", node, reply)
			}
			seen[node]++
		}
		if len(seen) != 2 {
			t.Fatalf("RequestAny spread over %v, want both other nodes", seen)
		}
		// A node that takes no work is never picked.
		if err := ns[1].TakeWork(false); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if node, _, err := ns[0].RequestAny(ctx, []byte("who")); err != nil || node != ns[2].NodeID() {
				t.Fatalf("RequestAny with node 1 out of work: %q, %v", node, err)
			}
		}
		if err := ns[2].TakeWork(false); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ns[0].RequestAny(ctx, []byte("who")); !errors.Is(err, ErrNoNode) {
			t.Fatalf("RequestAny with no node taking work: %v, want ErrNoNode", err)
		}
		if err := ns[1].TakeWork(true); err != nil {
			t.Fatal(err)
		}
		if node, _, err := ns[0].RequestAny(ctx, []byte("who")); err != nil || node != ns[1].NodeID() {
			t.Fatalf("RequestAny after node 1 took work again: %q, %v", node, err)
		}
		// Ask: the one node with an answer answers; silence is no answer.
		node, reply, err := ns[0].Ask(ctx, []byte("where is x"))
		if err != nil || node != ns[2].NodeID() || string(reply) != "here" {
			t.Fatalf("Ask: %q %q %v", node, reply, err)
		}
		short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancelShort()
		if _, _, err := ns[2].Ask(short, []byte("where is x")); !errors.Is(err, ErrNoNode) {
			t.Fatalf("Ask that nobody else answers: %v, want ErrNoNode", err)
		}
	})

	t.Run("HealthStatsClose", func(t *testing.T) {
		ns := mk(t, 2)
		a, b := ns[0], ns[1]
		if err := a.Healthy(); err != nil {
			t.Fatalf("Healthy = %v", err)
		}
		rec := newRecorder(b)
		mustSub(t, b, "/s")
		settle(t, a, rec, "/s")
		before := a.Stats()
		mustPub(t, a, "/s", "12345")
		rec.waitData(t, "12345")
		sa, sb := a.Stats(), b.Stats()
		if sa.MessagesOut-before.MessagesOut != 1 || sa.BytesOut-before.BytesOut != 5 {
			t.Errorf("publisher stats %+v → %+v, want one more message of 5 bytes", before, sa)
		}
		if sb.MessagesIn == 0 || sb.BytesIn < 5 {
			t.Errorf("receiver stats %+v", sb)
		}
		var total uint64
		for _, c := range sb.LagCounts {
			total += c
		}
		if total != sb.MessagesIn || len(sb.LagCounts) != len(LagBuckets)+1 {
			t.Errorf("lag histogram counts %d messages in %d buckets, want %d in %d",
				total, len(sb.LagCounts), sb.MessagesIn, len(LagBuckets)+1)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Healthy(); err == nil {
			t.Error("closed node reports healthy")
		}
		if err := a.Publish("/s", []byte("x"), ""); !errors.Is(err, ErrClosed) {
			t.Errorf("Publish after Close: %v, want ErrClosed", err)
		}
		if err := a.Subscribe("/s"); !errors.Is(err, ErrClosed) {
			t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
		}
		// (Over NATS the server may not have processed the close yet, so the
		// request may go unanswered; the deadline then ends it with an error.)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := b.Request(ctx, a.NodeID(), nil); err == nil {
			t.Error("request to a closed node succeeded")
		}
	})
}

// sync3 makes sure every node's interest on channel is visible to every other node.
func sync3(t *testing.T, ns []node, recs []*recorder, channel string) {
	t.Helper()
	for i, n := range ns {
		for j := range ns {
			if i != j {
				settle(t, n, recs[j], channel)
			}
		}
	}
	// Forget the probes.
	for _, r := range recs {
		r.mu.Lock()
		r.msgs = nil
		r.mu.Unlock()
	}
}
