package server

import (
	"errors"
	"sync"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// LocalSession is an in-process client of the server: it subscribes and
// publishes like a remote client, without a network, and its messages are
// dispatched synchronously on the publishing goroutine (callbacks must not block).
type LocalSession struct {
	srv  *Server
	name string

	mu        sync.Mutex
	ss        *ServerSession
	subs      map[string][]*func(bayeux.Message)
	listeners map[string][]*func(bayeux.Message)
}

// NewLocalSession returns a LocalSession; call Handshake before using it. name
// is for logs only.
func (s *Server) NewLocalSession(name string) *LocalSession {
	return &LocalSession{srv: s, name: name, subs: map[string][]*func(bayeux.Message){}, listeners: map[string][]*func(bayeux.Message){}}
}

// ErrNotHandshaken is returned by LocalSession operations before Handshake.
var ErrNotHandshaken = errors.New("server: local session has not handshaken")

// Handshake creates the session's ServerSession. Local sessions bypass the
// security policy and never expire.
func (l *LocalSession) Handshake() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ss != nil && l.ss.Err() == nil {
		return nil
	}
	ss := newSession(l.srv, newClientID(l.srv.nodeID))
	ss.local = l
	ss.connected = true
	if err := l.srv.addSession(ss, nil); err != nil {
		return err
	}
	l.ss = ss
	return nil
}

// ServerSession returns the server side of the session (nil before Handshake).
func (l *LocalSession) ServerSession() *ServerSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ss
}

// ID returns the clientId ("" before Handshake).
func (l *LocalSession) ID() string {
	if ss := l.ServerSession(); ss != nil {
		return ss.id
	}
	return ""
}

// Disconnect ends the session.
func (l *LocalSession) Disconnect() {
	if ss := l.ServerSession(); ss != nil {
		l.srv.removeSession(ss, ErrClientDisconnect)
	}
}

// Channel returns the session-scoped view of a channel.
func (l *LocalSession) Channel(name string) *SessionChannel {
	return &SessionChannel{l: l, name: name}
}

func (l *LocalSession) dispatch(m *ServerMessage) {
	ch := m.m.Channel
	var cbs []*func(bayeux.Message)
	l.mu.Lock()
	for pattern, fs := range l.subs {
		if bayeux.Match(pattern, ch) {
			cbs = append(cbs, fs...)
		}
	}
	for pattern, fs := range l.listeners {
		if bayeux.Match(pattern, ch) {
			cbs = append(cbs, fs...)
		}
	}
	l.mu.Unlock()
	v := m.Message()
	for _, f := range cbs {
		(*f)(v)
	}
}

func (l *LocalSession) ended(error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.subs)
}

// SessionChannel is a channel seen from one LocalSession.
type SessionChannel struct {
	l    *LocalSession
	name string
}

// Name is the channel name.
func (c *SessionChannel) Name() string { return c.name }

// Subscribe subscribes the session to the channel and calls cb for each message
// received on it (cb runs on the publisher's goroutine and must not block).
func (c *SessionChannel) Subscribe(cb func(bayeux.Message)) error {
	ss := c.l.ServerSession()
	if ss == nil {
		return ErrNotHandshaken
	}
	id, err := bayeux.ParseChannel(c.name)
	if err != nil {
		return err
	}
	if err := c.l.srv.hub.subscribe(c.l.srv, ss, id, nil); err != nil {
		return err
	}
	c.l.mu.Lock()
	c.l.subs[c.name] = append(c.l.subs[c.name], &cb)
	c.l.mu.Unlock()
	return nil
}

// Unsubscribe drops the session's subscription and its callbacks.
func (c *SessionChannel) Unsubscribe() {
	ss := c.l.ServerSession()
	if ss == nil {
		return
	}
	c.l.mu.Lock()
	delete(c.l.subs, c.name)
	c.l.mu.Unlock()
	if ch := c.l.srv.Channel(c.name); ch != nil {
		c.l.srv.hub.unsubscribe(ss, ch)
	}
}

// AddListener calls cb for messages on the channel that reach the session
// (through a subscription or ServerSession.Deliver) without subscribing.
func (c *SessionChannel) AddListener(cb func(bayeux.Message)) (remove func()) {
	p := &cb
	c.l.mu.Lock()
	c.l.listeners[c.name] = append(c.l.listeners[c.name], p)
	c.l.mu.Unlock()
	return func() {
		c.l.mu.Lock()
		defer c.l.mu.Unlock()
		fs := c.l.listeners[c.name]
		for i, f := range fs {
			if f == p {
				c.l.listeners[c.name] = append(fs[:i:i], fs[i+1:]...)
				break
			}
		}
	}
}

// Publish publishes data on the channel as this session, through extensions and
// channel listeners like a remote client's publish.
func (c *SessionChannel) Publish(data any) error {
	ss := c.l.ServerSession()
	if ss == nil {
		return ErrNotHandshaken
	}
	raw, err := jsonMarshal(data)
	if err != nil {
		return err
	}
	m := &ServerMessage{m: &bayeux.Mutable{Channel: c.name, ClientID: ss.id, Data: raw}}
	if !c.l.srv.incoming(ss, m) {
		return errors.New("server: publish dropped by an extension")
	}
	r := c.l.srv.clientPublish(m, ss)
	if r.m.Successful != bayeux.True {
		return errors.New("server: publish failed: " + r.m.Error)
	}
	return nil
}
