package server

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// batchConn wraps a websocket's network connection so that the frames the
// writer produces in one round go out in one write system call instead of one
// each. Outside a round, writes (the upgrade response, control frames from the
// reader) go straight through. The round's buffer is pooled, so an idle
// connection holds none.
type batchConn struct {
	net.Conn
	writeTimeout time.Duration
	mu           sync.Mutex
	batching     bool
	buf          *[]byte
}

var batchBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Write buffers p during a round, else writes it.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching {
		if c.buf == nil {
			c.buf = batchBufPool.Get().(*[]byte)
		}
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// begin starts a round.
func (c *batchConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// buffered is how many bytes the round has buffered so far.
func (c *batchConn) buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return 0
	}
	return len(*c.buf)
}

// end writes what the round buffered, within writeTimeout. It returns how many of
// the round's bytes were written.
func (c *batchConn) end() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	if c.buf == nil {
		return 0, nil
	}
	b := c.buf
	c.buf = nil
	var n int
	var err error
	if len(*b) > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		n, err = c.Conn.Write(*b)
	}
	if cap(*b) <= 1<<20 {
		*b = (*b)[:0]
		batchBufPool.Put(b)
	}
	return n, err
}

// hijackCapture hands the websocket upgrader a batchConn in place of the raw
// connection.
type hijackCapture struct {
	http.ResponseWriter
	writeTimeout time.Duration
	conn         *batchConn
}

// Hijack hijacks the underlying connection and wraps it.
func (h *hijackCapture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &batchConn{Conn: c, writeTimeout: h.writeTimeout}
	return h.conn, rw, nil
}

// Unwrap exposes the wrapped ResponseWriter to http.ResponseController.
func (h *hijackCapture) Unwrap() http.ResponseWriter { return h.ResponseWriter }
