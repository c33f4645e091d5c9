package server

import (
	"errors"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// The eventsource transport, as Faye's server has it: once handshaken, the
// client opens an EventSource (Server-Sent Events) at <mount>/<clientId> and
// the server writes every message delivered to the session there, each event's
// data a JSON array of messages. The client sends its messages, connects
// included, by POST as with long-polling; a connect that names the
// eventsource connection type is answered at once with advice to come back
// after eventSourceInterval, since nothing waits on it. A stream that reaches
// a node that does not hold the session is relayed from the owner
// (eventsource_relay.go).
const (
	// sseKeepAlive is how often an idle stream gets a comment line, so that
	// proxies and the browser see it alive (Faye's server pings every 10s).
	sseKeepAlive = 10 * time.Second
	// sseRetry is the reconnection delay the stream tells the browser, in
	// milliseconds (Faye's server says 5s).
	sseRetry = 5000
)

// EventSourceHandler serves only the eventsource transport's streams (its
// POSTs are served by the long-polling handler).
func (s *Server) EventSourceHandler() http.Handler {
	return s.pollingHandler(s.serveEventSource)
}

// isEventSource reports whether r opens an EventSource stream: a GET that
// accepts text/event-stream (as faye-websocket tells them).
func isEventSource(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		for _, t := range strings.Split(v, ",") {
			if t, _, _ = strings.Cut(t, ";"); strings.TrimSpace(t) == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// eventSourceInterval is advice.interval for a connect of an eventsource
// client: Faye's server says its timeout, but a session must see a connect
// within MaxInterval to live, so it is at most half of that.
func (s *Server) eventSourceInterval() time.Duration {
	return max(min(s.cfg.Timeout, s.cfg.MaxInterval/2), time.Millisecond)
}

// sseConn is one open EventSource stream. Its handler's goroutine is its
// only writer; wake and close only signal it.
type sseConn struct {
	relay     bool // a relay's pull (eventsource_relay.go), not a stream of this node
	wakeCh    chan struct{}
	closeCh   chan struct{}
	closeOnce sync.Once
}

func (sc *sseConn) wake() {
	select {
	case sc.wakeCh <- struct{}{}:
	default:
	}
}

func (sc *sseConn) close() { sc.closeOnce.Do(func() { close(sc.closeCh) }) }

// serveEventSource streams a session's messages until the session ends,
// another connection takes the session over, the client goes away, a write
// does not finish within WriteTimeout, or the server closes. Messages whose
// event was not written go back to the head of the session's queue.
func (s *Server) serveEventSource(w http.ResponseWriter, r *http.Request) {
	if !s.transports[bayeux.TransportEventSource] {
		http.Error(w, "eventsource transport disabled", http.StatusBadRequest)
		return
	}
	if !s.checkOrigin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	id := path.Base(r.URL.Path)
	ss := s.Session(id)
	if ss == nil {
		if node, req := s.eventSourceOwner(r.Context(), id); node != "" {
			s.relayEventSource(w, r, req, node, id) // eventsource_relay.go
			return
		}
	}
	if ss == nil || ss.IsLocal() || ss.isArriving() {
		// No node holds the session: the Faye client then uses another
		// transport (or handshakes again on its next connect).
		http.Error(w, "unknown session", http.StatusNotFound)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("X-Accel-Buffering", "no") // tell a proxy (nginx) not to buffer the stream
	sc := &sseConn{wakeCh: make(chan struct{}, 1), closeCh: make(chan struct{})}
	s.conns.add(sc)
	defer s.conns.remove(sc)
	// The session's older stream, if any, ends: a browser opens one at a
	// time, and this one carries the session from now on.
	replaceStream(ss, sc)
	defer ss.unbind(sc)
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 0, 512)
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, sseRetry, 10)
	buf = append(buf, "\r\n\r\n"...)
	if s.sseWrite(w, rc, buf) != nil {
		return
	}
	ss.signal() // messages queued before the stream opened go now
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-sc.wakeCh:
		case <-keepAlive.C:
			if !ss.boundTo(sc) || s.sseWrite(w, rc, []byte(":\r\n\r\n")) != nil {
				return
			}
			continue
		case <-ss.done:
			return // the client hears of it on its next connect
		case <-sc.closeCh:
			return
		case <-s.closeCh:
			return
		case <-r.Context().Done():
			return
		}
		if !ss.boundTo(sc) {
			return // a newer connection carries the session
		}
		if ss.queue.isDeliverOnly() {
			continue // messages go with connect replies (ack extension)
		}
		q := ss.queue.take()
		if len(q) == 0 {
			continue
		}
		var err error
		if buf, err = s.sseSend(w, rc, ss, q, buf); err != nil {
			return
		}
		ss.queue.recycle(q)
		if cap(buf) > 64<<10 {
			buf = make([]byte, 0, 512) // an idle stream does not keep a burst's buffer
		}
	}
}

// sseSend writes msgs as events of, but for a single message, at most
// MaxPendingBytes bytes (eventSize). The messages of the event that failed
// and of those after it go back to the head of ss's queue.
func (s *Server) sseSend(w http.ResponseWriter, rc *http.ResponseController, ss *ServerSession, msgs []*ServerMessage, buf []byte) ([]byte, error) {
	for len(msgs) > 0 {
		k := s.eventSize(msgs)
		buf = append(buf[:0], "data: ["...)
		for i, m := range msgs[:k] {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, m.Encoded()...) // JSON has no raw line breaks
		}
		buf = append(buf, "]\r\n\r\n"...)
		if err := s.sseWrite(w, rc, buf); err != nil {
			ss.queue.requeue(msgs)
			return buf, err
		}
		s.stats.messagesOut.Add(uint64(k))
		msgs = msgs[k:]
	}
	return buf, nil
}

// sseWrite writes and flushes b within WriteTimeout; a stream that cannot
// take it is counted as a slow connection.
func (s *Server) sseWrite(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	_, err := w.Write(b)
	if err == nil {
		err = rc.Flush()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.stats.slowConns.Add(1)
		s.log.Debug("eventsource stream closed", "reason", ErrSlowConnection.Code)
	}
	return err
}
