package server

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

func jsonMarshal(v any) (json.RawMessage, error) { return json.Marshal(v) }

// errMessageDeleted answers a message an extension deleted or a channel
// listener vetoed, with the code the CometD server uses.
const errMessageDeleted = "404::message_deleted"

// drainInterval is the least advice.interval given while draining.
const drainInterval = time.Second

// errTooManySessions refuses a handshake while Config.MaxSessions remote
// sessions are live. The advice tells the client to handshake again after
// fullInterval plus up to fullJitter, so that refused clients do not all come
// back at once (and, behind a Service, may land on another broker).
const (
	errTooManySessions = "503::too_many_sessions"
	fullInterval       = 2 * time.Second
	fullJitter         = 3 * time.Second
)

// reqInfo describes the transport a batch arrived on.
type reqInfo struct {
	transport string // bayeux.TransportLongPolling, bayeux.TransportCallbackPolling or bayeux.TransportWebSocket
	browser   string // BAYEUX_BROWSER cookie, "" when absent
	userAgent string
	conn      sessionBinder // the connection of a transport that keeps one, or nil
}

// sessionBinder is a transport connection that carries a session's messages
// once a handshake or connect of the session arrived on it (a websocket).
type sessionBinder interface {
	bindSession(ss *ServerSession)
}

// pendingConnect is a /meta/connect being answered.
type pendingConnect struct {
	req     *ServerMessage
	session *ServerSession
	hc      *heldConnect
	timeout time.Duration
	browser string // counted in Server.browsers while held
	multi   bool   // another session of the same browser is already polling
	// eventSource: the client's messages arrive on an EventSource stream,
	// so the connect is answered at once, with advice to come back later.
	eventSource bool
	deadline    time.Time
}

// batchResult is what processing a batch produced.
type batchResult struct {
	replies []*ServerMessage
	connect *pendingConnect
}

func newReply(req *ServerMessage) *ServerMessage {
	return &ServerMessage{
		m:          &bayeux.Mutable{Channel: req.m.Channel, ID: req.m.ID, ClientID: req.m.ClientID},
		associated: req,
	}
}

func (s *Server) fail(r *ServerMessage, errStr string) *ServerMessage {
	r.m.Successful = bayeux.False
	r.m.Error = errStr
	return r
}

func (s *Server) advice(reconnect string) *bayeux.Advice {
	return &bayeux.Advice{
		Reconnect:   reconnect,
		Interval:    s.cfg.Interval.Milliseconds(),
		Timeout:     s.cfg.Timeout.Milliseconds(),
		MaxInterval: -1,
	}
}

// reconnectAdvice is advice that says only how to reconnect (and, unless
// interval is -1, when).
func reconnectAdvice(reconnect string, interval int64) *bayeux.Advice {
	return &bayeux.Advice{Reconnect: reconnect, Interval: interval, Timeout: -1, MaxInterval: -1}
}

func unknownSession(r *ServerMessage) *ServerMessage {
	r.m.Successful = bayeux.False
	r.m.Error = bayeux.ErrSessionUnknown
	r.m.Advice = reconnectAdvice(bayeux.ReconnectHandshake, 0)
	return r
}

// process handles one decoded batch. Replies come back in request order; a
// /meta/connect is returned separately so the transport can hold it and put its
// reply last.
func (s *Server) process(msgs []*bayeux.Mutable, ri reqInfo) batchResult {
	var res batchResult
	now := time.Now()
	for _, raw := range msgs {
		s.stats.messagesIn.Add(1)
		m := &ServerMessage{m: raw, receivedAt: now}
		var reply *ServerMessage
		var ss *ServerSession
		switch {
		case raw.Channel == "":
			reply = s.fail(newReply(m), bayeux.ErrChannelMissing)
		case raw.Channel == bayeux.MetaHandshake:
			reply, ss = s.handshake(m, ri)
		default:
			ss = s.Session(raw.ClientID)
			switch {
			case ss == nil:
				reply = unknownSession(newReply(m))
			case !s.incoming(ss, m):
				reply = s.fail(newReply(m), errMessageDeleted)
			case raw.Channel == bayeux.MetaConnect:
				if res.connect != nil {
					reply = s.fail(newReply(m), bayeux.ErrDuplicateConnect)
					break
				}
				res.connect = s.beginConnect(m, ss, ri)
				continue
			case raw.Channel == bayeux.MetaSubscribe:
				reply = s.metaSubscribe(m, ss)
			case raw.Channel == bayeux.MetaUnsubscribe:
				reply = s.metaUnsubscribe(m, ss)
			case raw.Channel == bayeux.MetaDisconnect:
				reply = newReply(m)
				reply.m.Successful = bayeux.True
				s.removeSession(ss, ErrClientDisconnect)
			case bayeux.IsMeta(raw.Channel):
				switch _, err := bayeux.ParseChannel(raw.Channel); {
				case err != nil:
					reply = s.fail(newReply(m), bayeux.ErrChannelInvalid)
				case raw.Data != nil:
					reply = s.fail(newReply(m), bayeux.ErrPublishMeta) // a publish to /meta/*
				default:
					reply = s.fail(newReply(m), bayeux.ErrMessageUnknown)
				}
			default:
				reply = s.clientPublish(m, ss)
			}
		}
		if reply = s.outgoingReply(ss, reply); reply != nil {
			res.replies = append(res.replies, reply)
		}
	}
	return res
}

func (s *Server) outgoingReply(ss *ServerSession, r *ServerMessage) *ServerMessage {
	var exts []SessionExtension
	if ss != nil {
		exts = ss.extensions()
	}
	if len(exts) == 0 && len(s.extensionList()) == 0 {
		return r
	}
	return s.outgoing(nil, ss, r, exts)
}

func (s *Server) handshake(m *ServerMessage, ri reqInfo) (*ServerMessage, *ServerSession) {
	r := newReply(m)
	r.m.ClientID = ""
	if s.draining.Load() {
		r.m.Advice = reconnectAdvice(bayeux.ReconnectHandshake, drainInterval.Milliseconds())
		return s.fail(r, bayeux.ErrServerDraining), nil
	}
	if v := m.m.MinimumVersion; v != "" && !strings.HasPrefix(v, "1.") && v != "1" && v != "0.9" {
		r.m.Advice = reconnectAdvice(bayeux.ReconnectNone, -1)
		return s.fail(r, bayeux.ErrVersionUnsupported), nil
	}
	// The transport the handshake came on, and one the client supports, must be enabled.
	typesOK := ri.transport == "" || s.transports[ri.transport] ||
		ri.transport == bayeux.TransportLongPolling && s.servesPOST()
	if types := m.m.SupportedConnectionTypes; typesOK && types != nil {
		typesOK = slices.ContainsFunc(types, func(t string) bool { return s.transports[t] })
	}
	if !typesOK {
		r.m.Advice = reconnectAdvice(bayeux.ReconnectNone, -1)
		r.m.SupportedConnectionTypes = s.cfg.Transports
		return s.fail(r, bayeux.ErrConnTypeMismatch), nil
	}
	if !s.takeSlot() {
		s.stats.refused.Add(1)
		wait := fullInterval + rand.N(fullJitter)
		r.m.Advice = reconnectAdvice(bayeux.ReconnectHandshake, wait.Milliseconds())
		return s.fail(r, errTooManySessions), nil
	}
	ss := newSession(s, newClientID(s.nodeID))
	ss.slot = s.cfg.MaxSessions > 0
	ss.client.browser = ri.browser
	ss.client.userAgent = clientString(ri.userAgent)
	if !s.incoming(ss, m) {
		s.giveBackSlot(ss)
		return s.fail(r, errMessageDeleted), ss
	}
	if !s.cfg.Security.CanHandshake(s, ss, m) {
		s.giveBackSlot(ss)
		r.m.Advice = reconnectAdvice(bayeux.ReconnectNone, -1)
		return s.fail(r, bayeux.ErrHandshakeDenied), ss
	}
	if err := s.addSession(ss, m); err != nil { // a clientId collision: 128 random bits make it never happen
		s.giveBackSlot(ss)
		return s.fail(r, bayeux.ErrHandshakeDenied), nil
	}
	if s.draining.Load() {
		// Drain began after the check above: the pacer may have taken its
		// last look at the sessions already.
		ss.releaseForDrain()
	}
	if ri.conn != nil {
		ri.conn.bindSession(ss)
	}
	r.m.ClientID = ss.id
	r.m.Successful = bayeux.True
	r.m.AuthSuccessful = bayeux.True
	r.m.Version = bayeux.Version
	r.m.MinimumVersion = bayeux.MinimumVersion
	r.m.SupportedConnectionTypes = s.advertised(m.m.SupportedConnectionTypes)
	a := s.advice(bayeux.ReconnectRetry)
	a.MaxInterval = s.cfg.MaxInterval.Milliseconds()
	r.m.Advice = a
	return r, ss
}

// advertised is the supportedConnectionTypes of a successful handshake
// reply: the enabled transports the client listed, in the configured order,
// so that a client hears only of names it knows; all enabled ones when the
// client listed none.
func (s *Server) advertised(client []string) []string {
	if len(client) == 0 {
		return s.cfg.Transports
	}
	out := make([]string, 0, len(s.cfg.Transports))
	for _, t := range s.cfg.Transports {
		if slices.Contains(client, t) {
			out = append(out, t)
		}
	}
	return out
}

// subscriptionReply starts the reply to a /meta/subscribe or
// /meta/unsubscribe and parses its channels; when they are missing or invalid,
// it returns the failed reply and ok false.
func (s *Server) subscriptionReply(m *ServerMessage) (r *ServerMessage, ids []bayeux.ChannelID, ok bool) {
	r = newReply(m)
	r.m.Subscription = m.m.Subscription
	r.m.SubscriptionList = m.m.SubscriptionList
	if len(m.m.Subscription) == 0 {
		return s.fail(r, bayeux.ErrSubscriptionMiss), nil, false
	}
	ids = make([]bayeux.ChannelID, 0, len(m.m.Subscription))
	for _, name := range m.m.Subscription {
		id, err := bayeux.ParseChannel(name)
		if err != nil {
			return s.fail(r, bayeux.ErrChannelInvalid), nil, false
		}
		ids = append(ids, id)
	}
	return r, ids, true
}

func (s *Server) metaSubscribe(m *ServerMessage, ss *ServerSession) *ServerMessage {
	r, ids, ok := s.subscriptionReply(m)
	if !ok {
		return r
	}
	for _, id := range ids {
		if id.IsMeta() {
			return s.fail(r, bayeux.ErrSubscribeDenied)
		}
		if s.Channel(id.String()) == nil && !s.cfg.Security.CanCreate(s, ss, id, m) {
			return s.fail(r, bayeux.ErrCreateDenied)
		}
		if !s.cfg.Security.CanSubscribe(s, ss, id, m) {
			return s.fail(r, bayeux.ErrSubscribeDenied)
		}
	}
	if max := s.cfg.MaxSubscriptionsPerSession; max > 0 && ss.wouldSubscribe(ids) > max {
		return s.fail(r, bayeux.ErrSubscriptionLimit)
	}
	for _, id := range ids {
		if err := s.hub.subscribe(s, ss, id, m); err != nil {
			return unknownSession(r)
		}
	}
	r.m.Successful = bayeux.True
	return r
}

func (s *Server) metaUnsubscribe(m *ServerMessage, ss *ServerSession) *ServerMessage {
	r, ids, ok := s.subscriptionReply(m)
	if !ok {
		return r
	}
	for _, id := range ids {
		if c := s.Channel(id.String()); c != nil {
			s.hub.unsubscribe(ss, c)
		}
	}
	r.m.Successful = bayeux.True
	return r
}

func (s *Server) clientPublish(m *ServerMessage, ss *ServerSession) *ServerMessage {
	r := newReply(m)
	id, err := bayeux.ParsePlainChannel(m.m.Channel)
	if err != nil {
		return s.fail(r, bayeux.ErrChannelInvalid)
	}
	if m.m.Data == nil {
		return s.fail(r, "400::data_missing")
	}
	if s.Channel(id.String()) == nil && !s.cfg.Security.CanCreate(s, ss, id, m) {
		return s.fail(r, bayeux.ErrCreateDenied)
	}
	if !s.cfg.Security.CanPublish(s, ss, id, m) {
		return s.fail(r, bayeux.ErrPublishDenied)
	}
	switch err := s.publish(ss, m, false); {
	case err == errVetoed:
		return s.fail(r, errMessageDeleted) // a channel listener vetoed it
	case err != nil:
		return s.fail(r, errNotStored) // durable.go
	}
	r.m.Successful = bayeux.True
	return r
}

// beginConnect registers a connect as the session's held connect (answering any
// older one at once).
func (s *Server) beginConnect(m *ServerMessage, ss *ServerSession, ri reqInfo) *pendingConnect {
	pc := &pendingConnect{req: m, session: ss, hc: &heldConnect{}, timeout: s.cfg.Timeout}
	// The request lives as long as the connect is held: let it share the
	// session's copy of the clientId rather than keep its own.
	m.m.ClientID = ss.id
	if a := m.m.Advice; a != nil && a.Timeout >= 0 && time.Duration(a.Timeout)*time.Millisecond < pc.timeout {
		pc.timeout = time.Duration(a.Timeout) * time.Millisecond
	}
	ss.mu.Lock()
	if ss.drained {
		pc.timeout = 0
	}
	first := !ss.connected
	if ss.held != nil && ss.held.release != nil {
		close(ss.held.release)
	}
	ss.held = pc.hc
	ss.connected = true
	ss.client.connType = m.m.ConnectionType
	if ss.client.connType == "" {
		ss.client.connType = ri.transport
	}
	ss.mu.Unlock()
	if first {
		// The first connect is answered at once, so the client learns the advice.
		pc.timeout = 0
	}
	if m.m.ConnectionType == bayeux.TransportEventSource && s.transports[bayeux.TransportEventSource] &&
		ri.transport == bayeux.TransportLongPolling {
		pc.timeout = 0
		pc.eventSource = true
	}
	if ri.conn != nil {
		ri.conn.bindSession(ss)
	}
	if pc.timeout > 0 && ri.browser != "" && s.cfg.MaxSessionsPerBrowser > 0 {
		s.browserMu.Lock()
		if s.browsers[ri.browser] >= s.cfg.MaxSessionsPerBrowser {
			s.browserMu.Unlock()
			pc.timeout = 0
			pc.deadline = time.Time{}
			pc.browser = "" // not counted
			pc.multi = true
		} else {
			s.browsers[ri.browser]++
			s.browserMu.Unlock()
			pc.browser = ri.browser
		}
	}
	pc.deadline = time.Now().Add(pc.timeout)
	return pc
}

// ready reports whether a held connect should be answered now.
func (pc *pendingConnect) ready() bool {
	return pc.ended() || pc.session.queue.ready()
}

// ended reports whether the connect must be answered whatever the queue holds:
// its session ended, a newer connect replaced it, or a drain released it.
func (pc *pendingConnect) ended() bool {
	return pc.session.heldEnded(pc.hc)
}

// wait blocks until the connect should be answered: messages arrived, its
// timeout passed, the session ended, a newer connect replaced it, the drain
// released it, or ctx ended. It reports whether the client is still there.
func (s *Server) wait(ctx context.Context, pc *pendingConnect) bool {
	if pc.timeout <= 0 {
		return ctx.Err() == nil
	}
	wake, release := pc.session.wakeChan(), pc.session.releaseCh(pc.hc)
	t := time.NewTimer(time.Until(pc.deadline))
	defer t.Stop()
	for !pc.ready() {
		select {
		case <-wake:
		case <-release:
			return ctx.Err() == nil
		case <-pc.session.done:
			return ctx.Err() == nil
		case <-t.C:
			return ctx.Err() == nil
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

// finish builds the connect reply and takes the messages that go with it. When
// deliver is false (the client went away) messages stay queued.
func (s *Server) finish(pc *pendingConnect, deliver bool) ([]*ServerMessage, *ServerMessage) {
	if pc.browser != "" {
		s.browserMu.Lock()
		if s.browsers[pc.browser]--; s.browsers[pc.browser] <= 0 {
			delete(s.browsers, pc.browser)
		}
		s.browserMu.Unlock()
		pc.browser = ""
	}
	ss := pc.session
	r := newReply(pc.req)
	ss.mu.Lock()
	// A client sends a new connect only when it gave up on the previous one:
	// a replaced connect is answered empty and its messages wait for the new one.
	replaced := ss.held != pc.hc
	if !replaced {
		ss.held = nil
	}
	ss.lastActive = time.Now()
	reason := ss.reason
	ss.mu.Unlock()
	if reason != nil {
		switch reason {
		case ErrClientDisconnect:
			r.m.Successful = bayeux.True
			r.m.Advice = reconnectAdvice(bayeux.ReconnectNone, -1)
		case ErrMoved:
			// The session lives on another node, its messages with it: the
			// client connects again at once and is routed there.
			r.m.Successful = bayeux.True
			r.m.Advice = reconnectAdvice(bayeux.ReconnectRetry, 0)
		default:
			unknownSession(r)
		}
		return nil, s.outgoingReply(ss, r)
	}
	var msgs []*ServerMessage
	batch := int64(-1)
	if deliver && !replaced {
		msgs, batch = ss.queue.takeForConnect()
	}
	r.m.Successful = bayeux.True
	r.m.Advice = s.advice(bayeux.ReconnectRetry)
	if s.draining.Load() {
		// Connects are answered at once while draining: pace the clients that
		// come back here instead of letting them spin.
		r.m.Advice.Interval = max(r.m.Advice.Interval, drainInterval.Milliseconds())
	}
	if pc.eventSource {
		r.m.Advice.Timeout = 0
		r.m.Advice.Interval = max(r.m.Advice.Interval, s.eventSourceInterval().Milliseconds())
	}
	if pc.multi {
		r.m.Advice.MultipleClients = true
		r.m.Advice.Interval = s.cfg.MultiSessionInterval.Milliseconds()
	}
	if batch >= 0 {
		_ = r.m.SetExtField("ack", batch)
	}
	return msgs, s.outgoingReply(ss, r)
}
