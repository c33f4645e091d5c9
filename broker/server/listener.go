package server

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HTTPServer returns an http.Server for h with the configured request bounds:
// MaxHeaderBytes, ReadTimeout for the headers (the body's is set per request,
// so that a held /meta/connect is not cut) and IdleTimeout between the
// requests of a kept-alive connection. A response must be written within
// WriteTimeout of being ready (longpoll.go); a websocket round likewise
// (websocket.go).
func (s *Server) HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		// A backstop: the longest a request may take to be answered (its
		// body, a connect held here or on the node it is forwarded to, the
		// write). respond sets a tighter deadline once the reply is ready.
		WriteTimeout:   s.cfg.ReadTimeout + s.cfg.Timeout + forwardMargin + s.cfg.WriteTimeout,
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxHeaderBytes: s.cfg.MaxHeaderBytes,
	}
}

// ConnLimits bounds the connections a LimitedListener keeps open.
type ConnLimits struct {
	// MaxConns caps the open connections. 0 means no cap.
	MaxConns int
	// MaxConnsPerIP caps the open connections from one IP address. 0 or -1
	// means no cap.
	MaxConnsPerIP int
}

// ConnStats counts a LimitedListener's connections.
type ConnStats struct {
	// Open is the number of open connections.
	Open int64
	// RefusedMax counts connections closed at once because MaxConns were open.
	RefusedMax uint64
	// RefusedPerIP counts connections closed at once because MaxConnsPerIP
	// connections from the same address were open.
	RefusedPerIP uint64
}

// LimitedListener accepts connections within ConnLimits: one past a limit is
// answered "503 Service Unavailable" and closed as soon as it is accepted, so
// that it costs a file descriptor for an instant, and Accept goes on (a
// listener that stopped accepting would leave the excess in the kernel's
// queue, where the health of the process cannot be told from outside).
type LimitedListener struct {
	net.Listener
	lim ConnLimits

	mu    sync.Mutex
	open  int
	perIP map[netip.Addr]int

	refusedMax, refusedIP atomic.Uint64
}

// LimitListener wraps ln with lim.
func LimitListener(ln net.Listener, lim ConnLimits) *LimitedListener {
	return &LimitedListener{Listener: ln, lim: lim, perIP: map[netip.Addr]int{}}
}

// refusal is what a refused connection reads before it is closed.
const refusal = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 2\r\n\r\n"

// Accept returns the next connection within the limits.
func (l *LimitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if l.admit(ip) {
			return &limitedConn{Conn: c, l: l, ip: ip}, nil
		}
		// A fresh socket's send buffer is empty: the write does not block.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write([]byte(refusal))
		_ = c.Close()
	}
}

// admit counts a new connection from ip, or reports false when a limit is
// reached.
func (l *LimitedListener) admit(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim.MaxConns > 0 && l.open >= l.lim.MaxConns {
		l.refusedMax.Add(1)
		return false
	}
	if l.lim.MaxConnsPerIP > 0 && ip.IsValid() && l.perIP[ip] >= l.lim.MaxConnsPerIP {
		l.refusedIP.Add(1)
		return false
	}
	l.open++
	if ip.IsValid() {
		l.perIP[ip]++
	}
	return true
}

func (l *LimitedListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if ip.IsValid() {
		if l.perIP[ip]--; l.perIP[ip] <= 0 {
			delete(l.perIP, ip)
		}
	}
}

// Stats returns the listener's counters.
func (l *LimitedListener) Stats() ConnStats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	return ConnStats{Open: int64(open), RefusedMax: l.refusedMax.Load(), RefusedPerIP: l.refusedIP.Load()}
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// limitedConn gives its slot back when closed (once, however often Close is
// called: net/http and the websocket code may both close it).
type limitedConn struct {
	net.Conn
	l    *LimitedListener
	ip   netip.Addr
	once sync.Once
}

// SyscallConn exposes the wrapped connection's file descriptor (the
// websocket writer's writes that do not wait use it), or fails when it has
// none.
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
