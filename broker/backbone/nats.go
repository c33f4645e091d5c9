package backbone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cometd-operator/cometd-operator/broker/config"
)

var (
	_ Backbone    = (*NATS)(nil)
	_ Requester   = (*NATS)(nil)
	_ Router      = (*NATS)(nil)
	_ Health      = (*NATS)(nil)
	_ StatsSource = (*NATS)(nil)
)

// Envelope headers. Every message a NATS backbone publishes carries HeaderEnvelope,
// so that Data stays the raw encoded Bayeux message.
const (
	// HeaderEnvelope is "<epoch> <seq> <unix-nanos> <origin>": the publishing
	// run's epoch (random per NewNATS, so a restarted node's sequence starts
	// afresh), its sequence number (increasing by publish), the publish time (for
	// the lag measure) and the publishing node's ID.
	HeaderEnvelope = "Cometd-Env"
	// HeaderDeadline carries a request's deadline in Unix nanoseconds.
	HeaderDeadline = "Cometd-Deadline"
	// HeaderError marks a reply as an error; its value is the error text.
	HeaderError = "Cometd-Error"
	// HeaderRequestID names a request, so that its requester can cancel it.
	HeaderRequestID = "Cometd-Req"
	// HeaderID carries a message's Message.ID.
	HeaderID = "Cometd-Id"
	// HeaderNode names the node that sent a reply to RequestAny or Ask.
	HeaderNode = "Cometd-Node"
	// HeaderCancel, on a message to a node's request subject, cancels the
	// request it names (the requester's context ended before the reply came).
	HeaderCancel = "Cometd-Cancel"
)

// Defaults for NATSConfig's zero values.
const (
	DefaultReconnectWait  = 500 * time.Millisecond
	DefaultConnectTimeout = 5 * time.Second
	DefaultDeliveryBuffer = 1 << 16
	// maxOriginIdle is how long a publisher may stay silent before its
	// de-duplication state is forgotten.
	maxOriginIdle = 10 * time.Minute
)

// NATSConfig configures a NATS backbone.
type NATSConfig struct {
	// URL is a comma-separated list of NATS server URLs. Empty is allowed only
	// with InProcess.
	URL string
	// InProcess, when set, connects to this embedded server in-process (an
	// *server.Server from nats-server/v2) and URL is ignored. Nil means connect
	// over the network.
	InProcess nats.InProcessConnProvider
	// CredsFile is a NATS credentials (.creds) file. Empty means none.
	CredsFile string
	// Token is a NATS authentication token. Empty means TokenFile, or none.
	Token string
	// TokenFile holds a NATS token (surrounding whitespace is ignored). Empty means none.
	TokenFile string
	// CAFile is a PEM bundle of CAs to verify the server with. Empty means the
	// system roots when the URL asks for TLS.
	CAFile string
	// CertFile and KeyFile are the client certificate and key for mutual TLS.
	// Both or neither.
	CertFile, KeyFile string
	// SubjectPrefix is the first token(s) of every subject. Empty means
	// config.DefaultSubjectPrefix.
	SubjectPrefix string
	// Cluster scopes every subject: nodes with different clusters never see each
	// other. Empty means the standalone cluster.
	Cluster string
	// NodeID is this node's ID, unique in the cluster. Empty means a random ID.
	NodeID string
	// Name is the connection's name as the NATS server reports it. Empty means
	// "cometd-broker/<cluster>/<node ID>".
	Name string
	// ReconnectWait is the pause between reconnection attempts (attempts never
	// stop). 0 means DefaultReconnectWait.
	ReconnectWait time.Duration
	// ConnectTimeout bounds each connection attempt. 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// FailFast makes NewNATS fail when no server is reachable. False means NewNATS
	// returns at once and keeps trying in the background, reporting unhealthy
	// until it connects.
	FailFast bool
	// DeliveryBuffer is how many received messages may wait for the Handler before
	// further ones are dropped (and counted in Stats.Dropped). 0 means
	// DefaultDeliveryBuffer.
	DeliveryBuffer int
	// Logger receives connection events. Nil means no logging.
	Logger *slog.Logger
}

// NATS is a Backbone over a NATS connection. See the package notes in subject.go
// for the subject layout and token encoding.
//
// Every channel subscription feeds one Go channel read by one delivery goroutine,
// so messages arrive in the order the server sent them. Each published message
// carries its origin, the origin's epoch and a sequence number; the delivery
// goroutine drops any message whose sequence number is not above the last one
// seen from that origin and epoch. Since the server delivers the messages of one
// publishing connection in order, this removes the second copy a node receives
// when two of its patterns ("/a/*" and "/a/**") match, and nothing else. (With a
// multi-server NATS cluster, a publisher that fails over to another server while
// messages are in flight may have a few of them reordered, and those that arrive
// behind a later one are dropped: at most once, not exactly once.)
type NATS struct {
	nc       *nats.Conn
	id       string
	epoch    string
	chPrefix string // "<prefix>.<cluster>.ch."
	jsPrefix string // "<prefix>.<cluster>.js.": the durable stream's subjects (durable.go)
	ndPrefix string // "<prefix>.<cluster>.node."
	anySubj  string // "<prefix>.<cluster>.any": RequestAny, a queue group
	askSubj  string // "<prefix>.<cluster>.ask": Ask, every node
	log      *slog.Logger

	in   chan *nats.Msg
	quit chan struct{}
	done chan struct{}

	handler atomicHandler
	pubMu   sync.Mutex // orders sequence numbers as the connection sends them
	seq     uint64
	mu      sync.Mutex
	subs    map[string]*natsSub // pattern → subscription
	dropped uint64              // drops counted on subscriptions already gone
	closed  bool
	reqH    RequestHandler
	reqSub  *nats.Subscription
	askSub  *nats.Subscription
	anySub  *nats.Subscription // nil while the node takes no work
	reqs    sync.WaitGroup
	reqCtx  context.Context
	reqStop context.CancelFunc
	reqSeq  atomic.Uint64
	// inflight maps the IDs of the requests being served to their cancel functions.
	inflight map[string]context.CancelFunc

	stats counters
	// durable is set once durability is enabled (durable.go).
	durable atomic.Pointer[Durable]
}

type natsSub struct {
	sub  *nats.Subscription
	refs int
}

type atomicHandler struct {
	mu sync.RWMutex
	h  Handler
}

func (a *atomicHandler) load() Handler {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.h
}

func (a *atomicHandler) store(h Handler) {
	a.mu.Lock()
	a.h = h
	a.mu.Unlock()
}

// NewNATS connects to NATS as described by cfg.
func NewNATS(cfg NATSConfig) (*NATS, error) {
	prefix := cfg.SubjectPrefix
	if prefix == "" {
		prefix = config.DefaultSubjectPrefix
	}
	if err := validSubjectPrefix(prefix); err != nil {
		return nil, err
	}
	if cfg.URL == "" && cfg.InProcess == nil {
		return nil, errors.New("backbone: NATS URL is empty and no in-process server is given")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("backbone: NATS client certificate and key must be given together")
	}
	id := cfg.NodeID
	if id == "" {
		id = randomID()
	}
	if err := validNodeID(id); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	bufSize := cfg.DeliveryBuffer
	if bufSize <= 0 {
		bufSize = DefaultDeliveryBuffer
	}
	cluster := EncodeToken(cfg.Cluster)
	n := &NATS{
		id:       id,
		epoch:    randomID(),
		chPrefix: prefix + "." + cluster + ".ch.",
		jsPrefix: prefix + "." + cluster + ".js.",
		ndPrefix: prefix + "." + cluster + ".node.",
		anySubj:  prefix + "." + cluster + ".any",
		askSubj:  prefix + "." + cluster + ".ask",
		log:      log.With("component", "backbone", "node", id),
		in:       make(chan *nats.Msg, bufSize),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		subs:     make(map[string]*natsSub),
		inflight: make(map[string]context.CancelFunc),
	}
	n.reqCtx, n.reqStop = context.WithCancel(context.Background())

	opts, err := n.options(cfg)
	if err != nil {
		return nil, err
	}
	url := cfg.URL
	if cfg.InProcess != nil {
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("backbone: connect to NATS %q: %w", cfg.URL, err)
	}
	n.nc = nc
	sub, err := nc.Subscribe(n.ndPrefix+EncodeToken(id), n.serveRequest)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("backbone: subscribe to node requests: %w", err)
	}
	n.reqSub = sub
	if n.askSub, err = nc.Subscribe(n.askSubj, n.serveRequest); err == nil {
		n.anySub, err = nc.QueueSubscribe(n.anySubj, workQueue, n.serveRequest)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("backbone: subscribe to cluster requests: %w", err)
	}
	n.sync()
	go n.deliver()
	return n, nil
}

func (n *NATS) options(cfg NATSConfig) ([]nats.Option, error) {
	name := cfg.Name
	if name == "" {
		name = "cometd-broker/" + cfg.Cluster + "/" + n.id
	}
	wait := cfg.ReconnectWait
	if wait <= 0 {
		wait = DefaultReconnectWait
	}
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(wait),
		nats.ReconnectJitter(wait/5, wait/5),
		nats.Timeout(timeout),
		nats.RetryOnFailedConnect(!cfg.FailFast),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if c.IsClosed() {
				return // our own Close
			}
			n.log.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.stats.reconnects.Add(1)
			n.log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(c *nats.Conn) {
			n.log.Info("NATS connected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			n.log.Warn("NATS error", "subject", subj, "err", err)
		}),
	}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	if cfg.CredsFile != "" {
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("backbone: NATS credentials: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	token := cfg.Token
	if token == "" && cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("backbone: NATS token: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("backbone: NATS token file %s is empty", cfg.TokenFile)
		}
	}
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	if cfg.CAFile != "" {
		if _, err := os.Stat(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("backbone: NATS CA: %w", err)
		}
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	return opts, nil
}

// NodeID returns the node's ID.
func (n *NATS) NodeID() string { return n.id }

// SetHandler installs the receiver of remote messages.
func (n *NATS) SetHandler(h Handler) { n.handler.store(h) }

// Subscribe adds one reference to pattern; the first one subscribes on NATS and,
// while connected, waits for the server to confirm it.
func (n *NATS) Subscribe(pattern string) error {
	if err := validatePattern(pattern); err != nil {
		return err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	if s := n.subs[pattern]; s != nil {
		s.refs++
		n.mu.Unlock()
		return nil
	}
	subject := channelSubject(n.chPrefix, pattern)
	if len(subject) > MaxSubjectLength {
		n.mu.Unlock()
		return fmt.Errorf("%w: pattern %.64q…", ErrSubjectTooLong, pattern)
	}
	sub, err := n.nc.ChanSubscribe(subject, n.in)
	if err != nil {
		n.mu.Unlock()
		return fmt.Errorf("backbone: subscribe to %s: %w", pattern, err)
	}
	n.subs[pattern] = &natsSub{sub: sub, refs: 1}
	n.mu.Unlock()
	n.sync()
	return nil
}

// syncTimeout bounds the round trip sync makes.
const syncTimeout = 5 * time.Second

// sync waits, while connected, until the server has processed everything this
// node has sent, so that a new subscription is in effect when Subscribe returns:
// a message published on the same NATS server after that reaches this node. While
// disconnected it returns at once; the client re-sends subscriptions on reconnect.
func (n *NATS) sync() {
	if n.nc.IsConnected() {
		if err := n.nc.FlushTimeout(syncTimeout); err != nil {
			n.log.Warn("NATS flush failed", "err", err)
		}
	}
}

// Unsubscribe drops one reference to pattern; the last one unsubscribes on NATS.
// Dropping a pattern with no references is an error.
func (n *NATS) Unsubscribe(pattern string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	s := n.subs[pattern]
	if s == nil {
		return fmt.Errorf("backbone: unsubscribe from %q, which has no subscription", pattern)
	}
	if s.refs--; s.refs > 0 {
		return nil
	}
	delete(n.subs, pattern)
	if d, err := s.sub.Dropped(); err == nil {
		n.dropped += uint64(d)
	}
	if err := s.sub.Unsubscribe(); err != nil {
		return fmt.Errorf("backbone: unsubscribe from %s: %w", pattern, err)
	}
	return nil
}

// Publish sends data to the nodes with interest in channel. While NATS is
// disconnected, messages are buffered by the client (up to its reconnect buffer)
// and sent, in order, on reconnection.
func (n *NATS) Publish(channel string, data []byte, id string) error {
	if err := validateChannel(channel); err != nil {
		return err
	}
	if len(id) > MaxMessageIDLength {
		return fmt.Errorf("backbone: message ID longer than %d bytes", MaxMessageIDLength)
	}
	subject := channelSubject(n.chPrefix, channel)
	if len(subject) > MaxSubjectLength {
		return fmt.Errorf("%w: channel %.64q…", ErrSubjectTooLong, channel)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 2)}
	if id != "" {
		msg.Header[HeaderID] = []string{id}
	}
	n.pubMu.Lock()
	n.envelope(msg)
	err := n.nc.PublishMsg(msg)
	n.pubMu.Unlock()
	if err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return ErrClosed
		}
		return fmt.Errorf("backbone: publish to %s: %w", channel, err)
	}
	n.stats.published(len(data))
	return nil
}

type originKey struct{ origin, epoch string }

type originState struct {
	seq  uint64
	seen time.Time
}

// deliver is the delivery goroutine: it de-duplicates and hands messages to the
// Handler in arrival order.
func (n *NATS) deliver() {
	defer close(n.done)
	last := make(map[originKey]*originState)
	prune := time.NewTicker(maxOriginIdle / 2)
	defer prune.Stop()
	for {
		select {
		case <-n.quit:
			return
		case now := <-prune.C:
			for k, s := range last {
				if now.Sub(s.seen) > maxOriginIdle {
					delete(last, k)
				}
			}
		case m := <-n.in:
			n.receive(m, last)
		}
	}
}

func (n *NATS) receive(m *nats.Msg, last map[originKey]*originState) {
	key, seq, ts, err := parseEnvelope(m.Header.Get(HeaderEnvelope))
	var channel string
	if err == nil {
		channel, err = subjectChannel(n.chPrefix, m.Subject)
	}
	if err != nil {
		n.stats.invalid.Add(1)
		n.log.Warn("dropping a backbone message", "subject", m.Subject, "err", err)
		return
	}
	var seq0 uint64
	if d := n.durable.Load(); d != nil {
		if seq0 = receivedSeq(m); seq0 != 0 {
			d.saw(seq0)
		}
	}
	if key.origin == n.id {
		// The stream's copy of our own message; without durability, NoEcho
		// means a node with our ID elsewhere, a misconfiguration.
		return
	}
	now := time.Now()
	st := last[key]
	if st == nil {
		st = &originState{}
		last[key] = st
	}
	st.seen = now
	if seq <= st.seq {
		n.stats.dups.Add(1)
		return
	}
	st.seq = seq
	n.stats.received(len(m.Data), now.Sub(time.Unix(0, ts)))
	if h := n.handler.load(); h != nil {
		h(Message{Channel: channel, Data: m.Data, Origin: key.origin, ID: m.Header.Get(HeaderID), Seq: seq0})
	}
}

// envelope numbers msg as this node's next message and sets its
// HeaderEnvelope. pubMu must be held until msg is sent.
func (n *NATS) envelope(msg *nats.Msg) {
	env := make([]byte, 0, len(n.epoch)+len(n.id)+44)
	env = append(env, n.epoch...)
	env = append(env, ' ')
	n.seq++
	env = strconv.AppendUint(env, n.seq, 10)
	env = append(env, ' ')
	env = strconv.AppendInt(env, time.Now().UnixNano(), 10)
	env = append(env, ' ')
	env = append(env, n.id...)
	msg.Header[HeaderEnvelope] = []string{string(env)}
}

// parseEnvelope splits a HeaderEnvelope value.
func parseEnvelope(v string) (key originKey, seq uint64, ts int64, err error) {
	f := strings.SplitN(v, " ", 4)
	if len(f) != 4 || f[0] == "" || f[3] == "" {
		return key, 0, 0, fmt.Errorf("backbone: missing or malformed %s header %q", HeaderEnvelope, v)
	}
	if seq, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return key, 0, 0, fmt.Errorf("backbone: bad sequence in %s header %q", HeaderEnvelope, v)
	}
	if ts, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return key, 0, 0, fmt.Errorf("backbone: bad time in %s header %q", HeaderEnvelope, v)
	}
	return originKey{origin: f[3], epoch: f[0]}, seq, ts, nil
}

// validNodeID checks that a node ID can travel in a header and a subject token.
func validNodeID(id string) error {
	if len(id) > 128 {
		return fmt.Errorf("backbone: node ID %q is longer than 128 bytes", id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("backbone: node ID %q contains a control character", id)
		}
	}
	return nil
}

// HandleRequests installs the handler for requests addressed to this node.
func (n *NATS) HandleRequests(h RequestHandler) {
	n.mu.Lock()
	n.reqH = h
	n.mu.Unlock()
}

// serveRequest runs on the request subscription's goroutine; it starts one
// goroutine per request, since a handler may hold a request for long (a
// forwarded /meta/connect).
func (n *NATS) serveRequest(m *nats.Msg) {
	if id := m.Header.Get(HeaderCancel); id != "" {
		n.mu.Lock()
		cancel := n.inflight[id]
		n.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return
	}
	ctx, cancel := context.WithCancel(n.reqCtx)
	if d, err := strconv.ParseInt(m.Header.Get(HeaderDeadline), 10, 64); err == nil {
		cancel()
		ctx, cancel = context.WithDeadline(n.reqCtx, time.Unix(0, d))
	}
	id := m.Header.Get(HeaderRequestID)
	n.mu.Lock()
	h := n.reqH
	if n.closed {
		n.mu.Unlock()
		cancel()
		return
	}
	if id != "" {
		n.inflight[id] = cancel
	}
	n.reqs.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.reqs.Done()
		defer func() {
			cancel()
			if id != "" {
				n.mu.Lock()
				delete(n.inflight, id)
				n.mu.Unlock()
			}
		}()
		reply := &nats.Msg{Header: nats.Header{}}
		reply.Header.Set(HeaderNode, n.id)
		if h == nil {
			reply.Header.Set(HeaderError, "node handles no requests")
		} else {
			b, err := callHandler(ctx, h, m.Data)
			switch {
			case err != nil:
				reply.Header.Set(HeaderError, err.Error())
			case b == nil && m.Subject == n.askSubj:
				return // nothing to say to an Ask
			default:
				reply.Data = b
			}
		}
		if err := m.RespondMsg(reply); err != nil {
			n.log.Warn("cannot reply to a node request", "err", err)
		}
	}()
}

func callHandler(ctx context.Context, h RequestHandler, data []byte) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("%w: %v", errHandlerPanic, p)
		}
	}()
	return h(ctx, data)
}

// Request sends data to node and waits for its reply or ctx's end; when ctx ends
// first, the node is told to cancel the handler's context. It returns
// ErrNoNode when no node of the cluster answers to that ID; an error the remote
// handler returned comes back as an error with its text.
func (n *NATS) Request(ctx context.Context, node string, data []byte) ([]byte, error) {
	n.mu.Lock()
	closed, h := n.closed, n.reqH
	n.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if node == n.id { // NoEcho hides our own subscription from us
		if h == nil {
			return nil, fmt.Errorf("%w: %q", ErrNoNode, node)
		}
		return callHandler(ctx, h, data)
	}
	if validNodeID(node) != nil {
		return nil, fmt.Errorf("%w: %.64q", ErrNoNode, node)
	}
	subject := n.ndPrefix + EncodeToken(node)
	id := n.epoch + "-" + strconv.FormatUint(n.reqSeq.Add(1), 10)
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(HeaderRequestID, id)
	if d, ok := ctx.Deadline(); ok {
		msg.Header.Set(HeaderDeadline, strconv.FormatInt(d.UnixNano(), 10))
	}
	reply, err := n.nc.RequestMsgWithContext(ctx, msg)
	if err != nil && ctx.Err() != nil {
		// Tell the node to stop serving a request nobody waits for (best effort).
		c := &nats.Msg{Subject: subject, Header: nats.Header{}}
		c.Header.Set(HeaderCancel, id)
		_ = n.nc.PublishMsg(c)
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("%w: %q", ErrNoNode, node)
	case errors.Is(err, nats.ErrConnectionClosed):
		return nil, ErrClosed
	case err != nil:
		return nil, fmt.Errorf("backbone: request to node %s: %w", node, err)
	}
	if e := reply.Header.Get(HeaderError); e != "" {
		if e == "node handles no requests" {
			return nil, fmt.Errorf("%w: %q handles no requests", ErrNoNode, node)
		}
		return nil, fmt.Errorf("backbone: node %s: %s", node, e)
	}
	return reply.Data, nil
}

// workQueue is the queue group of the nodes that take work (RequestAny).
const workQueue = "work"

// RequestAny sends data to one other node that takes work: NATS picks one
// member of the queue group at random.
func (n *NATS) RequestAny(ctx context.Context, data []byte) (string, []byte, error) {
	return n.clusterRequest(ctx, n.anySubj, data)
}

// Ask sends data to every node and returns the first reply.
func (n *NATS) Ask(ctx context.Context, data []byte) (string, []byte, error) {
	return n.clusterRequest(ctx, n.askSubj, data)
}

func (n *NATS) clusterRequest(ctx context.Context, subject string, data []byte) (string, []byte, error) {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return "", nil, ErrClosed
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if d, ok := ctx.Deadline(); ok {
		msg.Header.Set(HeaderDeadline, strconv.FormatInt(d.UnixNano(), 10))
	}
	reply, err := n.nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return "", nil, fmt.Errorf("%w: nobody on %s", ErrNoNode, subject)
	case errors.Is(err, nats.ErrConnectionClosed):
		return "", nil, ErrClosed
	case err != nil && ctx.Err() != nil:
		return "", nil, fmt.Errorf("%w: no answer on %s: %w", ErrNoNode, subject, err)
	case err != nil:
		return "", nil, fmt.Errorf("backbone: request on %s: %w", subject, err)
	}
	node := reply.Header.Get(HeaderNode)
	if e := reply.Header.Get(HeaderError); e != "" {
		return node, nil, fmt.Errorf("backbone: node %s: %s", node, e)
	}
	return node, reply.Data, nil
}

// TakeWork joins (on) or leaves the queue group RequestAny picks from; leaving
// waits until the server has processed it, so no new work arrives after.
func (n *NATS) TakeWork(on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	switch {
	case on && n.anySub == nil:
		sub, err := n.nc.QueueSubscribe(n.anySubj, workQueue, n.serveRequest)
		if err != nil {
			return fmt.Errorf("backbone: join the work queue: %w", err)
		}
		n.anySub = sub
	case !on && n.anySub != nil:
		if err := n.anySub.Unsubscribe(); err != nil {
			return fmt.Errorf("backbone: leave the work queue: %w", err)
		}
		n.anySub = nil
	default:
		return nil
	}
	if n.nc.IsConnected() {
		if err := n.nc.FlushTimeout(syncTimeout); err != nil {
			return fmt.Errorf("backbone: work queue change: %w", err)
		}
	}
	return nil
}

// Healthy reports an error while the NATS connection is not established.
func (n *NATS) Healthy() error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if st := n.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("backbone: NATS is %s", st)
	}
	return nil
}

// Alive reports an error once the NATS client has closed the connection on
// its own: it will not reconnect. A backbone closed by Close is not dead.
func (n *NATS) Alive() error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed || !n.nc.IsClosed() {
		return nil
	}
	if err := n.nc.LastError(); err != nil {
		return fmt.Errorf("backbone: the NATS connection was closed for good: %w", err)
	}
	return errors.New("backbone: the NATS connection was closed for good")
}

// Stats returns the node's traffic counters.
func (n *NATS) Stats() Stats {
	s := n.stats.snapshot()
	n.mu.Lock()
	s.Dropped += n.dropped
	for _, sub := range n.subs {
		if d, err := sub.sub.Dropped(); err == nil {
			s.Dropped += uint64(d)
		}
	}
	n.mu.Unlock()
	return s
}

// flush waits until the server has processed everything sent so far (tests use
// it to know a subscription change is in effect).
func (n *NATS) flush() error { return n.nc.FlushTimeout(10 * time.Second) }

// Close closes the connection, cancels the requests being served and waits for
// the delivery goroutine and request handlers to return. It must not be called
// from the Handler or a RequestHandler.
func (n *NATS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	n.closed = true
	n.subs = nil
	n.mu.Unlock()
	close(n.quit)
	// Withdraw from node requests first, and wait for the server to have processed
	// that, so a request sent after Close returns finds no responder at once.
	_ = n.askSub.Unsubscribe()
	if n.anySub != nil {
		_ = n.anySub.Unsubscribe()
	}
	if err := n.reqSub.Unsubscribe(); err == nil && n.nc.IsConnected() {
		_ = n.nc.FlushTimeout(time.Second) // best effort
	}
	n.reqStop()
	n.reqs.Wait() // replies go out before the connection closes
	n.nc.Close()
	<-n.done
	return nil
}
