// Package jsclient drives the third-party Bayeux clients (the CometD
// JavaScript client and the Faye Node client, from npm) from Go tests: each
// client is a node process running client.mjs, fed commands on stdin and
// reporting events on stdout. test/cluster and test/e2e share it.
package jsclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// WaitTimeout bounds every wait for a client's event.
const WaitTimeout = 20 * time.Second

// NodeModules is where the npm clients are installed (test/conformance's
// node_modules, so one install serves every suite); it fails the test when
// node or a package is missing.
func NodeModules(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(brokertest.RepoRoot(t), "test", "conformance", "node_modules")
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the CometD and Faye clients run with node")
	}
	for _, pkg := range []string{"cometd", "cometd-nodejs-client", "faye"} {
		if _, err := os.Stat(filepath.Join(dir, pkg, "package.json")); err != nil {
			t.Fatalf("npm package %s is missing from %s: run `make npm-deps`", pkg, dir)
		}
	}
	return dir
}

// script is client.mjs, beside this file.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "client.mjs")
}

// Event is one line a client script reports.
type Event struct {
	Ev       string          `json:"ev"`
	ClientID string          `json:"clientId"`
	Channel  string          `json:"channel"`
	Sub      string          `json:"sub"`
	Data     json.RawMessage `json:"data"`
	Error    string          `json:"error"`
	Op       string          `json:"op"`
	// Expires is a connect reply's ext.auth.expires (ev "auth").
	Expires int64 `json:"expires"`
}

// payload is the data the tests publish: an ID, and the channel it was published
// on (Faye hands its listeners the data only).
type Payload struct {
	ID string `json:"id"`
	Ch string `json:"ch"`
}

// client is a node process running client.mjs.
type Client struct {
	t      testing.TB
	name   string
	stdin  io.WriteCloser
	stderr *brokertest.SyncBuffer
	mu     sync.Mutex
	events []Event
	notify chan struct{}
	done   chan struct{}
}

// startClient runs a third-party client (kind "cometd" or "faye") against url
// over transport, and waits until it has handshaken.
func Start(t testing.TB, kind, url, transport string, options ...string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	args := append([]string{script(), kind, url, transport}, options...)
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Env = append(os.Environ(), "CLUSTER_NODE_MODULES="+NodeModules(t))
	cmd.WaitDelay = 5 * time.Second
	shown := append([]string{kind, transport}, options...)
	for i, o := range shown {
		if strings.HasPrefix(o, "token=") {
			shown[i] = "token" // not the whole JWT in every log line
		}
	}
	c := &Client{t: t, name: strings.Join(shown, "/"), stderr: &brokertest.SyncBuffer{}, notify: make(chan struct{}, 1), done: make(chan struct{})}
	cmd.Stderr = c.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = Event{Ev: "garbage", Error: sc.Text()}
			}
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
			select {
			case c.notify <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("client %s events: %v\nstderr: %s", c.name, c.Events(), c.stderr)
		}
	})
	c.Wait(func(e Event) bool { return e.Ev == "ready" }, "ready")
	return c
}

func (c *Client) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// wait waits for an Event matching ok and returns it.
func (c *Client) Wait(ok func(Event) bool, what string) Event {
	c.t.Helper()
	deadline := time.After(WaitTimeout)
	for {
		for _, e := range c.Events() {
			if ok(e) {
				return e
			}
			if e.Ev == "error" || e.Ev == "garbage" {
				c.t.Fatalf("client %s: %+v (waiting for %s)", c.name, e, what)
			}
		}
		select {
		case <-c.notify:
		case <-c.done:
			for _, e := range c.Events() {
				if ok(e) {
					return e
				}
			}
			c.t.Fatalf("client %s exited while waiting for %s; stderr: %s", c.name, what, c.stderr)
		case <-deadline:
			c.t.Fatalf("client %s: timed out waiting for %s; events: %v; stderr: %s", c.name, what, c.Events(), c.stderr)
		}
	}
}

func (c *Client) Send(cmd map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("client %s: %v", c.name, err)
	}
}

// subscribe subscribes and waits for the reply.
func (c *Client) Subscribe(channel string) {
	c.t.Helper()
	c.Send(map[string]any{"op": "subscribe", "channel": channel})
	c.Wait(func(e Event) bool { return e.Ev == "subscribed" && e.Channel == channel }, "subscribed "+channel)
}

// publish publishes {id, ch} on channel and waits for the reply.
func (c *Client) Publish(channel, id string) {
	c.t.Helper()
	c.Send(map[string]any{"op": "publish", "channel": channel, "data": Payload{ID: id, Ch: channel}})
	c.Wait(func(e Event) bool {
		return e.Ev == "published" && e.Channel == channel
	}, "published "+id)
}

// received counts the messages received with each payload ID, by the pattern of
// the subscription that received them ("<pattern> <id>"): a client with two
// matching subscriptions calls both listeners for one delivered message.
func (c *Client) Received() map[string]int {
	n := map[string]int{}
	for _, e := range c.Events() {
		if e.Ev == "message" {
			var p Payload
			if json.Unmarshal(e.Data, &p) == nil {
				n[e.Sub+" "+p.ID]++
			}
		}
	}
	return n
}

// count returns how many times a message with payload id was received, over all
// subscriptions.
func (c *Client) Count(id string) int {
	n := 0
	for key, k := range c.Received() {
		if strings.HasSuffix(key, " "+id) {
			n += k
		}
	}
	return n
}

// waitMessage waits until a message with payload id has arrived.
func (c *Client) WaitMessage(id string) {
	c.t.Helper()
	c.Wait(func(e Event) bool {
		var p Payload
		return e.Ev == "message" && json.Unmarshal(e.Data, &p) == nil && p.ID == id
	}, "message "+id)
}

// metaErrors returns the unsuccessful meta replies the client saw.
func (c *Client) MetaErrors() []Event {
	var out []Event
	for _, e := range c.Events() {
		if e.Ev == "meta-error" {
			out = append(out, e)
		}
	}
	return out
}

// handshakes counts the client's successful handshakes.
func (c *Client) Handshakes() int {
	n := 0
	for _, e := range c.Events() {
		if e.Ev == "handshake" {
			n++
		}
	}
	return n
}

func (c *Client) String() string { return c.name }

// Name is the client's kind, transport and options ("cometd/websocket/ack").
func (c *Client) Name() string { return c.name }

// ratePublisher publishes {id: m<i>} on channel through c every period until
// stopped, without waiting for each reply; c reports every outcome.
type RatePublisher struct {
	c    *Client
	stop chan struct{}
	done chan struct{}
	sent atomic.Int64
}

func StartRatePublisher(c *Client, channel string, period time.Duration) *RatePublisher {
	p := &RatePublisher{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; i < 100_000; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			b, _ := json.Marshal(map[string]any{"op": "publish-async", "channel": channel, "data": Payload{ID: fmt.Sprintf("m%d", i), Ch: channel}})
			if _, err := c.stdin.Write(append(b, '\n')); err != nil {
				return
			}
			p.sent.Add(1)
		}
	}()
	return p
}

// Sent is how many publishes were sent so far.
func (p *RatePublisher) Sent() int64 { return p.sent.Load() }

// Finish stops publishing, waits for every outcome, and returns the IDs
// published successfully and the failures.
func (p *RatePublisher) Finish(t testing.TB) (ok []string, failed []Event) {
	close(p.stop)
	<-p.done
	n := int(p.sent.Load())
	testutil.Eventually(t, WaitTimeout, fmt.Sprintf("the outcome of %d publishes", n), func(context.Context) (bool, string) {
		k := 0
		for _, e := range p.c.Events() {
			if e.Ev == "published" || e.Ev == "publish-failed" {
				k++
			}
		}
		return k >= n, fmt.Sprintf("%d outcomes", k)
	})
	return p.outcomes()
}

// outcomes returns the IDs published successfully and the failures so far.
func (p *RatePublisher) outcomes() (ok []string, failed []Event) {
	for _, e := range p.c.Events() {
		switch e.Ev {
		case "published":
			ok = append(ok, e.PayloadID())
		case "publish-failed":
			failed = append(failed, e)
		}
	}
	return ok, failed
}

// FinishUnanswered stops publishing, waits for the outcome of the last
// publish, and returns the IDs published successfully, the failures, and
// the publishes that got no outcome at all. The CometD client sends its
// publishes in order, so once the last one is answered every earlier one
// that will ever be is; the CometD JavaScript client drops the publishes it
// has queued, without calling their callbacks, when a server tells it to
// handshake again (a lost session).
func (p *RatePublisher) FinishUnanswered(t testing.TB) (ok []string, failed []Event, unanswered []string) {
	close(p.stop)
	<-p.done
	n := int(p.sent.Load())
	lastID := fmt.Sprintf("m%d", n-1)
	testutil.Eventually(t, WaitTimeout, "the outcome of the last publish, "+lastID, func(context.Context) (bool, string) {
		return LastAnswered(p.c) == int64(n-1), ""
	})
	ok, failed = p.outcomes()
	answered := map[string]bool{}
	for _, id := range ok {
		answered[id] = true
	}
	for _, e := range failed {
		answered[e.PayloadID()] = true
	}
	for i := range n {
		if id := fmt.Sprintf("m%d", i); !answered[id] {
			unanswered = append(unanswered, id)
		}
	}
	return ok, failed, unanswered
}

// PayloadID is the id of the payload an event carries ("" for none).
func (e Event) PayloadID() string {
	var p Payload
	_ = json.Unmarshal(e.Data, &p)
	return p.ID
}

// PublishIndex is i of a RatePublisher's publish "m<i>" an event is about
// (-1 for anything else).
func (e Event) PublishIndex() int64 {
	id := e.PayloadID()
	if !strings.HasPrefix(id, "m") {
		return -1
	}
	i, err := strconv.ParseInt(id[1:], 10, 64)
	if err != nil {
		return -1
	}
	return i
}

// LastAnswered is the index of c's last RatePublisher publish that was
// answered (-1 before any): publishes after it may be in flight.
func LastAnswered(c *Client) int64 {
	last := int64(-1)
	for _, e := range c.Events() {
		if e.Ev == "published" || e.Ev == "publish-failed" {
			last = max(last, e.PublishIndex())
		}
	}
	return last
}

// ReceivedByAll reports whether some publish of pub's RatePublisher with
// index from or above has reached every client; if not, it says what the
// first such publish is missing (a client without acks may lose one, so
// later publishes count too).
func ReceivedByAll(pub *Client, from int64, clients []*Client) (bool, string) {
	state := "no publish answered since"
	for _, e := range pub.Events() {
		if e.Ev != "published" || e.PublishIndex() < from {
			continue
		}
		id := e.PayloadID()
		missing := ""
		for _, c := range clients {
			if c.Count(id) == 0 {
				missing = c.Name()
				break
			}
		}
		if missing == "" {
			return true, ""
		}
		if state == "no publish answered since" {
			state = missing + " has not received " + id
		}
	}
	return false, state
}

// lossReport counts, for one client, the published IDs it never received and
// the ones it received more than once.
func LossReport(c *Client, ids []string) (lost, dup int) {
	got := map[string]int{}
	for key, n := range c.Received() {
		got[key[strings.IndexByte(key, ' ')+1:]] += n
	}
	for _, id := range ids {
		switch n := got[id]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	return lost, dup
}

// CheckDelivery waits until every client has had the chance to receive the
// last of published, then logs, per client, what it lost and duplicated, its
// handshakes and meta errors. It fails the test when an ack client lost or
// duplicated a message or saw a meta error, when any client handshook more
// than once (its clientId changed), or when more than maxFailed publishes
// failed (a publish that fails never reached the cluster: it is the
// publisher's error to see, not a loss). others (clients without the ack
// extension) are reported only.
func CheckDelivery(t testing.TB, acks, others []*Client, published []string, failed []Event, maxFailed int) {
	t.Helper()
	if len(published) == 0 {
		t.Fatal("nothing was published")
	}
	last := published[len(published)-1]
	for _, c := range acks {
		c.WaitMessage(last)
	}
	deadline := time.Now().Add(WaitTimeout)
	for _, c := range others {
		testutil.Eventually(t, WaitTimeout, c.Name()+" to settle", func(context.Context) (bool, string) {
			return c.Count(last) > 0 || time.Now().After(deadline), ""
		})
	}
	check := func(c *Client, ack bool) {
		lost, dup := LossReport(c, published)
		t.Logf("%-28s %d lost, %d duplicated of %d; %d handshakes; meta errors %v",
			c.Name(), lost, dup, len(published), c.Handshakes(), c.MetaErrors())
		if ack && (lost > 0 || dup > 0) {
			t.Errorf("ack client %s lost %d and duplicated %d of %d messages", c, lost, dup, len(published))
		}
		if ack && len(c.MetaErrors()) > 0 {
			t.Errorf("%s saw meta errors %+v", c, c.MetaErrors())
		}
		if n := c.Handshakes(); n != 1 {
			t.Errorf("%s handshook %d times: its clientId changed", c, n)
		}
	}
	for _, c := range acks {
		check(c, true)
	}
	for _, c := range others {
		check(c, false)
	}
	if len(failed) > 0 {
		t.Logf("%d publishes failed (at most %d allowed): %+v", len(failed), maxFailed, failed[:min(len(failed), 3)])
	}
	if len(failed) > maxFailed {
		t.Errorf("%d publishes failed, more than %d", len(failed), maxFailed)
	}
}

// StartMix starts the clients a test of moving sessions watches, all
// subscribed to pattern through url: CometD clients with the ack extension,
// two on long-polling and two on websocket (acks), and a Faye client on each
// transport (others, which have no ack).
func StartMix(t testing.TB, url, pattern string) (acks, others []*Client) {
	t.Helper()
	for _, tr := range []string{"long-polling", "long-polling", "websocket", "websocket"} {
		c := Start(t, "cometd", url, tr, "ack")
		c.Subscribe(pattern)
		acks = append(acks, c)
	}
	for _, tr := range []string{"long-polling", "websocket"} {
		c := Start(t, "faye", url, tr)
		c.Subscribe(pattern)
		others = append(others, c)
	}
	return acks, others
}
