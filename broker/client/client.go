// Package client is a Bayeux (CometD) client for Go programs: handshake with
// transport negotiation (websocket preferred, long-polling as the fallback),
// a connect loop that follows the server's advice with backoff and jitter,
// re-subscription after a re-handshake, subscriptions with callbacks or Go
// channels, publish with its acknowledgement, extensions, and the client side
// of the ack extension.
//
// The client works with any conforming Bayeux server. Events in a response
// batch are delivered whether they come before or after the /meta/connect
// reply, and each message is delivered once to each matching subscription.
//
// Received messages are delivered on one goroutine per Client, in arrival
// order, decoupled from the network: a slow subscriber delays later
// deliveries but never stalls the connection. The queue between the two is
// unbounded, so a subscriber that never keeps up grows memory; the server's
// own per-session queue cap is the backstop.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// defaultConnectTimeout is assumed for the server's connect hold when it
// never advised a timeout.
const defaultConnectTimeout = 30 * time.Second

// Client is a Bayeux client session. Create it with NewClient, then call
// Handshake. A Client is safe for concurrent use.
type Client struct {
	cfg       Config
	url       *url.URL
	wsURL     string
	manualJar bool // HTTPClient has no jar: apply cfg.Jar by hand

	nextID atomic.Uint64

	dialMu sync.Mutex // serialises websocket dials
	subMu  sync.Mutex // serialises subscribe/unsubscribe/resubscribe round trips

	mu         sync.Mutex
	state      State
	closed     bool // no more requests: Disconnect called or advice "none"
	tornDown   bool // Disconnect has run
	clientID   string
	transport  string
	ws         *wsConn
	timeout    time.Duration // server's connect hold, from advice
	interval   time.Duration // delay between connects, from advice
	pending    map[string]chan *Message
	subs       map[string][]*Subscription
	wild       int // patterns in subs that end in /* or /**
	ackEnabled bool
	ackID      int64
	loopCancel context.CancelFunc
	loopDone   chan struct{}
	ended      chan struct{} // closed on reaching StateDisconnected
	endErr     error         // why; set before ended is closed
	renewed    chan struct{} // closed (and replaced) after each re-handshake and re-subscribe

	readers sync.WaitGroup // websocket reader goroutines
	queue   deliveryQueue

	// onWait, if set (by tests in this package, before Handshake), sees
	// each pause of the connect loop before it starts.
	onWait func(d time.Duration)
}

// NewClient validates cfg and returns an idle client.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	ws := *u
	if ws.Scheme == "https" {
		ws.Scheme = "wss"
	} else {
		ws.Scheme = "ws"
	}
	c := &Client{
		cfg:       cfg,
		url:       u,
		wsURL:     ws.String(),
		manualJar: cfg.HTTPClient.Jar == nil,
		pending:   map[string]chan *Message{},
		subs:      map[string][]*Subscription{},
		timeout:   defaultConnectTimeout,
		ackID:     -1,
		ended:     make(chan struct{}),
		renewed:   make(chan struct{}),
	}
	c.queue.init(c)
	return c, nil
}

// ClientID returns the session id the server assigned, or "" before the
// first successful handshake. It changes after a re-handshake.
func (c *Client) ClientID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// Transport returns the negotiated transport ("websocket" or "long-polling"),
// or "" before the first successful handshake.
func (c *Client) Transport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transport
}

// Done returns a channel that is closed when the client is finished: after
// Disconnect, or when the server advised reconnect "none". Err then says why.
func (c *Client) Done() <-chan struct{} { return c.ended }

// Err returns nil while the client is live or after a plain Disconnect, and
// the server's reason when it ended the session (advice "none").
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr
}

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Client) setState(s State, err error) {
	c.mu.Lock()
	if c.state == StateDisconnected {
		c.mu.Unlock()
		return
	}
	changed := c.state != s
	c.state = s
	c.mu.Unlock()
	if c.cfg.OnState != nil && (changed || err != nil) {
		c.cfg.OnState(s, err)
	}
}

// Handshake opens the session: it handshakes, negotiates the transport and
// starts the background connect loop. It returns once the handshake
// succeeded, or the first failure (a refused handshake is an *Error). It may
// be called only once per Client.
func (c *Client) Handshake(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrDisconnected
	}
	if c.loopDone != nil {
		c.mu.Unlock()
		return errors.New("bayeux: Handshake already called")
	}
	c.loopDone = make(chan struct{})
	c.mu.Unlock()

	c.setState(StateHandshaking, nil)
	if err := c.handshake(ctx); err != nil {
		c.mu.Lock()
		c.loopDone = nil // allow a retry by the caller
		c.mu.Unlock()
		c.setState(StateIdle, err)
		return err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		return ErrDisconnected
	}
	c.loopCancel = cancel
	done := c.loopDone
	c.mu.Unlock()
	c.queue.start()
	go c.run(loopCtx, done)
	return nil
}

// handshake performs one /meta/handshake and negotiates the transport.
// A live websocket is kept across a re-handshake (requests of the old
// session still in flight on it get their replies).
func (c *Client) handshake(ctx context.Context) error {
	m := &Message{
		Channel:                  ChannelHandshake,
		Version:                  "1.0",
		MinimumVersion:           "1.0",
		SupportedConnectionTypes: append([]string(nil), c.cfg.Transports...),
	}
	if c.cfg.AckExtension {
		m.Ext = map[string]any{"ack": true}
	}
	via := bayeux.TransportLongPolling
	if !c.allowed(bayeux.TransportLongPolling) {
		via = bayeux.TransportWebSocket
	}
	replies, err := c.request(ctx, []*Message{m}, via)
	if err != nil {
		return err
	}
	r := replies[0]
	if !r.ok() {
		return replyError(r)
	}
	if r.ClientID == "" {
		return errors.New("bayeux: handshake reply carries no clientId")
	}
	offered := r.SupportedConnectionTypes
	if len(offered) == 0 {
		offered = []string{via}
	}
	chosen := ""
	for _, t := range c.cfg.Transports {
		if contains(offered, t) {
			chosen = t
			break
		}
	}
	if chosen == "" {
		return fmt.Errorf("bayeux: no common transport: client allows %v, server offers %v", c.cfg.Transports, offered)
	}
	c.mu.Lock()
	c.clientID = r.ClientID
	c.transport = chosen
	c.ackEnabled = c.cfg.AckExtension && r.Ext["ack"] == true
	c.ackID = -1
	c.applyAdviceLocked(r.Advice)
	c.mu.Unlock()
	if chosen != bayeux.TransportWebSocket {
		c.dropWebsocket(errors.New("bayeux: websocket no longer in use"))
	}
	if chosen == bayeux.TransportWebSocket && via != bayeux.TransportWebSocket {
		if _, err := c.websocket(ctx); err != nil {
			if c.allowed(bayeux.TransportLongPolling) && contains(offered, bayeux.TransportLongPolling) {
				c.mu.Lock()
				c.transport = bayeux.TransportLongPolling
				c.mu.Unlock()
				return nil
			}
			return err
		}
	}
	return nil
}

func (c *Client) allowed(t string) bool { return contains(c.cfg.Transports, t) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// maxAdvice caps advised timeouts and intervals, so that a hostile or
// broken value can neither overflow a Duration nor park the client forever.
const maxAdvice = time.Hour

// applyAdviceLocked records interval and timeout advice. Lock must be held.
func (c *Client) applyAdviceLocked(a *Advice) {
	if a == nil {
		return
	}
	ms := func(v int64) time.Duration {
		if v > int64(maxAdvice/time.Millisecond) {
			return maxAdvice
		}
		return time.Duration(v) * time.Millisecond
	}
	if a.Timeout != nil && *a.Timeout >= 0 {
		c.timeout = ms(*a.Timeout)
	}
	if a.Interval != nil && *a.Interval >= 0 {
		c.interval = ms(*a.Interval)
	}
}

// request sends msgs over the given transport and waits for one reply per
// message. With long-polling, events in the response batch are delivered
// before it returns, whatever their position in the batch.
func (c *Client) request(ctx context.Context, msgs []*Message, transport string) ([]*Message, error) {
	waiters := make([]chan *Message, len(msgs))
	send := make([]*Message, 0, len(msgs))
	c.mu.Lock()
	for i, m := range msgs {
		if m.ID == "" {
			m.ID = strconv.FormatUint(c.nextID.Add(1), 10)
		}
		if m.ClientID == "" && m.Channel != ChannelHandshake {
			m.ClientID = c.clientID
		}
		waiters[i] = make(chan *Message, 1)
		c.pending[m.ID] = waiters[i]
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		for _, m := range msgs {
			delete(c.pending, m.ID)
		}
		c.mu.Unlock()
	}()
	for _, m := range msgs {
		if c.outgoing(m) {
			send = append(send, m)
		}
	}
	if len(send) < len(msgs) {
		return nil, errors.New("bayeux: message dropped by an outgoing extension")
	}
	body, err := json.Marshal(send)
	if err != nil {
		return nil, fmt.Errorf("bayeux: encoding request: %w", err)
	}

	var gone <-chan struct{}
	var ws *wsConn
	if transport == bayeux.TransportWebSocket {
		ws, err = c.websocket(ctx)
		if err != nil {
			return nil, err
		}
		if err := ws.write(body); err != nil {
			return nil, err
		}
		gone = ws.done
	} else {
		resp, err := c.httpSend(ctx, body)
		if err != nil {
			return nil, err
		}
		resp = c.matchAnonymous(resp, msgs, waiters)
		c.receive(resp)
		// Everything the server had to say about this request is in resp.
		closedCh := make(chan struct{})
		close(closedCh)
		gone = closedCh
	}

	replies := make([]*Message, len(msgs))
	for i, w := range waiters {
		select {
		case r := <-w:
			replies[i] = r
			continue
		default:
		}
		select {
		case r := <-w:
			replies[i] = r
		case <-ctx.Done():
			return nil, fmt.Errorf("bayeux: waiting for %s reply: %w", msgs[i].Channel, ctx.Err())
		case <-gone:
			if ws != nil {
				return nil, ws.err
			}
			return nil, fmt.Errorf("bayeux: server sent no reply to %s (id %s)", msgs[i].Channel, msgs[i].ID)
		}
	}
	return replies, nil
}

// matchAnonymous pairs replies that carry no id with the request message of
// the same channel (some servers omit ids), and returns the other messages.
func (c *Client) matchAnonymous(resp, req []*Message, waiters []chan *Message) []*Message {
	out := resp[:0:0]
	for _, r := range resp {
		if r.ID == "" && r.isReply() {
			matched := false
			for i, q := range req {
				if q.Channel == r.Channel && len(waiters[i]) == 0 {
					if c.incoming(r) {
						waiters[i] <- r
					}
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// receive processes one batch from the server: replies wake their waiters,
// events go to the delivery queue, in batch order.
func (c *Client) receive(msgs []*Message) {
	for _, m := range msgs {
		if !c.incoming(m) {
			continue
		}
		if !m.isReply() {
			c.queue.push(m)
			continue
		}
		c.mu.Lock()
		if m.Channel == ChannelConnect && c.ackEnabled && m.ok() {
			if n, ok := m.Ext["ack"].(float64); ok {
				c.ackID = int64(n)
			}
		}
		w := c.pending[m.ID]
		c.mu.Unlock()
		if w != nil {
			select {
			case w <- m:
			default: // duplicate reply: the first one wins
			}
		}
	}
}

func (c *Client) outgoing(m *Message) bool {
	for _, e := range c.cfg.Extensions {
		if !e.Outgoing(m) {
			return false
		}
	}
	return true
}

func (c *Client) incoming(m *Message) bool {
	for _, e := range c.cfg.Extensions {
		if !e.Incoming(m) {
			return false
		}
	}
	return true
}

// session returns the client id and transport for a request, or an error
// when there is no usable session.
func (c *Client) session() (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", "", ErrDisconnected
	}
	if c.clientID == "" {
		return "", "", ErrNotHandshaken
	}
	return c.clientID, c.transport, nil
}

// Publish sends data to channel and waits for the server's acknowledgement.
// data is encoded with encoding/json, except a json.RawMessage, which is
// sent as is and must be valid JSON. An unsuccessful acknowledgement is
// returned as an *Error.
func (c *Client) Publish(ctx context.Context, channel string, data any) error {
	if err := validChannel(channel, false); err != nil {
		return err
	}
	var raw json.RawMessage
	switch d := data.(type) {
	case json.RawMessage:
		raw = d
	default:
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("bayeux: encoding data for %s: %w", channel, err)
		}
		raw = b
	}
	id, transport, err := c.session()
	if err != nil {
		return err
	}
	replies, err := c.request(ctx, []*Message{{Channel: channel, ClientID: id, Data: raw}}, transport)
	if err != nil {
		return err
	}
	if !replies[0].ok() {
		return replyError(replies[0])
	}
	return nil
}

// Disconnect ends the session: it stops the connect loop, sends
// /meta/disconnect (best effort), closes connections and waits until queued
// messages have been delivered, all bounded by ctx. The Client cannot be
// used afterwards.
func (c *Client) Disconnect(ctx context.Context) error {
	c.mu.Lock()
	if c.tornDown {
		c.mu.Unlock()
		return nil
	}
	c.tornDown = true
	id, transport := c.clientID, c.transport
	if c.closed {
		id = "" // the server already ended the session
	}
	cancel, done := c.loopCancel, c.loopDone
	c.mu.Unlock()

	var sendErr error
	if cancel != nil {
		cancel()
		<-done // the loop only waits on its context, so this is prompt
	}
	if id != "" {
		replies, err := c.request(ctx, []*Message{{Channel: ChannelDisconnect, ClientID: id}}, transport)
		switch {
		case err != nil:
			sendErr = err
		case !replies[0].ok():
			sendErr = replyError(replies[0])
		}
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.setStateFinal(nil)
	c.dropWebsocket(ErrDisconnected)
	readers := make(chan struct{})
	go func() { c.readers.Wait(); close(readers) }()
	select {
	case <-readers:
	case <-ctx.Done():
		return fmt.Errorf("bayeux: disconnect: %w", ctx.Err())
	}
	if err := c.queue.stop(ctx); err != nil {
		return err
	}
	return sendErr
}

// setStateFinal moves to StateDisconnected once.
func (c *Client) setStateFinal(err error) {
	c.mu.Lock()
	if c.state == StateDisconnected {
		c.mu.Unlock()
		return
	}
	c.state = StateDisconnected
	c.endErr = err
	close(c.ended)
	c.mu.Unlock()
	if c.cfg.OnState != nil {
		c.cfg.OnState(StateDisconnected, err)
	}
}

// run is the connect loop.
func (c *Client) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	failures := 0
	rehandshake := false
	var cause error
	for ctx.Err() == nil {
		if rehandshake {
			c.setState(StateHandshaking, cause)
			err := c.handshake(ctx)
			if err == nil {
				err = c.resubscribe(ctx)
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				var be *Error
				if errors.As(err, &be) && be.Advice != nil && be.Advice.Reconnect == ReconnectNone {
					c.terminate(err)
					return
				}
				failures++
				cause = err
				c.setState(StateUnconnected, err)
				delay := c.backoff(failures)
				if be != nil && be.Advice != nil && be.Advice.Interval != nil {
					// A server that refuses for now (a full broker) says when to come back.
					delay = max(delay, time.Duration(*be.Advice.Interval)*time.Millisecond)
				}
				if !c.wait(ctx, delay) {
					return
				}
				continue
			}
			rehandshake = false
			failures = 0
			c.mu.Lock()
			close(c.renewed)
			c.renewed = make(chan struct{})
			c.mu.Unlock()
		}

		reply, err := c.connect(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			c.setState(StateUnconnected, err)
			if !c.wait(ctx, c.backoff(failures)) {
				return
			}
			continue
		}
		c.mu.Lock()
		c.applyAdviceLocked(reply.Advice)
		interval := c.interval
		c.mu.Unlock()
		action := ""
		if reply.Advice != nil {
			action = reply.Advice.Reconnect
		}
		var rerr error
		if !reply.ok() {
			rerr = replyError(reply)
		}
		switch {
		case action == ReconnectNone:
			if rerr == nil {
				rerr = errors.New("bayeux: server advised reconnect none")
			}
			c.terminate(rerr)
			return
		case action == ReconnectHandshake:
			if rerr == nil {
				rerr = errors.New("bayeux: server advised re-handshake")
			}
			rehandshake, cause = true, rerr
			if !c.wait(ctx, interval) {
				return
			}
		case rerr == nil && (action == "" || action == ReconnectRetry):
			failures = 0
			c.setState(StateConnected, nil)
			if !c.wait(ctx, interval) {
				return
			}
		default:
			if action != "" && action != ReconnectRetry {
				rerr = fmt.Errorf("bayeux: unknown reconnect advice %q, retrying: %w", action, errOr(rerr))
			}
			failures++
			c.setState(StateUnconnected, rerr)
			if !c.wait(ctx, interval+c.backoff(failures)) {
				return
			}
		}
	}
}

func errOr(err error) error {
	if err == nil {
		return errors.New("connect succeeded")
	}
	return err
}

// terminate ends the session after reconnect advice "none".
func (c *Client) terminate(err error) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.dropWebsocket(ErrDisconnected)
	c.setStateFinal(err)
}

// connect sends one /meta/connect and waits for its reply.
func (c *Client) connect(ctx context.Context) (*Message, error) {
	c.mu.Lock()
	id, transport, hold := c.clientID, c.transport, c.timeout
	m := &Message{Channel: ChannelConnect, ClientID: id, ConnectionType: transport}
	if c.state != StateConnected {
		// Ask for an immediate reply so that the session is known to be
		// established without waiting for a full hold.
		zero := int64(0)
		m.Advice = &Advice{Timeout: &zero}
	}
	if c.ackEnabled {
		m.Ext = map[string]any{"ack": c.ackID}
	}
	c.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, hold+c.cfg.MaxNetworkDelay)
	defer cancel()
	replies, err := c.request(cctx, []*Message{m}, transport)
	if err != nil {
		if transport == bayeux.TransportWebSocket && cctx.Err() != nil && ctx.Err() == nil {
			// The server held the connect longer than advised: the
			// connection is presumed dead.
			c.dropWebsocket(err)
		}
		return nil, err
	}
	return replies[0], nil
}

// backoff returns the jittered delay after n consecutive failures.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.BackoffBase
	for i := 1; i < n && d < c.cfg.BackoffMax; i++ {
		d *= 2
	}
	if d > c.cfg.BackoffMax {
		d = c.cfg.BackoffMax
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// wait pauses for d or until ctx ends; it reports whether ctx is still live.
func (c *Client) wait(ctx context.Context, d time.Duration) bool {
	if c.onWait != nil {
		c.onWait(d)
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
