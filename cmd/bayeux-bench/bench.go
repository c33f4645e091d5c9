package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
	"github.com/cometd-operator/cometd-operator/broker/client"
)

// Limits that keep a run bounded whatever the flags say.
const (
	maxDuration    = time.Hour
	maxMessages    = 100_000_000
	maxSubscribers = 20_000
	maxPublishers  = 1_000
	maxChannels    = 100_000
	maxInflight    = 1_000
	maxPayload     = 1 << 20
	setupParallel  = 32
)

// options describes one run.
type options struct {
	URL         string        // any Bayeux server endpoint
	Transport   string        // websocket or long-polling
	Subscribers int           // subscriber clients, spread over the channels
	Channels    int           // channels /bench/0 … /bench/M-1
	Publishers  int           // publisher clients
	Rate        float64       // total publishes per second; 0 = back-to-back
	Inflight    int           // concurrent publishes per publisher
	Duration    time.Duration // publishing phase length
	Messages    int64         // total publishes; 0 = no count limit
	Payload     int           // padding bytes added to each message
	Drain       time.Duration // how long to wait for in-flight deliveries
	Prefix      string        // channel prefix
	Progress    time.Duration // progress line period; 0 = none
	// ServerPID, when not 0, is the server's process on this machine: its
	// CPU time over the publishing phase and its RSS go in the summary.
	ServerPID int
	// Idle, when not 0, makes the run an idle one: the subscribers connect
	// and subscribe, nothing is published, and after Idle the server's RSS
	// (ServerPID) is read again, for the memory each idle session costs.
	Idle time.Duration
}

func (o *options) validate() error {
	switch {
	case o.URL == "":
		return errors.New("-url is required")
	case o.Transport != bayeux.TransportWebSocket && o.Transport != bayeux.TransportLongPolling:
		return fmt.Errorf("-transport must be websocket or long-polling, not %q", o.Transport)
	case o.Subscribers < 0 || o.Subscribers > maxSubscribers:
		return fmt.Errorf("-subscribers must be in [0, %d]", maxSubscribers)
	case o.Channels < 1 || o.Channels > maxChannels:
		return fmt.Errorf("-channels must be in [1, %d]", maxChannels)
	case o.Publishers < 1 || o.Publishers > maxPublishers:
		return fmt.Errorf("-publishers must be in [1, %d]", maxPublishers)
	case o.Rate < 0:
		return errors.New("-rate must not be negative")
	case o.Inflight < 1 || o.Inflight > maxInflight:
		return fmt.Errorf("-inflight must be in [1, %d]", maxInflight)
	case o.Duration <= 0 || o.Duration > maxDuration:
		return fmt.Errorf("-duration must be in (0, %v]", maxDuration)
	case o.Messages < 0 || o.Messages > maxMessages:
		return fmt.Errorf("-messages must be in [0, %d]", maxMessages)
	case o.Payload < 0 || o.Payload > maxPayload:
		return fmt.Errorf("-payload must be in [0, %d]", maxPayload)
	case o.Drain < 0 || o.Drain > maxDuration:
		return errors.New("-drain out of range")
	case o.ServerPID < 0:
		return errors.New("-server-pid must not be negative")
	case o.Idle < 0 || o.Idle > maxDuration:
		return errors.New("-idle out of range")
	case o.Idle > 0 && o.ServerPID == 0:
		return errors.New("-idle needs -server-pid")
	case !strings.HasPrefix(o.Prefix, "/") || strings.Contains(o.Prefix, "*"):
		return fmt.Errorf("-prefix %q must start with / and hold no wildcard", o.Prefix)
	}
	return nil
}

// Summary is the machine-readable result printed at the end.
type Summary struct {
	URL             string    `json:"url"`
	Transport       string    `json:"transport"`
	Subscribers     int       `json:"subscribers"`
	Channels        int       `json:"channels"`
	Publishers      int       `json:"publishers"`
	Rate            float64   `json:"rate"`
	PublishSeconds  float64   `json:"publish_seconds"`
	Published       int64     `json:"published"`
	PublishErrors   int64     `json:"publish_errors"`
	PublishedPerSec float64   `json:"published_per_sec"`
	Expected        int64     `json:"expected"`
	Delivered       int64     `json:"delivered"`
	DeliveredPerSec float64   `json:"delivered_per_sec"`
	Losses          int64     `json:"losses"`
	Duplicates      int64     `json:"duplicates"`
	Unexpected      int64     `json:"unexpected"`
	LatencyMs       Latencies `json:"latency_ms"`
	// BenchCPUSeconds is the CPU time this process used while publishing
	// and draining: compare it with the wall time to see whether the load
	// generator itself was the bottleneck.
	BenchCPUSeconds float64 `json:"bench_cpu_seconds"`
	FirstError      string  `json:"first_error,omitempty"`

	// With -server-pid: the server's CPU time (utime + stime) over the
	// publishing and draining phase, that per delivered message, and its
	// resident set at the end of that phase.
	ServerCPUSeconds       float64 `json:"server_cpu_seconds,omitempty"`
	ServerCPUPerDeliveryUs float64 `json:"server_cpu_us_per_delivery,omitempty"`
	ServerRSSBytes         int64   `json:"server_rss_bytes,omitempty"`

	// With -idle: the server's resident set before the first connection
	// and once the subscribers had been idle for -idle, and the difference
	// per subscriber (each a session with one subscription and a held
	// /meta/connect).
	IdleSessions         int   `json:"idle_sessions,omitempty"`
	ServerRSSBeforeBytes int64 `json:"server_rss_before_bytes,omitempty"`
	BytesPerIdleSession  int64 `json:"bytes_per_idle_session,omitempty"`
}

// cpuSeconds returns the CPU time (user + system) used by this process.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// Latencies are publish-to-receive latencies in milliseconds.
type Latencies struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// bitset grows on demand.
type bitset []uint64

func (b *bitset) set(i int) (was bool) {
	w := i >> 6
	for w >= len(*b) {
		*b = append(*b, 0)
	}
	m := uint64(1) << uint(i&63)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) has(i int) bool {
	w := i >> 6
	return w < len(b) && b[w]&(1<<uint(i&63)) != 0
}

// subscriber tracks what one subscriber client received. Its handler runs on
// the client's single delivery goroutine, which may still be running when the
// summary is taken (Disconnect can time out), so the fields under mu are only
// touched with mu held, and tally seals them: later deliveries are ignored.
type subscriber struct {
	channel    int
	c          *client.Client
	delivered  atomic.Int64
	lastRecvNs atomic.Int64

	mu         sync.Mutex
	sealed     bool     // tally ran: count nothing more
	seen       []bitset // per publisher, indexed by seq / channels
	dups       int64
	unexpected int64
	hist       histogram
}

// subTally is what one subscriber contributes to the summary.
type subTally struct {
	delivered, dups, unexpected, losses int64
}

// tally seals s and returns its counts; losses are acknowledged publishes on
// its channel (acked[j] holds publisher j's acknowledged sequence numbers)
// that it never received. Its latencies are merged into h.
func (s *subscriber) tally(acked []bitset, channels int, h *histogram) subTally {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = true
	t := subTally{delivered: s.delivered.Load(), dups: s.dups, unexpected: s.unexpected}
	for j, a := range acked {
		for seq := s.channel; seq < len(a)*64; seq += channels {
			if a.has(seq) && (j >= len(s.seen) || !s.seen[j].has(seq/channels)) {
				t.losses++
			}
		}
	}
	h.merge(&s.hist)
	return t
}

// publisher tracks which sequence numbers the server acknowledged.
type publisher struct {
	c     *client.Client
	mu    sync.Mutex
	acked bitset
}

// wireData is the message payload: publisher, sequence, send time.
type wireData struct {
	P int    `json:"p"`
	S int    `json:"s"`
	T int64  `json:"t"`
	X string `json:"x,omitempty"`
}

func encodeData(p, s int, t int64, pad string) json.RawMessage {
	b := make([]byte, 0, 48+len(pad))
	b = append(b, `{"p":`...)
	b = strconv.AppendInt(b, int64(p), 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendInt(b, int64(s), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t, 10)
	if pad != "" {
		b = append(b, `,"x":"`...)
		b = append(b, pad...)
		b = append(b, '"')
	}
	b = append(b, '}')
	return b
}

// parseWire reads the payload written by encodeData without reflection; it
// reports false for any other shape.
func parseWire(b []byte) (wireData, bool) {
	var d wireData
	field := func(name string) (int64, bool) {
		if len(b) < len(name) || string(b[:len(name)]) != name {
			return 0, false
		}
		b = b[len(name):]
		i := 0
		if i < len(b) && b[i] == '-' {
			i++
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		n, err := strconv.ParseInt(string(b[:i]), 10, 64)
		b = b[i:]
		return n, err == nil
	}
	p, ok1 := field(`{"p":`)
	s, ok2 := field(`,"s":`)
	t, ok3 := field(`,"t":`)
	if !ok1 || !ok2 || !ok3 {
		return d, false
	}
	if len(b) != 1 || b[0] != '}' {
		if len(b) < 7 || string(b[:6]) != `,"x":"` {
			return d, false
		}
	}
	d.P, d.S, d.T = int(p), int(s), t
	return d, true
}

func (o *options) channel(k int) string { return o.Prefix + "/" + strconv.Itoa(k) }

// run executes one benchmark. Progress lines go to progress (if non-nil).
func run(ctx context.Context, o options, progress io.Writer) (*Summary, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var rss0 int64
	if o.Idle > 0 {
		p, err := readProc(o.ServerPID)
		if err != nil {
			return nil, err
		}
		rss0 = p.RSSBytes
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 2*(o.Subscribers+o.Publishers*o.Inflight) + 8,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	newClient := func() (*client.Client, error) {
		return client.NewClient(client.Config{
			URL:        o.URL,
			Transports: []string{o.Transport},
			HTTPClient: &http.Client{Transport: tr},
		})
	}

	var all []*client.Client
	var allMu sync.Mutex
	defer func() {
		// Disconnect everybody, in parallel, bounded.
		dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		sem := make(chan struct{}, setupParallel)
		for _, c := range all {
			wg.Add(1)
			sem <- struct{}{}
			go func() { defer wg.Done(); defer func() { <-sem }(); c.Disconnect(dctx) }()
		}
		wg.Wait()
	}()
	connect := func(c *client.Client) error {
		allMu.Lock()
		all = append(all, c)
		allMu.Unlock()
		hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return c.Handshake(hctx)
	}

	// Subscribers.
	subs := make([]*subscriber, o.Subscribers)
	perChannel := make([]int64, o.Channels)
	for i := range subs {
		subs[i] = &subscriber{channel: i % o.Channels, seen: make([]bitset, o.Publishers)}
		perChannel[i%o.Channels]++
	}
	if err := parallel(len(subs), func(i int) error {
		s := subs[i]
		c, err := newClient()
		if err != nil {
			return err
		}
		s.c = c
		if err := connect(c); err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err = c.Subscribe(sctx, o.channel(s.channel), func(m *client.Message) { s.receive(m, &o) })
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}

	if o.Idle > 0 {
		return idleSummary(ctx, o, rss0)
	}

	// Publishers.
	pubs := make([]*publisher, o.Publishers)
	if err := parallel(len(pubs), func(j int) error {
		c, err := newClient()
		if err != nil {
			return err
		}
		pubs[j] = &publisher{c: c}
		if err := connect(c); err != nil {
			return fmt.Errorf("publisher %d: %w", j, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}

	pad := strings.Repeat("x", o.Payload)
	var (
		published, pubErrors atomic.Int64
		tickets              atomic.Int64
		firstErr             atomic.Value
	)
	pctx, stop := context.WithTimeout(ctx, o.Duration)
	defer stop()
	var srv0 procSample
	if o.ServerPID != 0 {
		var err error
		if srv0, err = readProc(o.ServerPID); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	cpu0 := cpuSeconds()

	// Progress.
	progDone := make(chan struct{})
	progStop := make(chan struct{})
	go func() {
		defer close(progDone)
		if progress == nil || o.Progress <= 0 {
			<-progStop
			return
		}
		t := time.NewTicker(o.Progress)
		defer t.Stop()
		var lastP, lastD int64
		last := start
		for {
			select {
			case <-progStop:
				return
			case now := <-t.C:
				p, d := published.Load(), totalDelivered(subs)
				dt := now.Sub(last).Seconds()
				fmt.Fprintf(progress, "[%6.1fs] published %d (%.0f/s)  delivered %d (%.0f/s)  errors %d\n",
					now.Sub(start).Seconds(), p, float64(p-lastP)/dt, d, float64(d-lastD)/dt, pubErrors.Load())
				lastP, lastD, last = p, d, now
			}
		}
	}()

	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.Publishers) / o.Rate)
	}
	var wg sync.WaitGroup
	for j, p := range pubs {
		var seqs atomic.Int64
		for range o.Inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for pctx.Err() == nil {
					if o.Messages > 0 && tickets.Add(1) > o.Messages {
						return
					}
					s := int(seqs.Add(1) - 1)
					if interval > 0 {
						due := start.Add(time.Duration(s) * interval)
						if d := time.Until(due); d > 0 {
							t := time.NewTimer(d)
							select {
							case <-t.C:
							case <-pctx.Done():
								t.Stop()
								return
							}
						}
					}
					data := encodeData(j, s, time.Now().UnixNano(), pad)
					actx, cancel := context.WithTimeout(ctx, 30*time.Second)
					err := p.c.Publish(actx, o.channel(s%o.Channels), data)
					cancel()
					if err != nil {
						pubErrors.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					p.mu.Lock()
					p.acked.set(s)
					p.mu.Unlock()
					published.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	pubEnd := time.Now()

	// Expected deliveries: each acknowledged publish times the subscribers
	// of its channel.
	var expected int64
	for _, p := range pubs {
		for w, word := range p.acked {
			for word != 0 {
				bit := bits.TrailingZeros64(word)
				word &^= 1 << uint(bit)
				expected += perChannel[(w*64+bit)%o.Channels]
			}
		}
	}
	// Drain: wait (bounded) for the deliveries still in flight.
	drainEnd := time.Now().Add(o.Drain)
	for totalDelivered(subs) < expected && time.Now().Before(drainEnd) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	close(progStop)
	<-progDone
	benchCPU := cpuSeconds() - cpu0
	var srv1 procSample
	if o.ServerPID != 0 {
		var err error
		if srv1, err = readProc(o.ServerPID); err != nil {
			return nil, err
		}
	}

	// Disconnect subscribers now so that, normally, their handlers are done
	// before their counters are read; a Disconnect that times out leaves a
	// handler running, which tally copes with.
	dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	parallel(len(subs), func(i int) error { return subs[i].c.Disconnect(dctx) })
	cancel()

	sum := &Summary{
		URL: o.URL, Transport: o.Transport, Subscribers: o.Subscribers, Channels: o.Channels,
		Publishers: o.Publishers, Rate: o.Rate,
		PublishSeconds: pubEnd.Sub(start).Seconds(),
		Published:      published.Load(), PublishErrors: pubErrors.Load(),
		Expected: expected, BenchCPUSeconds: benchCPU,
	}
	if e, ok := firstErr.Load().(string); ok {
		sum.FirstError = e
	}
	// The publishers are done (wg.Wait above): their acked sets are final.
	acked := make([]bitset, len(pubs))
	for j, p := range pubs {
		acked[j] = p.acked
	}
	var h histogram
	var lastRecv int64
	for _, s := range subs {
		st := s.tally(acked, o.Channels, &h)
		sum.Delivered += st.delivered
		sum.Duplicates += st.dups
		sum.Unexpected += st.unexpected
		sum.Losses += st.losses
		if r := s.lastRecvNs.Load(); r > lastRecv {
			lastRecv = r
		}
	}
	if sum.PublishSeconds > 0 {
		sum.PublishedPerSec = float64(sum.Published) / sum.PublishSeconds
	}
	if lastRecv > 0 {
		if span := time.Duration(lastRecv - start.UnixNano()).Seconds(); span > 0 {
			sum.DeliveredPerSec = float64(sum.Delivered) / span
		}
	}
	if o.ServerPID != 0 {
		sum.ServerCPUSeconds = srv1.CPUSeconds - srv0.CPUSeconds
		sum.ServerRSSBytes = srv1.RSSBytes
		if sum.Delivered > 0 {
			sum.ServerCPUPerDeliveryUs = sum.ServerCPUSeconds * 1e6 / float64(sum.Delivered)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	sum.LatencyMs = Latencies{P50: ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
	return sum, nil
}

// idleSummary waits o.Idle with the subscribers connected, then reads the
// server's resident set.
func idleSummary(ctx context.Context, o options, rss0 int64) (*Summary, error) {
	t := time.NewTimer(o.Idle)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p, err := readProc(o.ServerPID)
	if err != nil {
		return nil, err
	}
	sum := &Summary{
		URL: o.URL, Transport: o.Transport, Subscribers: o.Subscribers, Channels: o.Channels,
		IdleSessions: o.Subscribers, ServerRSSBeforeBytes: rss0, ServerRSSBytes: p.RSSBytes,
	}
	if o.Subscribers > 0 {
		sum.BytesPerIdleSession = (p.RSSBytes - rss0) / int64(o.Subscribers)
	}
	return sum, nil
}

func totalDelivered(subs []*subscriber) int64 {
	var n int64
	for _, s := range subs {
		n += s.delivered.Load()
	}
	return n
}

// receive handles one delivered message.
func (s *subscriber) receive(m *client.Message, o *options) {
	now := time.Now().UnixNano()
	d, ok := parseWire(m.Data)
	if !ok {
		if json.Unmarshal(m.Data, &d) != nil {
			d.P = -1
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sealed {
		return
	}
	if d.P < 0 || d.P >= len(s.seen) || d.S < 0 ||
		d.S%o.Channels != s.channel || m.Channel != o.channel(s.channel) {
		s.unexpected++
		return
	}
	if s.seen[d.P].set(d.S / o.Channels) {
		s.dups++
		return
	}
	s.hist.record(time.Duration(now - d.T))
	s.lastRecvNs.Store(now)
	s.delivered.Add(1)
}

// parallel runs fn(0..n-1) with bounded concurrency and returns the first
// error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		sem   = make(chan struct{}, setupParallel)
	)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	return first
}
