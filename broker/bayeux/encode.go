package bayeux

import (
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the JSON encoding of m to dst.
func (m *Mutable) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	first := true
	key := func(k string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
	}
	if m.ID != "" {
		key("id")
		dst = AppendString(dst, m.ID)
	}
	key("channel")
	dst = AppendString(dst, m.Channel)
	if m.ClientID != "" {
		key("clientId")
		dst = AppendString(dst, m.ClientID)
	}
	if m.Successful != Unset {
		key("successful")
		dst = strconv.AppendBool(dst, m.Successful == True)
	}
	if m.AuthSuccessful != Unset {
		key("authSuccessful")
		dst = strconv.AppendBool(dst, m.AuthSuccessful == True)
	}
	if m.Error != "" {
		key("error")
		dst = AppendString(dst, m.Error)
	}
	if m.Version != "" {
		key("version")
		dst = AppendString(dst, m.Version)
	}
	if m.MinimumVersion != "" {
		key("minimumVersion")
		dst = AppendString(dst, m.MinimumVersion)
	}
	if m.SupportedConnectionTypes != nil {
		key("supportedConnectionTypes")
		dst = appendList(dst, m.SupportedConnectionTypes)
	}
	if m.ConnectionType != "" {
		key("connectionType")
		dst = AppendString(dst, m.ConnectionType)
	}
	if m.Subscription != nil {
		key("subscription")
		if m.SubscriptionList || len(m.Subscription) != 1 {
			dst = appendList(dst, m.Subscription)
		} else {
			dst = AppendString(dst, m.Subscription[0])
		}
	}
	if m.Timestamp != "" {
		key("timestamp")
		dst = AppendString(dst, m.Timestamp)
	}
	if m.Advice != nil {
		key("advice")
		dst = m.Advice.AppendJSON(dst)
	}
	if m.Data != nil {
		key("data")
		dst = append(dst, m.Data...)
	}
	if m.Ext != nil {
		key("ext")
		dst = append(dst, m.Ext...)
	}
	return append(dst, '}')
}

// MarshalJSON implements json.Marshaler.
func (m *Mutable) MarshalJSON() ([]byte, error) { return m.AppendJSON(nil), nil }

// AppendJSON appends the JSON encoding of a to dst, omitting absent fields.
func (a *Advice) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	sep := false
	comma := func() {
		if sep {
			dst = append(dst, ',')
		}
		sep = true
	}
	if a.Reconnect != "" {
		comma()
		dst = append(dst, `"reconnect":`...)
		dst = AppendString(dst, a.Reconnect)
	}
	if a.Interval >= 0 {
		comma()
		dst = append(dst, `"interval":`...)
		dst = strconv.AppendInt(dst, a.Interval, 10)
	}
	if a.Timeout >= 0 {
		comma()
		dst = append(dst, `"timeout":`...)
		dst = strconv.AppendInt(dst, a.Timeout, 10)
	}
	if a.MaxInterval >= 0 {
		comma()
		dst = append(dst, `"maxInterval":`...)
		dst = strconv.AppendInt(dst, a.MaxInterval, 10)
	}
	if a.MultipleClients {
		comma()
		dst = append(dst, `"multiple-clients":true`...)
	}
	return append(dst, '}')
}

func appendList(dst []byte, l []string) []byte {
	dst = append(dst, '[')
	for i, s := range l {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, s)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal. Invalid UTF-8 becomes U+FFFD;
// U+2028 and U+2029 are escaped so the output is also a valid JavaScript literal
// (callback-polling replies are evaluated as script).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
