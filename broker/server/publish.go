package server

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

var seenPool = sync.Pool{New: func() any { return map[*ServerSession]struct{}{} }}

// errVetoed: a channel listener vetoed a publish.
var errVetoed = errors.New("server: a channel listener vetoed the message")

// publish runs channel listeners (for local publishes), delivers to every
// matching subscriber once, and forwards broadcast messages to the backbone
// (with durability, through the durable stream first: durable.go). It fails
// with errVetoed when a channel listener vetoed the message, and with the
// stream's error when the stream did not store it (nobody received it).
func (s *Server) publish(from *ServerSession, m *ServerMessage, remote bool) error {
	name := m.m.Channel
	chans := s.hub.match(name)
	if !remote {
		for _, c := range chans {
			for _, l := range c.listenerList() {
				if !(*l)(from, c, m) {
					return errVetoed
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
	service := bayeux.IsService(name)
	durable := !remote && !service && s.cfg.Durable != nil
	if durable {
		switch err := s.durablePublish(name, m, out); {
		case err == errAlreadyPublished:
			return nil // delivered the first time
		case err != nil:
			return err
		}
	}
	s.stats.published.Add(1)
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
	if !remote && !service && !durable && s.cfg.Backbone != nil {
		if err := s.cfg.Backbone.Publish(name, out.Encoded(), out.uid.String()); err != nil {
			s.log.Warn("backbone publish failed", "channel", name, "err", err)
		}
	}
	return nil
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
	sm.seq = msg.Seq
	_ = s.publish(nil, sm, true) // remote: no listener runs, nothing is stored
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
	if err := s.publish(nil, NewServerMessage(&bayeux.Mutable{Channel: channel, Data: raw}), false); err != nil && err != errVetoed {
		return err
	}
	return nil
}
