package server

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// ChannelMessageListener is called when a message is published to a channel the
// listener's channel matches (listeners on "/a/*" hear "/a/b"). It runs before
// delivery to subscribers; returning false stops the publish (a client that
// published the message is answered 404::message_deleted). It may change the
// message through m.Mutable().
type ChannelMessageListener func(from *ServerSession, ch *ServerChannel, m *ServerMessage) bool

// ServerChannel is the server's view of a channel or channel pattern: its
// subscribers, listeners, authorizers and flags. Channels exist while they have
// subscribers, listeners or authorizers, or are persistent.
type ServerChannel struct {
	id  bayeux.ChannelID
	srv *Server

	// interestMu is held from a change of subscribers between none and some
	// to the backbone call that follows it, and taken before mu.
	interestMu sync.Mutex

	mu          sync.RWMutex
	subs        map[*ServerSession]struct{}
	listeners   []*ChannelMessageListener
	authorizers []Authorizer
	persistent  bool
	lazy        bool
	removed     bool

	snap atomic.Pointer[[]*ServerSession] // subscriber snapshot, nil when stale

	initialized chan struct{} // closed once the creator's initializers ran
}

// ID is the parsed channel name.
func (c *ServerChannel) ID() bayeux.ChannelID { return c.id }

// Name is the channel name.
func (c *ServerChannel) Name() string { return c.id.String() }

// IsMeta reports whether the channel is under /meta/.
func (c *ServerChannel) IsMeta() bool { return c.id.IsMeta() }

// IsService reports whether the channel is under /service/.
func (c *ServerChannel) IsService() bool { return c.id.IsService() }

// IsBroadcast reports whether the channel is neither meta nor service.
func (c *ServerChannel) IsBroadcast() bool { return c.id.IsBroadcast() }

// IsWild reports whether the channel ends with "/*".
func (c *ServerChannel) IsWild() bool { return c.id.IsWild() }

// IsDeepWild reports whether the channel ends with "/**".
func (c *ServerChannel) IsDeepWild() bool { return c.id.IsDeepWild() }

// SetPersistent keeps the channel when it has no subscribers or listeners.
func (c *ServerChannel) SetPersistent(p bool) {
	c.mu.Lock()
	c.persistent = p
	c.mu.Unlock()
	if !p {
		c.srv.hub.maybeRemoveChannel(c)
	}
}

// IsPersistent reports the persistent flag.
func (c *ServerChannel) IsPersistent() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.persistent
}

// SetLazy makes messages published on the channel lazy: they wake no held
// connect and go out with the next flush or after MaxLazyTimeout.
func (c *ServerChannel) SetLazy(l bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lazy = l
}

// IsLazy reports the lazy flag.
func (c *ServerChannel) IsLazy() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.lazy
}

// AddAuthorizer adds an authorizer consulted by DefaultSecurityPolicy for this
// channel and, when it is a wildcard, for every channel it matches.
func (c *ServerChannel) AddAuthorizer(a Authorizer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.authorizers = append(c.authorizers, a)
}

// Authorizers returns the channel's authorizers.
func (c *ServerChannel) Authorizers() []Authorizer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]Authorizer(nil), c.authorizers...)
}

// AddListener adds a message listener and returns a function that removes it.
func (c *ServerChannel) AddListener(l ChannelMessageListener) (remove func()) {
	p := &l
	c.mu.Lock()
	c.listeners = append(c.listeners, p)
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		for i, x := range c.listeners {
			if x == p {
				c.listeners = append(c.listeners[:i:i], c.listeners[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		c.srv.hub.maybeRemoveChannel(c)
	}
}

func (c *ServerChannel) listenerList() []*ChannelMessageListener {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.listeners
}

// Subscribers returns the sessions subscribed to the channel.
func (c *ServerChannel) Subscribers() []*ServerSession {
	return append([]*ServerSession(nil), c.subscribers()...)
}

// SubscriberCount is the number of subscribed sessions.
func (c *ServerChannel) SubscriberCount() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.subs)
}

// subscribers returns the shared, immutable snapshot of subscribers.
func (c *ServerChannel) subscribers() []*ServerSession {
	if p := c.snap.Load(); p != nil {
		return *p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.snap.Load(); p != nil {
		return *p
	}
	s := make([]*ServerSession, 0, len(c.subs))
	for ss := range c.subs {
		s = append(s, ss)
	}
	c.snap.Store(&s)
	return s
}

// Subscribe subscribes session to the channel from the server side (no security
// check). It returns ErrSessionClosed for an ended session.
func (c *ServerChannel) Subscribe(session *ServerSession) error {
	h := c.srv.hub
	if err := h.subscribeTo(session, c, nil); err != errChannelRemoved {
		return err
	}
	return h.subscribe(c.srv, session, c.id, nil) // c was removed: subscribe to its successor
}

// Unsubscribe removes session's subscription.
func (c *ServerChannel) Unsubscribe(session *ServerSession) {
	c.srv.hub.unsubscribe(session, c)
}

// Publish publishes data on this (non-wildcard) channel from the server; from may
// be nil. The message is encoded once for every recipient.
func (c *ServerChannel) Publish(from *ServerSession, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return c.PublishMessage(from, NewServerMessage(&bayeux.Mutable{Channel: c.Name(), Data: raw}))
}

// PublishMessage publishes m on this channel (m's channel is set to it).
func (c *ServerChannel) PublishMessage(from *ServerSession, m *ServerMessage) error {
	if c.id.IsWildcard() {
		return bayeux.ErrChannelNotPlain
	}
	m.m.Channel = c.Name()
	if err := c.srv.publish(from, m, false); err != nil && err != errVetoed {
		return err
	}
	return nil
}
