package server

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/config"
)

// Default values for Config fields that are zero, matching the CometD server.
const (
	DefaultTimeout               = config.DefaultTimeout
	DefaultMaxInterval           = config.DefaultMaxInterval
	DefaultMaxLazyTimeout        = config.DefaultMaxLazyTimeout
	DefaultMaxQueueBytes         = config.DefaultMaxQueueBytes
	DefaultMaxMessageSize        = config.DefaultMaxMessageSize
	DefaultWSMessagesPerFrame    = config.DefaultWSMessagesPerFrame
	DefaultMultiSessionInterval  = 2 * time.Second
	DefaultMaxSessionsPerBrowser = 1
	DefaultDrainRate             = 1000
	DefaultMaxHeaderBytes        = config.DefaultMaxHeaderBytes
	DefaultMaxPendingBytes       = config.DefaultMaxPendingBytes
	DefaultReadTimeout           = config.DefaultReadTimeout
	DefaultWriteTimeout          = config.DefaultWriteTimeout
	DefaultIdleTimeout           = config.DefaultIdleTimeout
	DefaultMaxConnectionsPerIP   = config.DefaultMaxConnectionsPerIP
	// DefaultMaxSubscriptionsPerSession bounds what one client can make the
	// server hold (channels, backbone interest) by subscribing to random names.
	DefaultMaxSubscriptionsPerSession = 1000
)

// drainSpread is the share of a drain's grace period over which held connects
// are released, so the last clients are told to go before the process ends.
const drainSpread = 0.8

// Config configures a Server. Every zero value means the documented default.
// A negative count, size, rate or duration makes NewServer fail, except the -1
// that some fields document as "no limit".
type Config struct {
	// NodeID names this broker; it prefixes every clientId it issues, so OwnerOf
	// can tell which node owns a session. Letters, digits, '-', '_' and '.' only.
	// Empty means the backbone's NodeID, or a random ID when there is no backbone.
	NodeID string
	// Timeout is how long a /meta/connect is held (advice.timeout). 0 means DefaultTimeout.
	Timeout time.Duration
	// Interval is advice.interval. 0 (the default) means clients reconnect at once.
	Interval time.Duration
	// MaxInterval is how long a session lives with no connect. 0 means DefaultMaxInterval.
	MaxInterval time.Duration
	// MaxLazyTimeout bounds how long a lazy message may wait. 0 means DefaultMaxLazyTimeout.
	MaxLazyTimeout time.Duration
	// MaxQueue caps a session's queue in messages; a message over it ends the
	// session with ErrSlowConsumer. 0 or -1 mean no message cap.
	MaxQueue int
	// MaxQueueBytes caps a session's queue in encoded bytes; a session over it is
	// disconnected with ErrSlowConsumer. 0 means DefaultMaxQueueBytes; -1 means no cap.
	MaxQueueBytes int64
	// MaxMessageSize caps a request body, JSONP message or websocket frame, in
	// bytes. 0 means DefaultMaxMessageSize.
	MaxMessageSize int64
	// MaxPendingBytes caps the output one websocket connection may have
	// waiting for the network: replies (to any message, with or without a
	// session) and forwarded batches' replies, counted by their encoded size
	// plus perMessageOverhead each. A connection past it is closed as
	// ErrSlowConnection. The session's own queue is capped by MaxQueueBytes.
	// An eventsource stream writes events of at most this many bytes (but
	// for one message), each within WriteTimeout.
	// 0 means DefaultMaxPendingBytes.
	MaxPendingBytes int64
	// MaxHeaderBytes caps a request's headers (HTTPServer). 0 means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ReadTimeout bounds the read of a request's headers, and then of its
	// body. 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds the write of one response once it is ready (a held
	// /meta/connect is released first) and of one round of websocket frames.
	// 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// IdleTimeout is how long a kept-alive connection may wait for its next
	// request (HTTPServer). 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Transports lists the enabled transports (bayeux.Transports:
	// "websocket", "long-polling", "callback-polling",
	// "cross-origin-long-polling", "eventsource"). A POST is served while any
	// of long-polling, cross-origin-long-polling and eventsource is enabled
	// (they all send by POST); a handshake is told only the enabled ones the
	// client listed. Empty means all of them.
	Transports []string
	// AllowedOrigins lists origins allowed cross-origin requests with credentials;
	// "*" allows any. Empty means same-origin only.
	AllowedOrigins []string
	// WSMessagesPerFrame caps the messages in one websocket frame. 0 means DefaultWSMessagesPerFrame.
	WSMessagesPerFrame int
	// MultiSessionInterval is advice.interval for a browser polling with more than
	// MaxSessionsPerBrowser sessions. 0 means DefaultMultiSessionInterval.
	MultiSessionInterval time.Duration
	// MaxSessionsPerBrowser is how many sessions of one browser (BAYEUX_BROWSER
	// cookie) may hold a long-poll at once. 0 means DefaultMaxSessionsPerBrowser;
	// -1 means no limit.
	MaxSessionsPerBrowser int
	// SweepInterval is how often expired sessions are looked for. 0 means
	// MaxInterval/4, bounded to [10ms, 1s].
	SweepInterval time.Duration
	// MaxSubscriptionsPerSession caps the channels one session may subscribe
	// to; a /meta/subscribe that would pass it fails whole with
	// 403::subscription_limit. Server-side subscriptions (ServerChannel.Subscribe)
	// are not capped. 0 means DefaultMaxSubscriptionsPerSession; -1 means no cap.
	MaxSubscriptionsPerSession int
	// MaxSessions caps the remote sessions (LocalSessions are not counted) this
	// server holds at once; a handshake past it fails with 503::too_many_sessions
	// and advice to handshake again after a few seconds, so that a flood of
	// handshakes cannot exhaust the broker's memory. 0 means no limit.
	MaxSessions int
	// DrainRate is how many sessions per second a drain hands over to other
	// nodes (see HandOver), or releases when it cannot (their held
	// /meta/connect answered with reconnect "retry"), so that the clients of a
	// draining node do not all arrive at the other nodes at the same instant.
	// When the drain has a deadline (Shutdown's context), the rate is raised as
	// needed to move every session within 80% of the time left. 0 means
	// DefaultDrainRate; -1 moves every session at once (HandoverConcurrency at
	// a time).
	DrainRate float64
	// DisableHandover makes a drain release sessions (their clients handshake
	// again elsewhere) instead of handing them over to other nodes. Handover
	// needs a backbone that is a backbone.Router and Requester; without one a
	// drain releases sessions anyway.
	DisableHandover bool
	// HandoverTimeout bounds one session's move to another node. 0 means
	// DefaultHandoverTimeout.
	HandoverTimeout time.Duration
	// HandoverConcurrency is how many sessions a drain moves at once. 0 means
	// DefaultHandoverConcurrency.
	HandoverConcurrency int
	// HandoverSettle is the wait between a node adopting a session and the
	// source collecting what reached the session meanwhile. 0 means
	// DefaultHandoverSettle.
	HandoverSettle time.Duration
	// LivenessInterval is how often a node that forwarded requests wait on is
	// pinged; one gone from the backbone, or that misses two pings, ends them
	// at once. 0 means DefaultLivenessInterval.
	LivenessInterval time.Duration
	// LocateTimeout bounds the search for a session no node is known to hold.
	// 0 means DefaultLocateTimeout.
	LocateTimeout time.Duration
	// Backbone carries publishes to other nodes. Nil means a single node.
	Backbone backbone.Backbone
	// Durable keeps sessions in the backbone's JetStream so that another node
	// adopts them when this one dies (durable.go). Nil means sessions live in
	// this node's memory only.
	Durable DurableStore
	// DurableInterval is how often, at most, a session's durable record is
	// rewritten when only its position moved (subscriptions and attributes
	// are written within DurableTick). 0 means DefaultDurableInterval.
	DurableInterval time.Duration
	// Security decides who may handshake, create, subscribe and publish. Nil means
	// DefaultSecurityPolicy (authorizers on channels, else allow).
	Security SecurityPolicy
	// Logger receives operational logs. Nil means slog.Default().
	Logger *slog.Logger
}

// ConfigFromFile maps the broker configuration file onto a Config. The caller
// adds NodeID, Backbone, Security and Logger.
func ConfigFromFile(f *config.File) Config {
	c := Config{
		Timeout:            f.Timeout(),
		Interval:           f.Interval(),
		MaxInterval:        f.MaxInterval(),
		MaxLazyTimeout:     f.MaxLazyTimeout(),
		MaxQueue:           f.MaxQueue,
		MaxQueueBytes:      f.MaxQueueBytes,
		MaxMessageSize:     f.MaxMessageSize,
		Transports:         f.EnabledTransports(),
		AllowedOrigins:     append([]string(nil), f.AllowedOrigins...),
		WSMessagesPerFrame: f.WSMessagesPerFrame,
		DrainRate:          f.DrainRate,
		MaxPendingBytes:    f.MaxPendingBytes,
		MaxHeaderBytes:     f.MaxHeaderBytes,
		ReadTimeout:        f.ReadTimeout(),
		WriteTimeout:       f.WriteTimeout(),
		IdleTimeout:        f.IdleTimeout(),

		MaxSubscriptionsPerSession: f.MaxSubscriptionsPerSession,
		MaxSessions:                f.MaxSessions,
	}
	return c
}

// validate rejects negative counts, sizes and durations, except the -1 that
// some fields document as "no limit". It runs before setDefaults, so that a
// negative value is never mistaken for a set one.
func (c *Config) validate() error {
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"Timeout", c.Timeout},
		{"Interval", c.Interval},
		{"MaxInterval", c.MaxInterval},
		{"MaxLazyTimeout", c.MaxLazyTimeout},
		{"MultiSessionInterval", c.MultiSessionInterval},
		{"SweepInterval", c.SweepInterval},
		{"HandoverTimeout", c.HandoverTimeout},
		{"HandoverSettle", c.HandoverSettle},
		{"LocateTimeout", c.LocateTimeout},
		{"LivenessInterval", c.LivenessInterval},
		{"DurableInterval", c.DurableInterval},
		{"ReadTimeout", c.ReadTimeout},
		{"WriteTimeout", c.WriteTimeout},
		{"IdleTimeout", c.IdleTimeout},
	}
	for _, d := range durations {
		if d.v < 0 {
			return fmt.Errorf("server: Config.%s is negative (%v); use 0 for the default", d.name, d.v)
		}
	}
	counts := []struct {
		name    string
		v       int64
		noLimit bool // -1 means no limit
	}{
		{"MaxQueue", int64(c.MaxQueue), true},
		{"MaxQueueBytes", c.MaxQueueBytes, true},
		{"MaxMessageSize", c.MaxMessageSize, false},
		{"MaxPendingBytes", c.MaxPendingBytes, false},
		{"MaxHeaderBytes", int64(c.MaxHeaderBytes), false},
		{"WSMessagesPerFrame", int64(c.WSMessagesPerFrame), false},
		{"MaxSessionsPerBrowser", int64(c.MaxSessionsPerBrowser), true},
		{"MaxSubscriptionsPerSession", int64(c.MaxSubscriptionsPerSession), true},
		{"MaxSessions", int64(c.MaxSessions), false},
		{"HandoverConcurrency", int64(c.HandoverConcurrency), false},
	}
	for _, n := range counts {
		switch {
		case n.v >= 0 || n.noLimit && n.v == -1:
		case n.noLimit:
			return fmt.Errorf("server: Config.%s is %d; use a positive value, 0 for the default or -1 for no limit", n.name, n.v)
		default:
			return fmt.Errorf("server: Config.%s is %d; use a positive value or 0 for the default", n.name, n.v)
		}
	}
	if r := c.DrainRate; r < 0 && r != -1 || math.IsNaN(r) || math.IsInf(r, 0) {
		return fmt.Errorf("server: Config.DrainRate is %v; use a positive rate, 0 for the default or -1 for all at once", r)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = DefaultMaxInterval
	}
	if c.MaxLazyTimeout == 0 {
		c.MaxLazyTimeout = DefaultMaxLazyTimeout
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = -1
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if len(c.Transports) == 0 {
		c.Transports = append([]string(nil), config.DefaultTransports...)
	}
	if c.WSMessagesPerFrame == 0 {
		c.WSMessagesPerFrame = DefaultWSMessagesPerFrame
	}
	if c.MultiSessionInterval == 0 {
		c.MultiSessionInterval = DefaultMultiSessionInterval
	}
	if c.MaxSessionsPerBrowser == 0 {
		c.MaxSessionsPerBrowser = DefaultMaxSessionsPerBrowser
	}
	if c.MaxSubscriptionsPerSession == 0 {
		c.MaxSubscriptionsPerSession = DefaultMaxSubscriptionsPerSession
	}
	if c.DrainRate == 0 {
		c.DrainRate = DefaultDrainRate
	}
	if c.HandoverTimeout == 0 {
		c.HandoverTimeout = DefaultHandoverTimeout
	}
	if c.HandoverConcurrency == 0 {
		c.HandoverConcurrency = DefaultHandoverConcurrency
	}
	if c.HandoverSettle == 0 {
		c.HandoverSettle = DefaultHandoverSettle
	}
	if c.LivenessInterval == 0 {
		c.LivenessInterval = DefaultLivenessInterval
	}
	if c.LocateTimeout == 0 {
		c.LocateTimeout = DefaultLocateTimeout
	}
	if c.DurableInterval == 0 {
		c.DurableInterval = DefaultDurableInterval
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = min(max(c.MaxInterval/4, 10*time.Millisecond), time.Second)
	}
	if c.Security == nil {
		c.Security = DefaultSecurityPolicy{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
