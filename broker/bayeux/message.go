// Package bayeux holds the Bayeux 1.0 wire types: messages, advice, channel names
// and their wildcard matching, the protocol's error strings, and a fast JSON codec
// for them. It knows nothing about HTTP, sessions or the backbone.
package bayeux

import "encoding/json"

// Meta and well-known channel names.
const (
	MetaHandshake   = "/meta/handshake"
	MetaConnect     = "/meta/connect"
	MetaSubscribe   = "/meta/subscribe"
	MetaUnsubscribe = "/meta/unsubscribe"
	MetaDisconnect  = "/meta/disconnect"
)

// Protocol versions this package speaks.
const (
	Version        = "1.0"
	MinimumVersion = "1.0"
)

// Reconnect advice values.
const (
	ReconnectRetry     = "retry"
	ReconnectHandshake = "handshake"
	ReconnectNone      = "none"
)

// Error strings sent in the "error" field of unsuccessful replies, in the Bayeux
// "code:args:message" form that the CometD server uses.
const (
	ErrSessionUnknown     = "402::session_unknown"
	ErrChannelMissing     = "400::channel_missing"
	ErrChannelInvalid     = "405::channel_invalid"
	ErrMessageUnknown     = "400::message_unknown"
	ErrSubscriptionMiss   = "400::subscription_missing"
	ErrVersionUnsupported = "400::version_unsupported"
	ErrConnTypeMismatch   = "406::connection_type_unsupported"
	ErrHandshakeDenied    = "403::handshake_denied"
	ErrCreateDenied       = "403::create_denied"
	ErrSubscribeDenied    = "403::subscribe_denied"
	ErrPublishDenied      = "403::publish_denied"
	ErrPublishMeta        = "403::publish_meta_denied"
	ErrDuplicateConnect   = "409::duplicate_connect"
	ErrServerDraining     = "503::server_draining"
	ErrSubscriptionLimit  = "403::subscription_limit"
)

// Tri is a JSON boolean that may be absent.
type Tri uint8

// Tri values.
const (
	Unset Tri = iota
	True
	False
)

// IsTrue reports whether t is present and true.
func (t Tri) IsTrue() bool { return t == True }

// Advice is the Bayeux advice object. Integer fields are milliseconds; a negative
// value means the field is absent (the decoder sets absent fields to -1).
type Advice struct {
	// Reconnect is "retry", "handshake", "none" or empty (absent).
	Reconnect string
	// Interval is the pause before the next connect, in ms; <0 means absent.
	Interval int64
	// Timeout is how long the server holds a connect, in ms; <0 means absent.
	Timeout int64
	// MaxInterval is how long the server keeps a session without a connect, in ms; <0 means absent.
	MaxInterval int64
	// MultipleClients tells a client that another session from its browser is polling.
	MultipleClients bool
}

// NewAdvice returns an Advice with every numeric field absent.
func NewAdvice() *Advice { return &Advice{Interval: -1, Timeout: -1, MaxInterval: -1} }

// Mutable is a Bayeux message whose fields may be changed. Only the fields the
// protocol defines are kept; unknown top-level fields are dropped by the decoder.
// Raw fields (Data, Ext) hold valid JSON and are re-emitted verbatim.
type Mutable struct {
	Channel                  string
	ID                       string
	ClientID                 string
	Data                     json.RawMessage
	Ext                      json.RawMessage
	Advice                   *Advice
	Successful               Tri
	Error                    string
	Subscription             []string
	SubscriptionList         bool // Subscription is (or came as) a JSON array
	Version                  string
	MinimumVersion           string
	SupportedConnectionTypes []string
	ConnectionType           string
	AuthSuccessful           Tri
	Timestamp                string
}

// Message is a read-only view of a Mutable. The zero Message is empty.
// Slices it returns are shared and must not be modified.
type Message struct{ m *Mutable }

// View returns the read-only view of m.
func (m *Mutable) View() Message { return Message{m} }

var emptyMutable Mutable

func (v Message) get() *Mutable {
	if v.m == nil {
		return &emptyMutable
	}
	return v.m
}

// Channel is the message's channel.
func (v Message) Channel() string { return v.get().Channel }

// ID is the message id ("" when absent).
func (v Message) ID() string { return v.get().ID }

// ClientID is the sender's (or recipient's, on replies) clientId.
func (v Message) ClientID() string { return v.get().ClientID }

// Data is the raw JSON data, nil when absent.
func (v Message) Data() json.RawMessage { return v.get().Data }

// Ext is the raw JSON ext object, nil when absent.
func (v Message) Ext() json.RawMessage { return v.get().Ext }

// Advice is the advice, nil when absent. It must not be modified.
func (v Message) Advice() *Advice { return v.get().Advice }

// Successful is the reply's successful field.
func (v Message) Successful() Tri { return v.get().Successful }

// Error is the reply's error string.
func (v Message) Error() string { return v.get().Error }

// Subscription lists the subscribe/unsubscribe channels.
func (v Message) Subscription() []string { return v.get().Subscription }

// ConnectionType is the connect message's connection type.
func (v Message) ConnectionType() string { return v.get().ConnectionType }

// IsMeta reports whether the message is on a /meta/ channel.
func (v Message) IsMeta() bool { return IsMeta(v.get().Channel) }

// Copy returns a deep enough copy of the message to change freely: slices are
// copied, raw JSON is shared (it is never modified in place).
func (v Message) Copy() *Mutable { return v.get().Clone() }

// Clone returns a copy of m that can be changed without affecting m.
func (m *Mutable) Clone() *Mutable {
	c := *m
	if m.Advice != nil {
		a := *m.Advice
		c.Advice = &a
	}
	c.Subscription = append([]string(nil), m.Subscription...)
	c.SupportedConnectionTypes = append([]string(nil), m.SupportedConnectionTypes...)
	return &c
}

// ExtField decodes ext[key] into v; it reports whether the key was present and
// decoded without error.
func (v Message) ExtField(key string, out any) bool {
	ext := v.get().Ext
	if len(ext) == 0 {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(ext, &m) != nil {
		return false
	}
	raw, ok := m[key]
	if !ok {
		return false
	}
	return json.Unmarshal(raw, out) == nil
}

// SetExtField sets ext[key] to the JSON encoding of value, keeping other keys.
func (m *Mutable) SetExtField(key string, value any) error {
	fields := map[string]json.RawMessage{}
	if len(m.Ext) > 0 {
		if err := json.Unmarshal(m.Ext, &fields); err != nil {
			fields = map[string]json.RawMessage{}
		}
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return err
	}
	fields[key] = raw
	out, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	m.Ext = out
	return nil
}
