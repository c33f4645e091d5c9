package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Websocket deadlines.
const (
	// writeWait bounds the write of one frame.
	writeWait = 10 * time.Second
	// pongWait bounds the silence allowed from a peer (a pong or any message).
	pongWait = 60 * time.Second
	// pingPeriod is how often the writer pings; shorter than pongWait.
	pingPeriod = pongWait * 9 / 10
	// wsInQueue is how many processed batches the reader may get ahead of the writer.
	wsInQueue = 4
)

// wsItem is what the reader hands the writer after processing one frame.
type wsItem struct {
	replies []*ServerMessage
	connect *pendingConnect
	session *ServerSession
}

// wsConn is one websocket connection: the handler goroutine reads, one writer
// goroutine sends every frame (pings included).
type wsConn struct {
	s          *Server
	c          *websocket.Conn
	in         chan wsItem
	writerDone chan struct{}
	closeOnce  sync.Once

	mu      sync.Mutex
	session *ServerSession
}

var wsWriteBufferPool sync.Pool

func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || s.originAllowed(origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (s *Server) serveWebsocket(w http.ResponseWriter, r *http.Request) {
	if !s.transports["websocket"] {
		http.Error(w, "websocket transport disabled", http.StatusBadRequest)
		return
	}
	up := websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		WriteBufferPool: &wsWriteBufferPool,
		CheckOrigin:     s.checkOrigin,
	}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the request
	}
	wc := &wsConn{s: s, c: c, in: make(chan wsItem, wsInQueue), writerDone: make(chan struct{})}
	s.wsMu.Lock()
	s.wsConns[wc] = struct{}{}
	s.wsMu.Unlock()
	// Both loops run on their own goroutines so the handler returns at once:
	// net/http then releases the request and its buffers, which an idle
	// connection would otherwise keep for its lifetime.
	go wc.writeLoop()
	go wc.readLoop(r.UserAgent())
}

func (wc *wsConn) close() {
	wc.closeOnce.Do(func() { _ = wc.c.Close() })
}

// attach binds ss to this connection (a handshake or connect arrived on it).
func (wc *wsConn) attach(ss *ServerSession) {
	wc.mu.Lock()
	old := wc.session
	wc.session = ss
	wc.mu.Unlock()
	if old != nil && old != ss {
		old.detach(wc)
	}
	ss.mu.Lock()
	ss.ws = wc
	ss.mu.Unlock()
}

func (ss *ServerSession) detach(wc *wsConn) {
	ss.mu.Lock()
	if ss.ws == wc {
		ss.ws = nil
		ss.lastActive = time.Now()
	}
	ss.mu.Unlock()
}

func (wc *wsConn) current() *ServerSession {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.session
}

func (wc *wsConn) readLoop(userAgent string) {
	s := wc.s
	defer func() {
		close(wc.in)
		<-wc.writerDone
		if ss := wc.current(); ss != nil {
			ss.detach(wc)
		}
		s.wsMu.Lock()
		delete(s.wsConns, wc)
		s.wsMu.Unlock()
		wc.close()
	}()
	wc.c.SetReadLimit(s.cfg.MaxMessageSize)
	_ = wc.c.SetReadDeadline(time.Now().Add(pongWait))
	wc.c.SetPongHandler(func(string) error { return wc.c.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, data, err := wc.c.ReadMessage()
		if err != nil {
			// An oversized frame has already been answered with close 1009 by
			// the websocket library; anything else is the peer leaving.
			return
		}
		_ = wc.c.SetReadDeadline(time.Now().Add(pongWait))
		msgs, err := bayeux.DecodeBatch(data)
		if errors.Is(err, bayeux.ErrEmptyBatch) {
			continue // an empty batch is a keep-alive
		}
		if err != nil {
			reason := err.Error()
			if len(reason) > 120 {
				reason = reason[:120]
			}
			_ = wc.c.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseInvalidFramePayloadData, reason), time.Now().Add(writeWait))
			return
		}
		res := s.process(msgs, reqInfo{transport: "websocket", userAgent: userAgent, ws: wc})
		item := wsItem{replies: res.replies, connect: res.connect, session: wc.current()}
		select {
		case wc.in <- item:
		case <-wc.writerDone:
			if res.connect != nil {
				s.finish(res.connect, false)
			}
			return
		}
	}
}

func (wc *wsConn) writeLoop() {
	s := wc.s
	ping := time.NewTicker(pingPeriod)
	var (
		sess   *ServerSession
		wake   <-chan struct{}
		done   <-chan struct{}
		held   *pendingConnect
		timer  *time.Timer
		timerC <-chan time.Time
		drain  = s.drainCh
		broken bool
	)
	defer func() {
		ping.Stop()
		if timer != nil {
			timer.Stop()
		}
		if held != nil {
			s.finish(held, false)
		}
		close(wc.writerDone)
		wc.close()
		// Drain what the reader may still hand over, so it never blocks.
		for it := range wc.in {
			if it.connect != nil {
				s.finish(it.connect, false)
			}
		}
	}()
	answer := func() {
		if held == nil {
			return
		}
		if timer != nil {
			timer.Stop()
			timerC = nil
		}
		msgs, reply := s.finish(held, true)
		held = nil
		if reply != nil {
			msgs = append(msgs, reply)
		}
		if !wc.writeBatches(msgs) {
			broken = true
		}
	}
	flush := func() {
		if sess == nil {
			return
		}
		sess.mu.Lock()
		only := sess.deliverOnly
		sess.mu.Unlock()
		if !only {
			if q := sess.takeQueue(); len(q) > 0 && !wc.writeBatches(q) {
				broken = true
				return
			}
		}
		if held != nil && held.ready() {
			answer()
		}
	}
	for !broken {
		select {
		case it, ok := <-wc.in:
			if !ok {
				return
			}
			if it.session != sess && it.session != nil {
				sess, wake, done = it.session, it.session.wake, it.session.done
			}
			if len(it.replies) > 0 && !wc.writeFrame(it.replies) {
				return
			}
			if it.connect != nil {
				if held != nil {
					answer() // released by the newer connect
				}
				held = it.connect
				if held.timeout <= 0 {
					answer()
				} else {
					if timer == nil {
						timer = time.NewTimer(held.timeout)
					} else {
						timer.Reset(held.timeout)
					}
					timerC = timer.C
				}
			}
			flush()
		case <-wake:
			flush()
		case <-timerC:
			timerC = nil
			answer()
		case <-done:
			answer()
			sess, wake, done = nil, nil, nil
		case <-drain:
			drain = nil
			answer()
		case <-ping.C:
			_ = wc.c.SetWriteDeadline(time.Now().Add(writeWait))
			if err := wc.c.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// writeBatches writes msgs in frames of at most WSMessagesPerFrame messages.
func (wc *wsConn) writeBatches(msgs []*ServerMessage) bool {
	n := wc.s.cfg.WSMessagesPerFrame
	for len(msgs) > 0 {
		k := min(n, len(msgs))
		if len(msgs) == k+1 && msgs[k].IsMeta() {
			k++ // keep the connect reply in the frame of the last messages
		}
		if !wc.writeFrame(msgs[:k]) {
			return false
		}
		msgs = msgs[k:]
	}
	return true
}

func (wc *wsConn) writeFrame(msgs []*ServerMessage) bool {
	_ = wc.c.SetWriteDeadline(time.Now().Add(writeWait))
	w, err := wc.c.NextWriter(websocket.TextMessage)
	if err != nil {
		return false
	}
	_, _ = w.Write([]byte{'['})
	for i, m := range msgs {
		if i > 0 {
			_, _ = w.Write([]byte{','})
		}
		_, _ = w.Write(m.Encoded())
	}
	_, _ = w.Write([]byte{']'})
	if err := w.Close(); err != nil {
		return false
	}
	wc.s.stats.messagesOut.Add(uint64(len(msgs)))
	return true
}
