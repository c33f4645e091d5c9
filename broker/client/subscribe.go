package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Handler receives the messages of one subscription. Handlers run on the
// client's delivery goroutine, one message at a time, in arrival order; a
// Handler may call back into the Client (Publish, Subscribe, ...).
type Handler func(m *Message)

// Subscription is one local subscription handle. Several handles may share a
// channel pattern; the server is subscribed once per pattern. Each message is
// delivered at most once to each handle, even when the server's wildcard
// subscriptions overlap.
type Subscription struct {
	c       *Client
	channel string
	h       Handler
	active  atomic.Bool
}

// Unsubscribe removes this handle; it is the same as Client.Unsubscribe.
func (s *Subscription) Unsubscribe(ctx context.Context) error { return s.c.Unsubscribe(ctx, s) }

// Subscribe subscribes to a channel or a wildcard pattern ("/a/*", "/a/**")
// and calls h for each message whose channel matches. It returns once the
// server has acknowledged the subscription (a refusal is an *Error). The
// subscription survives re-handshakes: the client subscribes again after each.
// If the server answers that the session has expired, Subscribe waits
// (bounded by ctx) for the client to re-handshake and re-subscribe.
func (c *Client) Subscribe(ctx context.Context, channel string, h Handler) (*Subscription, error) {
	if h == nil {
		return nil, errors.New("bayeux: Subscribe needs a Handler")
	}
	if err := validChannel(channel, true); err != nil {
		return nil, err
	}
	s, renewed, err := c.subscribe(ctx, channel, h)
	if renewed == nil {
		return s, err
	}
	// The session expired under us: the connect loop re-handshakes and
	// re-subscribes every handle, this one included. Wait for that.
	select {
	case <-renewed:
		return s, nil
	case <-c.ended:
		c.removeLocal(s)
		return nil, ErrDisconnected
	case <-ctx.Done():
		c.removeLocal(s)
		return nil, fmt.Errorf("bayeux: subscribe %s: waiting for the re-handshake: %w (server said: %v)", channel, ctx.Err(), err)
	}
}

// subscribe registers h and subscribes the server when needed. When the
// server answers that the session must be re-established, it keeps the
// handle and returns the channel that closes once that is done.
func (c *Client) subscribe(ctx context.Context, channel string, h Handler) (*Subscription, <-chan struct{}, error) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	id, transport, err := c.session()
	if err != nil {
		return nil, nil, err
	}
	s := &Subscription{c: c, channel: channel, h: h}
	s.active.Store(true)
	// Register first so that a message racing ahead of the reply is kept.
	c.mu.Lock()
	first := len(c.subs[channel]) == 0
	c.subs[channel] = append(c.subs[channel], s)
	if first && isWild(channel) {
		c.wild++
	}
	c.mu.Unlock()
	if !first {
		return s, nil, nil
	}
	replies, err := c.request(ctx, []*Message{{Channel: ChannelSubscribe, ClientID: id, Subscription: Subscriptions{channel}}}, transport)
	if err == nil && !replies[0].ok() {
		be := replyError(replies[0])
		if be.Advice != nil && be.Advice.Reconnect == ReconnectHandshake {
			// The re-subscription that follows the re-handshake needs
			// subMu, which is held until return: it cannot be missed.
			c.mu.Lock()
			renewed := c.renewed
			c.mu.Unlock()
			return s, renewed, be
		}
		err = be
	}
	if err != nil {
		c.removeLocal(s)
		return nil, nil, err
	}
	return s, nil, nil
}

// SubscribeChan is Subscribe with delivery to a Go channel. Sends block when
// ch is full, which holds back later deliveries of this Client (never the
// network connection); the caller must keep receiving until it unsubscribes.
func (c *Client) SubscribeChan(ctx context.Context, channel string, ch chan<- *Message) (*Subscription, error) {
	if ch == nil {
		return nil, errors.New("bayeux: SubscribeChan needs a channel")
	}
	return c.Subscribe(ctx, channel, func(m *Message) { ch <- m })
}

func isWild(channel string) bool {
	return strings.HasSuffix(channel, "/*") || strings.HasSuffix(channel, "/**")
}

// removeLocal drops a handle and reports whether its pattern has no handles
// left.
func (c *Client) removeLocal(s *Subscription) bool {
	s.active.Store(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.subs[s.channel]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(c.subs, s.channel)
		if isWild(s.channel) {
			c.wild--
		}
		return true
	}
	c.subs[s.channel] = list
	return false
}

// Unsubscribe removes a handle. No delivery to it starts once this returns
// (a handler call already under way may still finish). When it was the last handle on its pattern, the server is told
// to unsubscribe; if there is no live session the removal is local only.
func (c *Client) Unsubscribe(ctx context.Context, s *Subscription) error {
	if s == nil || s.c != c {
		return errors.New("bayeux: Unsubscribe: subscription does not belong to this client")
	}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if !s.active.Load() {
		return nil
	}
	if !c.removeLocal(s) {
		return nil
	}
	id, transport, err := c.session()
	if err != nil {
		return nil
	}
	replies, err := c.request(ctx, []*Message{{Channel: ChannelUnsubscribe, ClientID: id, Subscription: Subscriptions{s.channel}}}, transport)
	if err != nil {
		return err
	}
	if !replies[0].ok() {
		return replyError(replies[0])
	}
	return nil
}

// resubscribe subscribes the new session to every pattern with local
// handles, in one batch.
func (c *Client) resubscribe(ctx context.Context) error {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	id, transport, err := c.session()
	if err != nil {
		return err
	}
	c.mu.Lock()
	msgs := make([]*Message, 0, len(c.subs))
	for ch := range c.subs {
		msgs = append(msgs, &Message{Channel: ChannelSubscribe, ClientID: id, Subscription: Subscriptions{ch}})
	}
	c.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	replies, err := c.request(ctx, msgs, transport)
	if err != nil {
		return fmt.Errorf("bayeux: re-subscribing: %w", err)
	}
	for _, r := range replies {
		if !r.ok() {
			return replyError(r)
		}
	}
	return nil
}

// deliveryQueue decouples delivery from the network: an unbounded FIFO
// drained by one goroutine that calls the matching handlers.
type deliveryQueue struct {
	c       *Client
	mu      sync.Mutex
	items   []*Message
	signal  chan struct{}
	quit    chan struct{}
	done    chan struct{}
	started bool
	stopped bool
}

func (q *deliveryQueue) init(c *Client) {
	q.c = c
	q.signal = make(chan struct{}, 1)
	q.quit = make(chan struct{})
	q.done = make(chan struct{})
}

func (q *deliveryQueue) start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return
	}
	q.started = true
	go q.loop()
}

func (q *deliveryQueue) push(m *Message) {
	q.mu.Lock()
	q.items = append(q.items, m)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *deliveryQueue) loop() {
	defer close(q.done)
	for {
		q.mu.Lock()
		batch := q.items
		q.items = nil
		q.mu.Unlock()
		if len(batch) > 0 {
			for _, m := range batch {
				q.c.dispatch(m)
			}
			continue
		}
		select {
		case <-q.signal:
		case <-q.quit:
			q.mu.Lock()
			empty := len(q.items) == 0
			q.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// stop lets the goroutine deliver what is queued, then waits for it to end.
func (q *deliveryQueue) stop(ctx context.Context) error {
	q.mu.Lock()
	if !q.started || q.stopped {
		q.mu.Unlock()
		return nil
	}
	q.stopped = true
	q.mu.Unlock()
	close(q.quit)
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bayeux: disconnect: delivering queued messages: %w", ctx.Err())
	}
}

// dispatch hands m to every active handle whose pattern matches its channel,
// once per handle.
func (c *Client) dispatch(m *Message) {
	var arr [4]*Subscription
	hs := arr[:0]
	c.mu.Lock()
	hs = append(hs, c.subs[m.Channel]...)
	if c.wild > 0 {
		it := bayeux.MatchingWildcards(m.Channel)
		for p, ok := it.Next(); ok; p, ok = it.Next() {
			hs = append(hs, c.subs[string(p)]...)
		}
	}
	c.mu.Unlock()
	for _, s := range hs {
		if s.active.Load() {
			s.h(m)
		}
	}
}
