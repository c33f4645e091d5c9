package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// batchConn wraps a websocket's network connection so that the frames the
// writer produces in one round go out in one write system call instead of one
// each. Outside a round, writes (the upgrade response, control frames from the
// reader) go straight through. The round's buffer is pooled, so an idle
// connection holds none.
type batchConn struct {
	net.Conn
	// raw reaches the connection's file descriptor for a write that does
	// not wait (see tryWrite); nil when the connection has none.
	raw          syscall.RawConn
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

// appendFrame adds one unmasked, unfragmented websocket text frame holding
// the JSON array of msgs' encoded forms to the round, built in place: no
// writer, no copy and no deadline per frame (end sets one per round). The
// round's writes and the control frames the reader sends go through Write
// whole, so frames never interleave. It reports false outside a round.
func (c *batchConn) appendFrame(msgs []*ServerMessage) bool {
	n := 2 + max(len(msgs)-1, 0) // [ , … ]
	for _, m := range msgs {
		n += len(m.Encoded())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return false
	}
	if c.buf == nil {
		c.buf = batchBufPool.Get().(*[]byte)
	}
	b := appendFrameHeader(*c.buf, n)
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Encoded()...)
	}
	*c.buf = append(b, ']')
	return true
}

// appendFrameHeader appends the header of a final, unmasked text frame of n
// payload bytes (RFC 6455 section 5.2), as a server sends it.
func appendFrameHeader(b []byte, n int) []byte {
	const finText = 0x80 | 0x1
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return append(b, finText, 126, byte(n>>8), byte(n))
	default:
		u := uint64(n)
		return append(b, finText, 127, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32),
			byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
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
// the round's bytes were written. The write is first tried without waiting,
// which needs no deadline (setting one costs a timer update in the poller);
// only what the socket does not take at once is written with a deadline.
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
		n = c.tryWrite(*b)
		if n < len(*b) {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
			var m int
			m, err = c.Conn.Write((*b)[n:])
			n += m
		}
	}
	if cap(*b) <= 1<<20 {
		*b = (*b)[:0]
		batchBufPool.Put(b)
	}
	return n, err
}

// tryWrite writes as much of p as the socket takes without waiting and
// returns how much that was. Any failure (the socket is full, the connection
// broke, a deadline set by a control frame passed) leaves the rest to a
// write that waits, which reports the error.
func (c *batchConn) tryWrite(p []byte) int {
	if c.raw == nil {
		return 0
	}
	n := 0
	_ = c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
			n += m
		}
		return true // never wait here
	})
	return n
}

// hijackCapture hands the websocket upgrader a batchConn in place of the raw
// connection, and a read buffer of wsReadBufferSize over it that the reader
// can look into (see wsConn.awaitFrame).
type hijackCapture struct {
	http.ResponseWriter
	writeTimeout time.Duration
	conn         *batchConn
	br           *bufio.Reader
}

// Hijack hijacks the underlying connection and wraps it.
func (h *hijackCapture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &batchConn{Conn: c, writeTimeout: h.writeTimeout}
	if sc, ok := c.(syscall.Conn); ok {
		h.conn.raw, _ = sc.SyscallConn()
	}
	var r io.Reader = h.conn
	if n := rw.Reader.Buffered(); n > 0 {
		// The client sent data before the upgrade's response: read it first.
		early, _ := rw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(early)), h.conn)
	}
	h.br = bufio.NewReaderSize(r, wsReadBufferSize)
	return h.conn, bufio.NewReadWriter(h.br, rw.Writer), nil
}

// Unwrap exposes the wrapped ResponseWriter to http.ResponseController.
func (h *hijackCapture) Unwrap() http.ResponseWriter { return h.ResponseWriter }
