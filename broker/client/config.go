package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Config configures a Client. Only URL is required; every other zero value
// selects the documented default.
type Config struct {
	// URL is the server's Bayeux endpoint, http:// or https://, for example
	// "http://127.0.0.1:8080/cometd". Websocket connections use the same URL
	// with the ws:// or wss:// scheme.
	URL string

	// Transports lists the transports the client may use, in order of
	// preference. Nil means {"websocket", "long-polling"}: websocket when the
	// server offers it and the upgrade succeeds, long-polling otherwise.
	Transports []string

	// HTTPClient sends long-polling requests. Nil means a client of its own
	// with a dedicated connection pool and the cookie jar below. A non-nil
	// client is used as is; its Jar, if set, is also used for websocket dials.
	HTTPClient *http.Client

	// Header is added to every HTTP request and to the websocket upgrade
	// request. Nil adds nothing.
	Header http.Header

	// Jar stores cookies across requests (some servers pin sessions with a
	// cookie). Nil means HTTPClient's jar if it has one, otherwise a fresh
	// in-memory jar.
	Jar http.CookieJar

	// Dialer dials websocket connections. Nil means a dialer with a 10 s
	// handshake timeout.
	Dialer *websocket.Dialer

	// MaxNetworkDelay is how long a request may take on top of the time the
	// server is advised to hold a /meta/connect. Zero means 10 s.
	MaxNetworkDelay time.Duration

	// BackoffBase is the first delay after a failed connect; each further
	// consecutive failure doubles it up to BackoffMax. Each delay is drawn at
	// random from [d/2, d] (jitter). Zero means 250 ms.
	BackoffBase time.Duration

	// BackoffMax caps the backoff delay. Zero means 15 s.
	BackoffMax time.Duration

	// AckExtension enables the client side of the message acknowledgement
	// extension (ext.ack) when the server supports it. False leaves it off.
	AckExtension bool

	// Extensions see every outgoing message before it is sent and every
	// incoming message before it is processed, in order. Nil means none.
	Extensions []Extension

	// OnState, if set, is called on each state change, and on each failure
	// that keeps the state, with the reason (nil when there is none). It runs
	// on the goroutine making the change (the connect loop, or the caller of
	// Handshake or Disconnect), so it must return quickly and must not call
	// Handshake or Disconnect. Nil means no notifications.
	OnState func(state State, err error)

	// MaxMessageSize bounds one websocket frame read from the server. Zero
	// means 16 MiB.
	MaxMessageSize int64
}

// Extension hooks into the message flow. Outgoing is called for each message
// before it is sent and may modify it; Incoming for each received message
// before the client acts on it. Returning false drops the message (a dropped
// reply leaves its request to fail when its context ends or its transport
// request completes).
type Extension interface {
	Outgoing(m *Message) bool
	Incoming(m *Message) bool
}

func (c *Config) normalize() error {
	if c.URL == "" {
		return errors.New("bayeux: Config.URL is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("bayeux: invalid Config.URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("bayeux: Config.URL %q must use http or https", c.URL)
	}
	if u.Host == "" {
		return fmt.Errorf("bayeux: Config.URL %q has no host", c.URL)
	}
	if c.Transports == nil {
		c.Transports = []string{bayeux.TransportWebSocket, bayeux.TransportLongPolling}
	}
	if len(c.Transports) == 0 {
		return errors.New("bayeux: Config.Transports is empty")
	}
	for _, t := range c.Transports {
		if t != bayeux.TransportWebSocket && t != bayeux.TransportLongPolling {
			return fmt.Errorf("bayeux: unsupported transport %q (want %q or %q)", t, bayeux.TransportWebSocket, bayeux.TransportLongPolling)
		}
	}
	if c.Jar == nil && c.HTTPClient != nil {
		c.Jar = c.HTTPClient.Jar
	}
	if c.Jar == nil {
		c.Jar, _ = cookiejar.New(nil)
	}
	if c.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 4
		c.HTTPClient = &http.Client{Transport: tr, Jar: c.Jar}
	}
	if c.Dialer == nil {
		c.Dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment}
	}
	if c.Dialer.Jar == nil {
		d := *c.Dialer
		d.Jar = c.Jar
		c.Dialer = &d
	}
	if c.MaxNetworkDelay == 0 {
		c.MaxNetworkDelay = 10 * time.Second
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = 250 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 15 * time.Second
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 16 << 20
	}
	return nil
}

// State is the client's connection state.
type State int

// Client states.
const (
	// StateIdle: created, Handshake not called yet.
	StateIdle State = iota
	// StateHandshaking: a (re-)handshake is in progress.
	StateHandshaking
	// StateConnected: the last /meta/connect succeeded.
	StateConnected
	// StateUnconnected: the last /meta/connect failed; the client is retrying.
	StateUnconnected
	// StateDisconnected: Disconnect was called or the server advised
	// reconnect "none". Terminal.
	StateDisconnected
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateHandshaking:
		return "handshaking"
	case StateConnected:
		return "connected"
	case StateUnconnected:
		return "unconnected"
	case StateDisconnected:
		return "disconnected"
	}
	return fmt.Sprintf("State(%d)", int(s))
}
