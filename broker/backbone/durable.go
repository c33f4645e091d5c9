package backbone

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cometd-operator/cometd-operator/broker/config"
)

// Durable sessions on NATS JetStream.
//
// With durability on, a node publishes every broadcast message into one stream
// per cluster, on "<prefix>.<cluster>.js.<segments…>", and waits for the
// stream's acknowledgement, which gives the message its stream sequence. The
// stream republishes each stored message, in stream order, on the channel
// subject "<prefix>.<cluster>.ch.<segments…>" the nodes subscribe to, with the
// sequence in a header, so that every node knows the sequence of every message
// it delivers. A session's record (its subscriptions, what it remembers of its
// client, and the sequence below which it needs nothing more) lives in a
// key-value bucket, written with compare-and-set so that two nodes never both
// own a session. A node that adopts a session whose node died reads the record
// and replays, from the stream, the messages of the session's subscriptions
// after its position.

// HeaderSequence is the header a stream's republished message carries its
// stream sequence in (set by the NATS server).
const HeaderSequence = "Nats-Sequence"

// Durability errors.
var (
	// ErrRecordNotFound: no session record under that clientId.
	ErrRecordNotFound = errors.New("backbone: no durable session record")
	// ErrRecordConflict: the record changed since it was read (another node
	// owns the session now), or exists when it was to be created.
	ErrRecordConflict = errors.New("backbone: the durable session record changed meanwhile")
	// ErrGap: messages a session had not received are gone from the stream
	// (older than its maxAge, or pushed out by its maxBytes).
	ErrGap = errors.New("backbone: messages after the session's position are gone from the stream")
	// ErrNotStored: the stream refused a message (full: maxBytes).
	ErrNotStored = errors.New("backbone: the durable stream did not store the message")
)

// DurableConfig sizes the stream and the record bucket.
type DurableConfig struct {
	// Settings is the broker configuration's durability block.
	Settings config.Durability
	// RecordTTL is how long a record lives without being written; owners
	// rewrite live sessions' records well within it. 0 means DefaultRecordTTL.
	RecordTTL time.Duration
}

// DefaultRecordTTL is how long a session record lives without a write.
const DefaultRecordTTL = 30 * time.Minute

// maxFilterSubjects bounds the filter subjects of one replay; a session with
// more subscriptions replays the whole stream range and filters here.
const maxFilterSubjects = 32

// Durable is the JetStream side of a NATS backbone.
type Durable struct {
	n        *NATS
	js       jetstream.JetStream
	stream   jetstream.Stream
	kv       jetstream.KeyValue
	name     string
	maxValue int
	last     atomic.Uint64 // the highest stream sequence this node saw or published
}

// EnableDurability creates (or updates) the cluster's stream and record
// bucket and makes the backbone read stream sequences. Every node of a cluster
// must use the same settings: the last to start wins an update.
func (n *NATS) EnableDurability(ctx context.Context, cfg DurableConfig) (*Durable, error) {
	s := cfg.Settings
	if err := s.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, fmt.Errorf("backbone: JetStream: %w", err)
	}
	storage := jetstream.MemoryStorage
	if s.StorageOrDefault() == config.DurabilityFile {
		storage = jetstream.FileStorage
	}
	name := "cometd-" + strings.ReplaceAll(strings.TrimSuffix(n.jsPrefix, ".js."), ".", "-")
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "Bayeux messages of durable sessions",
		Subjects:    []string{n.jsPrefix + ">"},
		Storage:     storage,
		Replicas:    s.ReplicasOrDefault(),
		MaxAge:      s.MaxAge(),
		MaxBytes:    s.MaxBytesOrDefault(),
		Discard:     jetstream.DiscardNew,
		Duplicates:  DuplicateWindow,
		RePublish:   &jetstream.RePublish{Source: n.jsPrefix + ">", Destination: n.chPrefix + ">"},
	})
	if err != nil {
		return nil, fmt.Errorf("backbone: durable stream %s: %w", name, err)
	}
	ttl := cfg.RecordTTL
	if ttl <= 0 {
		ttl = DefaultRecordTTL
	}
	maxValue := int(min(s.MaxSessionBytesOrDefault(), 1<<20))
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       name + "-sessions",
		Description:  "durable Bayeux session records",
		History:      1,
		TTL:          ttl,
		Storage:      storage,
		Replicas:     s.ReplicasOrDefault(),
		MaxValueSize: int32(maxValue),
		MaxBytes:     config.RecordBytes(s.MaxBytesOrDefault()),
	})
	if err != nil {
		return nil, fmt.Errorf("backbone: durable session bucket %s-sessions: %w", name, err)
	}
	d := &Durable{n: n, js: js, stream: stream, kv: kv, name: name, maxValue: maxValue}
	n.durable.Store(d)
	return d, nil
}

// Name is the stream's name (the record bucket is Name()+"-sessions").
func (d *Durable) Name() string { return d.name }

// DuplicateWindow is how long the stream remembers a publish's dedup key.
const DuplicateWindow = 2 * time.Minute

// ErrDuplicate: the stream already holds a message with the publish's dedup
// key (a publish processed again after its first node died before
// answering): it was stored and delivered the first time.
var ErrDuplicate = errors.New("backbone: the durable stream already holds this publish")

// Publish stores data, published on channel by this node with id, in the
// stream and returns its sequence once the stream has it. The stream
// republishes it to the nodes with interest (this node drops its own copy).
// A non-empty dedup key makes the stream keep one copy of the publishes
// with that key within DuplicateWindow: a second one fails with
// ErrDuplicate.
func (d *Durable) Publish(ctx context.Context, channel string, data []byte, id, dedup string) (uint64, error) {
	n := d.n
	if err := validateChannel(channel); err != nil {
		return 0, err
	}
	if len(id) > MaxMessageIDLength {
		return 0, fmt.Errorf("backbone: message ID longer than %d bytes", MaxMessageIDLength)
	}
	subject := channelSubject(n.jsPrefix, channel)
	if len(subject) > MaxSubjectLength {
		return 0, fmt.Errorf("%w: channel %.64q…", ErrSubjectTooLong, channel)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 2)}
	if id != "" {
		msg.Header[HeaderID] = []string{id}
	}
	if dedup != "" {
		msg.Header[jetstream.MsgIDHeader] = []string{dedup}
	}
	for attempt := 1; ; attempt++ {
		seq, err := d.publishOnce(ctx, msg, channel, len(data))
		if !transient(err) || attempt == maxAttempts {
			return seq, err
		}
		// JetStream answers nothing for a moment while it elects a leader:
		// again, with a new envelope sequence (the dedup key keeps one copy).
		if err := backoff(ctx, attempt); err != nil {
			return 0, fmt.Errorf("backbone: durable publish to %s: %w", channel, err)
		}
	}
}

// publishOnce sends msg to the stream and waits for its acknowledgement.
func (d *Durable) publishOnce(ctx context.Context, msg *nats.Msg, channel string, size int) (uint64, error) {
	n := d.n
	// The envelope's sequence orders the node's messages as the stream
	// stores them, so the asynchronous publish is sent under the same lock.
	n.pubMu.Lock()
	n.envelope(msg)
	fut, err := d.js.PublishMsgAsync(msg)
	n.pubMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("backbone: durable publish to %s: %w", channel, err)
	}
	select {
	case ack := <-fut.Ok():
		if ack.Duplicate {
			return ack.Sequence, ErrDuplicate
		}
		n.stats.published(size)
		d.saw(ack.Sequence)
		return ack.Sequence, nil
	case err := <-fut.Err():
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			return 0, fmt.Errorf("%w: %w", ErrNotStored, err)
		}
		return 0, fmt.Errorf("backbone: durable publish to %s: %w", channel, err)
	case <-ctx.Done():
		return 0, fmt.Errorf("backbone: durable publish to %s: %w", channel, ctx.Err())
	}
}

// maxAttempts bounds the tries of a JetStream operation that failed for a
// passing reason.
const maxAttempts = 6

// transient reports whether err may pass by itself: JetStream had no
// responder (a leader election, a server restarting).
func transient(err error) bool {
	// Only "no responders": nothing was applied, so even a write may be
	// sent again (a timeout may hide a write that was applied).
	return err != nil && (errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse))
}

// backoff waits before attempt+1: 100 ms, doubling, at most 1.6 s; it
// fails when ctx ends first.
func backoff(ctx context.Context, attempt int) error {
	select {
	case <-time.After(min(100*time.Millisecond<<(attempt-1), 1600*time.Millisecond)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry runs op until it succeeds, fails for a reason that does not pass,
// or maxAttempts tries are spent.
func retry[T any](ctx context.Context, op func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := op()
		if !transient(err) || attempt == maxAttempts {
			return v, err
		}
		if berr := backoff(ctx, attempt); berr != nil {
			return v, err
		}
	}
}

// saw raises the highest sequence known to this node to seq.
func (d *Durable) saw(seq uint64) {
	for {
		cur := d.last.Load()
		if seq <= cur || d.last.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// LastSeen is the highest stream sequence this node received or published.
func (d *Durable) LastSeen() uint64 { return d.last.Load() }

func recordKey(id string) string { return EncodeToken(id) }

// GetRecord reads the record of session id and its revision.
func (d *Durable) GetRecord(ctx context.Context, id string) ([]byte, uint64, error) {
	e, err := retry(ctx, func() (jetstream.KeyValueEntry, error) { return d.kv.Get(ctx, recordKey(id)) })
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, ErrRecordNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("backbone: read durable session %s: %w", id, err)
	}
	return e.Value(), e.Revision(), nil
}

// PutRecord writes the record of session id if its revision is still rev (0:
// if there is none) and returns the new revision; ErrRecordConflict otherwise.
func (d *Durable) PutRecord(ctx context.Context, id string, data []byte, rev uint64) (uint64, error) {
	if len(data) > d.maxValue {
		return 0, fmt.Errorf("backbone: durable session %s: record of %d bytes exceeds maxSessionBytes (%d)", id, len(data), d.maxValue)
	}
	nrev, err := retry(ctx, func() (uint64, error) {
		if rev == 0 {
			return d.kv.Create(ctx, recordKey(id), data)
		}
		return d.kv.Update(ctx, recordKey(id), data, rev)
	})
	if conflict(err) {
		return 0, ErrRecordConflict
	}
	if err != nil {
		return 0, fmt.Errorf("backbone: write durable session %s: %w", id, err)
	}
	return nrev, nil
}

// DeleteRecord deletes the record of session id if its revision is still rev.
func (d *Durable) DeleteRecord(ctx context.Context, id string, rev uint64) error {
	_, err := retry(ctx, func() (struct{}, error) {
		return struct{}{}, d.kv.Delete(ctx, recordKey(id), jetstream.LastRevision(rev))
	})
	if conflict(err) {
		return ErrRecordConflict
	}
	if err != nil {
		return fmt.Errorf("backbone: delete durable session %s: %w", id, err)
	}
	return nil
}

func conflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Replay returns the stored messages on channels matching patterns with
// sequences from from on, oldest first, and the stream's last sequence when
// it started. It returns ErrGap when some of the messages after from are gone
// from the stream.
func (d *Durable) Replay(ctx context.Context, patterns []string, from uint64) ([]Message, uint64, error) {
	var last uint64
	msgs, err := retry(ctx, func() ([]Message, error) {
		var msgs []Message
		var err error
		msgs, last, err = d.replayOnce(ctx, patterns, from)
		return msgs, err
	})
	return msgs, last, err
}

// replayOnce is one try of Replay.
func (d *Durable) replayOnce(ctx context.Context, patterns []string, from uint64) ([]Message, uint64, error) {
	if from == 0 {
		from = 1
	}
	info, err := d.stream.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("backbone: durable stream info: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if last < from || len(patterns) == 0 {
		return nil, last, nil
	}
	if from < first {
		return nil, last, fmt.Errorf("%w: needed from %d, the stream holds %d to %d", ErrGap, from, first, last)
	}
	subjects := filterSubjects(d.n.jsPrefix, patterns)
	var match func(string) bool
	if len(subjects) > maxFilterSubjects {
		subjects = []string{d.n.jsPrefix + ">"}
		match = matcher(patterns)
	}
	cons, err := d.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return nil, last, fmt.Errorf("backbone: durable replay: %w", err)
	}
	var out []Message
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, last, fmt.Errorf("backbone: durable replay: %w", err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			seq := md.Sequence.Stream
			if seq > last {
				done = true
				continue
			}
			if md.NumPending == 0 {
				done = true
			}
			channel, err := subjectChannel(d.n.jsPrefix, m.Subject())
			if err != nil || match != nil && !match(channel) {
				continue
			}
			key, _, _, err := parseEnvelope(m.Headers().Get(HeaderEnvelope))
			if err != nil {
				continue
			}
			out = append(out, Message{Channel: channel, Data: m.Data(), Origin: key.origin, ID: m.Headers().Get(HeaderID), Seq: seq})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, last, fmt.Errorf("backbone: durable replay: %w", err)
		}
		if done || got == 0 {
			return out, last, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, last, err
		}
	}
}

// filterSubjects maps Bayeux patterns to the stream's subjects, leaving out
// any that another one covers (JetStream refuses overlapping filters).
func filterSubjects(prefix string, patterns []string) []string {
	subs := make([]string, 0, len(patterns))
	for _, p := range patterns {
		subs = append(subs, channelSubject(prefix, p))
	}
	var out []string
	for i, s := range subs {
		covered := false
		for j, o := range subs {
			if i != j && covers(o, s) && (!covers(s, o) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// covers reports whether NATS subject pattern general matches every subject
// pattern specific matches.
func covers(general, specific string) bool {
	g, s := strings.Split(general, "."), strings.Split(specific, ".")
	for i, t := range g {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		switch {
		case t == "*":
			if s[i] == ">" {
				return false
			}
		case t != s[i]:
			return false
		}
	}
	return len(s) == len(g)
}

// matcher reports whether a channel matches one of the Bayeux patterns.
func matcher(patterns []string) func(string) bool {
	return func(channel string) bool {
		cs := strings.Split(strings.TrimPrefix(channel, "/"), "/")
		for _, p := range patterns {
			ps := strings.Split(strings.TrimPrefix(p, "/"), "/")
			if bayeuxMatch(ps, cs) {
				return true
			}
		}
		return false
	}
}

func bayeuxMatch(p, c []string) bool {
	for i, t := range p {
		if t == "**" {
			return len(c) > i
		}
		if i >= len(c) || t != "*" && t != c[i] {
			return false
		}
	}
	return len(p) == len(c)
}

// receivedSeq reads the stream sequence of a republished message (0 for a
// message that did not come through the stream).
func receivedSeq(m *nats.Msg) uint64 {
	v := m.Header.Get(HeaderSequence)
	if v == "" {
		return 0
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return seq
}
