package serverpolicy

import (
	"sync"
	"sync/atomic"
	"time"
)

// Denial logs are rate-limited: a client that retries a forbidden operation
// in a loop must not flood the log (or its storage). Every denial is
// counted (Stats); at most logBurst lines per kind are written per
// logWindow, and the first line after a quiet spell says how many were
// left out.
const (
	logWindow = time.Second
	logBurst  = 10
)

// logLimiter allows logBurst lines per logWindow.
type logLimiter struct {
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
	now        func() time.Time
}

// allow reports whether a line may be written now and, if so, how many were
// left out since the last one.
func (l *logLimiter) allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.now != nil {
		now = l.now()
	}
	if now.Sub(l.start) >= logWindow {
		l.start, l.n = now, 0
	}
	if l.n >= logBurst {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// Stats counts what a Security refused.
type Stats struct {
	// HandshakesDenied counts refused handshakes.
	HandshakesDenied uint64
	// OperationsDenied counts refused create, subscribe and publish
	// operations.
	OperationsDenied uint64
	// LogsSuppressed counts denial log lines left out by the rate limit.
	LogsSuppressed uint64
	// TokensRefreshed and RefreshesDenied count fresh tokens taken on
	// /meta/connect, and refused; TokensExpired the sessions ended because
	// their token expired.
	TokensRefreshed, RefreshesDenied, TokensExpired uint64
}

type denialCounters struct {
	handshakes, operations, suppressed atomic.Uint64
	refreshes, expired                 atomic.Uint64
}
