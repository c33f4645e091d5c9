package client

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// fastDecodeBatch decodes a JSON array of message objects without
// reflection for the hot fields (channel, id, data, successful, ...). It
// reports false for anything unusual, and the caller then falls back to
// encoding/json, which also produces the error message; so it never accepts
// input that encoding/json rejects, and decodes the same values (checked by
// FuzzFastDecode). Data is a sub-slice of b: b must not be reused.
func fastDecodeBatch(b []byte) ([]*Message, bool) {
	s := scanner{b: b}
	s.ws()
	if !s.eat('[') {
		return nil, false
	}
	msgs := make([]*Message, 0, 4)
	s.ws()
	if s.eat(']') {
		s.ws()
		return msgs, s.i == len(s.b)
	}
	for {
		s.ws()
		m, ok := s.message()
		if !ok {
			return nil, false
		}
		msgs = append(msgs, m)
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat(']') {
			return nil, false
		}
		s.ws()
		return msgs, s.i == len(s.b)
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// str parses a JSON string.
func (s *scanner) str() (string, bool) {
	if !s.eat('"') {
		return "", false
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return "", false // encoding/json would substitute U+FFFD
			}
			return string(v), true
		case c == '\\':
			return s.escapedStr(start - 1)
		case c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
	return "", false
}

// escapedStr finishes a string holding escapes; quote is the index of its
// opening quote. Escapes are rare on the wire, so encoding/json decodes it.
func (s *scanner) escapedStr(quote int) (string, bool) {
	s.i = quote
	if !s.skip() {
		return "", false
	}
	var v string
	if json.Unmarshal(s.b[quote:s.i], &v) != nil {
		return "", false
	}
	return v, true
}

// skip validates any JSON value and moves past it.
func (s *scanner) skip() bool {
	end, err := bayeux.SkipValue(s.b, s.i)
	if err != nil {
		return false
	}
	s.i = end
	return true
}

// raw validates a value and returns its bytes.
func (s *scanner) raw() ([]byte, bool) {
	s.ws()
	start := s.i
	if !s.skip() {
		return nil, false
	}
	return s.b[start:s.i], true
}

// knownKeys are the JSON names of Message's fields. encoding/json matches
// keys case-insensitively; a key that differs from these only by case is
// left to it.
var knownKeys = []string{"channel", "id", "clientId", "data", "successful", "error", "advice", "ext",
	"subscription", "version", "minimumVersion", "supportedConnectionTypes", "connectionType"}

func (s *scanner) message() (*Message, bool) {
	if !s.eat('{') {
		return nil, false
	}
	m := &Message{}
	s.ws()
	if s.eat('}') {
		return m, true
	}
	for {
		s.ws()
		key, ok := s.str()
		if !ok {
			return nil, false
		}
		s.ws()
		if !s.eat(':') {
			return nil, false
		}
		s.ws()
		if s.lit("null") {
			// encoding/json: null leaves plain fields alone, sets pointers,
			// maps and slices to nil, and hands RawMessage the literal.
			switch key {
			case "data":
				m.Data = json.RawMessage("null")
			case "successful":
				m.Successful = nil
			case "advice":
				m.Advice = nil
			case "ext":
				m.Ext = nil
			case "subscription":
				m.Subscription = nil
			case "supportedConnectionTypes":
				m.SupportedConnectionTypes = nil
			default:
				if foldsTo(key, knownKeys) {
					return nil, false
				}
			}
		} else {
			var f *string
			switch key {
			case "channel":
				f = &m.Channel
			case "id":
				f = &m.ID
			case "clientId":
				f = &m.ClientID
			case "error":
				f = &m.Error
			case "version":
				f = &m.Version
			case "minimumVersion":
				f = &m.MinimumVersion
			case "connectionType":
				f = &m.ConnectionType
			case "data":
				if m.Data, ok = s.raw(); !ok {
					return nil, false
				}
			case "successful":
				var v bool
				switch {
				case s.lit("true"):
					v = true
				case s.lit("false"):
				default:
					return nil, false
				}
				m.Successful = &v
			case "advice":
				if m.Advice == nil {
					m.Advice = new(Advice)
				}
				if !s.advice(m.Advice) {
					return nil, false
				}
			case "ext", "subscription", "supportedConnectionTypes":
				r, ok := s.raw()
				if !ok {
					return nil, false
				}
				var err error
				switch key {
				case "ext":
					err = json.Unmarshal(r, &m.Ext)
				case "subscription":
					err = json.Unmarshal(r, &m.Subscription)
				default:
					err = json.Unmarshal(r, &m.SupportedConnectionTypes)
				}
				if err != nil {
					return nil, false
				}
			default:
				if foldsTo(key, knownKeys) {
					return nil, false
				}
				if !s.skip() {
					return nil, false
				}
			}
			if f != nil {
				if *f, ok = s.str(); !ok {
					return nil, false
				}
			}
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			return nil, false
		}
		return m, true
	}
}

var adviceKeys = []string{"reconnect", "interval", "timeout"}

// foldsTo reports whether key is one of keys but for case (an exact match was
// handled before): the fast path leaves such a key to encoding/json.
func foldsTo(key string, keys []string) bool {
	for _, k := range keys {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// advice decodes an advice object into a (merging, like encoding/json).
func (s *scanner) advice(a *Advice) bool {
	if !s.eat('{') {
		return false
	}
	s.ws()
	if s.eat('}') {
		return true
	}
	for {
		s.ws()
		key, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if !s.eat(':') {
			return false
		}
		s.ws()
		null := s.lit("null")
		switch key {
		case "reconnect":
			if !null {
				if a.Reconnect, ok = s.str(); !ok {
					return false
				}
			}
		case "interval", "timeout":
			p := &a.Interval
			if key == "timeout" {
				p = &a.Timeout
			}
			if null {
				*p = nil
				break
			}
			n, ok := s.int64()
			if !ok {
				return false
			}
			if *p == nil {
				*p = new(int64)
			}
			**p = n
		default:
			if foldsTo(key, adviceKeys) {
				return false
			}
			if !null && !s.skip() {
				return false
			}
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

// int64 parses an integer literal (no fraction or exponent, as encoding/json
// requires for an int64; ParseInt refuses any other value).
func (s *scanner) int64() (int64, bool) {
	start := s.i
	if !s.skip() {
		return 0, false
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	return n, err == nil
}
