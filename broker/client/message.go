package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Meta channels used by the protocol.
const (
	ChannelHandshake   = "/meta/handshake"
	ChannelConnect     = "/meta/connect"
	ChannelSubscribe   = "/meta/subscribe"
	ChannelUnsubscribe = "/meta/unsubscribe"
	ChannelDisconnect  = "/meta/disconnect"
)

// Reconnect advice values.
const (
	ReconnectRetry     = "retry"
	ReconnectHandshake = "handshake"
	ReconnectNone      = "none"
)

// Message is one Bayeux message as it travels on the wire. The client hands
// received messages to subscribers and extensions; a subscriber must not
// modify a message it receives (the same value is shared by every matching
// subscription).
type Message struct {
	Channel                  string          `json:"channel"`
	ID                       string          `json:"id,omitempty"`
	ClientID                 string          `json:"clientId,omitempty"`
	Data                     json.RawMessage `json:"data,omitempty"`
	Successful               *bool           `json:"successful,omitempty"`
	Error                    string          `json:"error,omitempty"`
	Advice                   *Advice         `json:"advice,omitempty"`
	Ext                      map[string]any  `json:"ext,omitempty"`
	Subscription             Subscriptions   `json:"subscription,omitempty"`
	Version                  string          `json:"version,omitempty"`
	MinimumVersion           string          `json:"minimumVersion,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	ConnectionType           string          `json:"connectionType,omitempty"`
}

// isReply reports whether m answers a request (a meta reply or a publish
// acknowledgement) rather than being an event to deliver to subscribers.
func (m *Message) isReply() bool {
	return m.Successful != nil || strings.HasPrefix(m.Channel, "/meta/")
}

// ok reports whether a reply says the request succeeded.
func (m *Message) ok() bool { return m.Successful != nil && *m.Successful }

// Advice is the server's reconnect advice. Nil pointer fields were absent.
type Advice struct {
	Reconnect string `json:"reconnect,omitempty"`
	Interval  *int64 `json:"interval,omitempty"` // milliseconds
	Timeout   *int64 `json:"timeout,omitempty"`  // milliseconds
}

// Subscriptions is the "subscription" field: one channel on the wire when it
// holds one element, an array otherwise. It decodes from either form.
type Subscriptions []string

// MarshalJSON encodes a single subscription as a string.
func (s Subscriptions) MarshalJSON() ([]byte, error) {
	if len(s) == 1 {
		return json.Marshal(s[0])
	}
	return json.Marshal([]string(s))
}

// UnmarshalJSON accepts a string or an array of strings.
func (s *Subscriptions) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = Subscriptions{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// Error is an unsuccessful reply from the server: a refused handshake,
// subscription or publish. Code and Args come from the Bayeux error string
// ("403:/foo:denied" gives Code 403, Args ["/foo"], Message "denied").
type Error struct {
	Channel string   // the channel of the request
	Code    int      // numeric code, 0 if the server gave none
	Args    []string // error arguments
	Message string   // human text; the whole error string if it did not parse
	Advice  *Advice  // advice carried by the reply, if any
}

func (e *Error) Error() string {
	if e.Code == 0 && e.Message == "" {
		return fmt.Sprintf("bayeux: %s refused by server (no error given)", e.Channel)
	}
	return fmt.Sprintf("bayeux: %s refused by server: %d:%s:%s", e.Channel, e.Code, strings.Join(e.Args, ","), e.Message)
}

// replyError turns an unsuccessful reply into an *Error.
func replyError(m *Message) *Error {
	e := &Error{Channel: m.Channel, Advice: m.Advice, Message: m.Error}
	parts := strings.SplitN(m.Error, ":", 3)
	if len(parts) == 3 {
		var code int
		if _, err := fmt.Sscanf(parts[0], "%d", &code); err == nil {
			e.Code = code
			if parts[1] != "" {
				e.Args = strings.Split(parts[1], ",")
			}
			e.Message = parts[2]
		}
	}
	return e
}

// ErrDisconnected is returned by calls made after Disconnect or after the
// server advised reconnect "none".
var ErrDisconnected = errors.New("bayeux: client is disconnected")

// ErrNotHandshaken is returned by calls that need a session before Handshake
// has succeeded.
var ErrNotHandshaken = errors.New("bayeux: client has not handshaken")

// decodeBatch decodes a response body: a JSON array of messages, or a single
// message object (tolerated for lenient servers).
func decodeBatch(body []byte) ([]*Message, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("bayeux: empty response from server")
	}
	switch body[0] {
	case '[':
		if msgs, ok := fastDecodeBatch(body); ok {
			return msgs, nil
		}
		var msgs []*Message
		if err := json.Unmarshal(body, &msgs); err != nil {
			return nil, fmt.Errorf("bayeux: invalid JSON from server: %w (body starts %q)", err, snippet(body))
		}
		for i, m := range msgs {
			if m == nil {
				return nil, fmt.Errorf("bayeux: message %d in server batch is null", i)
			}
		}
		return msgs, nil
	case '{':
		var m Message
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("bayeux: invalid JSON from server: %w (body starts %q)", err, snippet(body))
		}
		return []*Message{&m}, nil
	default:
		return nil, fmt.Errorf("bayeux: server response is not a JSON message batch (body starts %q)", snippet(body))
	}
}

func snippet(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
