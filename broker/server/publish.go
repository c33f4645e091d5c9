package server

import (
	"fmt"
	"sync"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

var seenPool = sync.Pool{New: func() any { return map[*ServerSession]struct{}{} }}

// publish runs channel listeners (for local publishes), delivers to every
// matching subscriber once, and forwards broadcast messages to the backbone.
// It reports false when a channel listener vetoed the message.
func (s *Server) publish(from *ServerSession, m *ServerMessage, remote bool) bool {
	name := m.m.Channel
	chans := s.hub.match(name)
	if !remote {
		for _, c := range chans {
			for _, l := range c.listenerList() {
				if !(*l)(from, c, m) {
					return false
				}
			}
		}
		if c := s.Channel(name); c != nil && c.IsLazy() {
			m.lazy = true
		}
	}
	out := m
	if m.m.ClientID != "" {
		// Subscribers never see the publisher's clientId.
		out = &ServerMessage{m: &bayeux.Mutable{Channel: name, ID: m.m.ID, Data: m.m.Data, Ext: m.m.Ext}, lazy: m.lazy, uid: m.uid}
	}
	if !remote {
		out.uid = s.nextMessageID()
	}
	s.stats.published.Add(1)
	service := bayeux.IsService(name)
	var only *ServerChannel
	nonEmpty := 0
	for _, c := range chans {
		if len(c.subscribers()) > 0 {
			nonEmpty++
			only = c
		}
	}
	switch {
	case nonEmpty == 1:
		for _, ss := range only.subscribers() {
			if service && ss.local == nil {
				continue
			}
			ss.deliver(from, out)
		}
	case nonEmpty > 1:
		seen := seenPool.Get().(map[*ServerSession]struct{})
		for _, c := range chans {
			for _, ss := range c.subscribers() {
				if _, dup := seen[ss]; dup || (service && ss.local == nil) {
					continue
				}
				seen[ss] = struct{}{}
				ss.deliver(from, out)
			}
		}
		clear(seen)
		seenPool.Put(seen)
	}
	if !remote && !service && s.cfg.Backbone != nil {
		if err := s.cfg.Backbone.Publish(name, out.Encoded(), out.uid.String()); err != nil {
			s.log.Warn("backbone publish failed", "channel", name, "err", err)
		}
	}
	return true
}

// onRemote delivers a message another node published.
func (s *Server) onRemote(msg backbone.Message) {
	m, err := bayeux.Decode(msg.Data)
	if err != nil {
		s.log.Warn("undecodable message from backbone", "origin", msg.Origin, "err", err)
		return
	}
	if _, err := bayeux.ParsePlainChannel(m.Channel); err != nil || bayeux.IsMeta(m.Channel) || bayeux.IsService(m.Channel) {
		s.log.Warn("invalid channel from backbone", "origin", msg.Origin, "channel", m.Channel)
		return
	}
	sm := newEncodedMessage(m, msg.Data)
	sm.uid = parseMsgID(msg.ID)
	s.publish(nil, sm, true)
}

// Publish publishes data on channel from the server (creating no channel object).
func (s *Server) Publish(channel string, data any) error {
	id, err := bayeux.ParsePlainChannel(channel)
	if err != nil {
		return err
	}
	if id.IsMeta() {
		return fmt.Errorf("server: cannot publish to %q", channel)
	}
	raw, err := jsonMarshal(data)
	if err != nil {
		return err
	}
	s.publish(nil, NewServerMessage(&bayeux.Mutable{Channel: channel, Data: raw}), false)
	return nil
}
