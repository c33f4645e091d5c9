package server

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// closeWhileDraining makes a reply close its connection while the node
// drains: the client's next request opens a new one, which reaches a node
// that stays, instead of coming back here on a kept-alive one.
func (s *Server) closeWhileDraining(w http.ResponseWriter) {
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
	}
}

// BrowserCookie names the cookie that identifies a browser across its sessions,
// for the multiple-clients advice.
const BrowserCookie = "BAYEUX_BROWSER"

// Handler returns the http.Handler for every enabled transport, at whatever path
// it is mounted on (mount it at "/cometd" and "/cometd/"; every path below is
// accepted): websocket upgrades, GETs with a jsonp parameter (callback-polling),
// GETs that accept text/event-stream (eventsource streams), POSTs
// (long-polling, cross-origin-long-polling and eventsource's messages), and
// CORS preflights.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// LongPollingHandler serves only the long-polling transport.
func (s *Server) LongPollingHandler() http.Handler { return s.pollingHandler(s.serveLongPolling) }

// CallbackPollingHandler serves only the callback-polling (JSONP) transport.
func (s *Server) CallbackPollingHandler() http.Handler {
	return s.pollingHandler(s.serveCallbackPolling)
}

// pollingHandler serves one polling transport with serve, after what every
// polling request gets: Connection: close while draining, and CORS.
func (s *Server) pollingHandler(serve http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.closeWhileDraining(w)
		if s.cors(w, r) {
			return
		}
		serve(w, r)
	})
}

// WebsocketHandler serves only the websocket transport.
func (s *Server) WebsocketHandler() http.Handler { return http.HandlerFunc(s.serveWebsocket) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		s.serveWebsocket(w, r)
		return
	}
	s.closeWhileDraining(w)
	if s.cors(w, r) {
		return
	}
	switch {
	case r.Method == http.MethodPost:
		s.serveLongPolling(w, r)
	case isEventSource(r):
		s.serveEventSource(w, r)
	case r.Method == http.MethodGet && r.URL.Query().Has("jsonp"):
		s.serveCallbackPolling(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		http.Error(w, "Bayeux endpoint: POST a message batch, GET with jsonp and message parameters, GET <mount>/<clientId> as text/event-stream, or upgrade to websocket", http.StatusMethodNotAllowed)
	}
}

// cors sets the reply's common headers, and CORS headers for allowed origins,
// and answers preflights; it reports whether the request was fully answered.
// A listed origin (or one a listed pattern matches) may send credentials; "*"
// allows any other origin without them.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	origin := r.Header.Get("Origin")
	listed := origin != "" && s.origins.match(origin)
	if !listed && (origin == "" || !s.origins.any) {
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return true
		}
		return false
	}
	if listed {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	if r.Method != http.MethodOptions {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && len(req) <= 256 {
		h.Set("Access-Control-Allow-Headers", req)
	} else {
		h.Set("Access-Control-Allow-Headers", "Content-Type")
	}
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
	return true
}

func (s *Server) badRequest(w http.ResponseWriter, err error) {
	http.Error(w, "bad Bayeux request: "+err.Error(), http.StatusBadRequest)
}

func (s *Server) tooLarge(w http.ResponseWriter) {
	http.Error(w, "Bayeux request larger than the maximum message size, or with more messages than the broker answers at once", http.StatusRequestEntityTooLarge)
}

// postTransports are the transports whose messages arrive by POST.
var postTransports = []string{bayeux.TransportLongPolling, bayeux.TransportCrossOriginLongPolling, bayeux.TransportEventSource}

// servesPOST reports whether a transport that sends by POST is enabled.
func (s *Server) servesPOST() bool {
	for _, t := range postTransports {
		if s.transports[t] {
			return true
		}
	}
	return false
}

// isFormBody reports whether a POST body of content type ct is
// form-encoded: declared so, or sent as text/plain with a "message" field, as
// Faye's cross-origin-long-polling does (an XMLHttpRequest with a string body
// and no Content-Type, so that it needs no preflight).
func isFormBody(ct string, body []byte) bool {
	switch ct {
	case "application/x-www-form-urlencoded":
		return true
	case "text/plain", "":
		return bytes.HasPrefix(body, []byte("message="))
	}
	return false
}

func (s *Server) serveLongPolling(w http.ResponseWriter, r *http.Request) {
	if !s.servesPOST() {
		http.Error(w, "long-polling transport disabled", http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	// The body must arrive within ReadTimeout; the deadline is lifted once it
	// has, so that the wait for the client's going away (which net/http does
	// by reading on) does not end a held connect.
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxMessageSize))
	if err != nil {
		// The deadline stays, and the connection goes: net/http would read
		// on to discard the rest of the body.
		w.Header().Set("Connection", "close")
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.tooLarge(w)
			return
		}
		s.badRequest(w, err)
		return
	}
	_ = rc.SetReadDeadline(time.Time{})
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); isFormBody(ct, body) {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			s.badRequest(w, err)
			return
		}
		body = []byte(form.Get("message"))
	}
	s.serveBatch(w, r, body, bayeux.TransportLongPolling, "")
}

// validCallback accepts the JSONP callback names the CometD and Faye browser
// clients produce: "_cometd_jsonp_<n>" and "__jsonp<n>__". Any other name,
// a dotted path to a global above all ("location.assign"), is refused: the
// reply would call it with data the client does not control alone.
func validCallback(cb string) bool {
	var digits string
	switch {
	case strings.HasPrefix(cb, "_cometd_jsonp_"):
		digits = cb[len("_cometd_jsonp_"):]
	case strings.HasPrefix(cb, "__jsonp") && strings.HasSuffix(cb, "__") && len(cb) > len("__jsonp__"):
		digits = cb[len("__jsonp") : len(cb)-2]
	default:
		return false
	}
	if digits == "" || len(digits) > 12 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// scriptOriginAllowed decides whether a callback-polling request may be
// answered. A browser loads it as a script, with no CORS to protect the reply,
// so the broker checks the page's origin itself, named by Origin or else
// Referer (a browser sends the page's origin in one of them for a script
// from another origin). A request that fetch metadata marks as same-origin
// (Sec-Fetch-Site, which browsers send only to HTTPS and loopback addresses)
// is answered; any other whose page origin is known must pass the websocket
// origin check: listed (or "*"), or same-origin on an address. A request that
// names no origin at all, and has no fetch metadata saying it is cross-site,
// is not from a browser page, and is answered as a websocket without Origin
// is.
func (s *Server) scriptOriginAllowed(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if site == "same-origin" || site == "none" {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		if ref, err := url.Parse(r.Referer()); err == nil && ref.Scheme != "" && ref.Host != "" {
			origin = ref.Scheme + "://" + ref.Host
		}
	}
	if origin == "" || origin == "null" {
		return site == "" // cross-site by fetch metadata, yet no origin: refused
	}
	return s.originAllowed(origin, r)
}

// maxClientString bounds the header values a session or connection keeps
// (User-Agent, the browser cookie): they are copied, and cut to this length.
const maxClientString = 256

// clientString returns a copy of v cut to maxClientString bytes, so that a
// session does not keep the request's header block alive.
func clientString(v string) string {
	if len(v) > maxClientString {
		v = v[:maxClientString]
	}
	return strings.Clone(v)
}

// browserID returns the request's BAYEUX_BROWSER cookie, or "" when it is
// absent or not a value this server could have issued.
func browserID(r *http.Request) string {
	c, err := r.Cookie(BrowserCookie)
	if err != nil || c.Value == "" || len(c.Value) > 64 {
		return ""
	}
	for _, ch := range c.Value {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return ""
		}
	}
	return strings.Clone(c.Value)
}

// browserCookie is the BAYEUX_BROWSER cookie issued with a successful
// handshake: HttpOnly, SameSite=Lax, and Secure when the request came over
// TLS (to this server, or to a proxy that says so in X-Forwarded-Proto).
func browserCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{
		Name: BrowserCookie, Value: randomToken(16), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
	}
}

func (s *Server) serveCallbackPolling(w http.ResponseWriter, r *http.Request) {
	if !s.transports[bayeux.TransportCallbackPolling] {
		http.Error(w, "callback-polling transport disabled", http.StatusBadRequest)
		return
	}
	if int64(len(r.URL.RawQuery)) > 3*s.cfg.MaxMessageSize {
		s.tooLarge(w)
		return
	}
	if !s.scriptOriginAllowed(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	cb := q.Get("jsonp")
	if !validCallback(cb) {
		s.badRequest(w, errors.New("jsonp must be a JavaScript identifier"))
		return
	}
	msg := q.Get("message")
	if int64(len(msg)) > s.cfg.MaxMessageSize {
		s.tooLarge(w)
		return
	}
	s.serveBatch(w, r, []byte(msg), bayeux.TransportCallbackPolling, cb)
}

// serveBatch decodes a polling batch, refuses one too large to answer, and
// serves it where its session is.
func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request, raw []byte, transport, callback string) {
	msgs, err := bayeux.DecodeBatch(raw)
	if err != nil {
		s.badRequest(w, err)
		return
	}
	if s.batchTooLarge(len(msgs)) {
		s.tooLarge(w)
		return
	}
	s.servePolling(w, r, msgs, raw, transport, callback)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// respond processes a polling batch, holds its connect, and writes the replies,
// the delivered messages and the connect reply, last. release, when not nil,
// is called once the batch is processed (see route).
func (s *Server) respond(w http.ResponseWriter, r *http.Request, msgs []*bayeux.Mutable, transport, callback string, release func()) {
	ri := reqInfo{transport: transport, userAgent: r.UserAgent(), browser: browserID(r)}
	res := s.process(msgs, ri)
	if release != nil {
		release()
	}

	if ri.browser == "" {
		for _, rep := range res.replies {
			if rep.m.Channel == bayeux.MetaHandshake && rep.m.Successful == bayeux.True {
				http.SetCookie(w, browserCookie(r))
				break
			}
		}
	}
	out := res.replies
	if pc := res.connect; pc != nil {
		alive := s.wait(r.Context(), pc)
		delivered, reply := s.finish(pc, alive)
		if !alive {
			return
		}
		out = append(out, delivered...)
		if reply != nil {
			out = append(out, reply)
		}
	}
	s.writeBatch(w, out, callback)
}

// writeBatch writes msgs as a polling reply: a JSON array, or a call of
// callback with it (callback-polling).
func (s *Server) writeBatch(w http.ResponseWriter, out []*ServerMessage, callback string) {
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	if callback != "" {
		buf = append(buf, callback...)
		buf = append(buf, '(')
	}
	buf = append(buf, '[')
	for i, m := range out {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, m.Encoded()...)
	}
	buf = append(buf, ']')
	if callback != "" {
		buf = append(buf, ");"...)
		w.Header().Set("Content-Type", "text/javascript;charset=UTF-8")
	} else {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	}
	w.Header().Set("Cache-Control", "no-cache, no-store")
	// The reply, held until now, must be written within WriteTimeout: a
	// client that does not read it does not keep it in memory longer.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	_, _ = w.Write(buf)
	s.stats.messagesOut.Add(uint64(len(out)))
	if cap(buf) <= 1<<20 {
		*bp = buf
		bufPool.Put(bp)
	}
}
