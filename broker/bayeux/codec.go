package bayeux

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// SyntaxError reports malformed JSON at a byte offset.
type SyntaxError struct {
	Offset int
	Msg    string
}

// Error describes the syntax error.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("bayeux: malformed JSON at offset %d: %s", e.Offset, e.Msg)
}

// FieldError reports a well-formed JSON field with the wrong type.
type FieldError struct {
	Field string
	Want  string
}

// Error describes the type error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("bayeux: field %q must be %s", e.Field, e.Want)
}

// ErrEmptyBatch is returned for an empty message array.
var ErrEmptyBatch = errors.New("bayeux: empty message batch")

// maxDepth bounds nesting in raw values, so hostile input cannot exhaust the stack.
const maxDepth = 256

type decoder struct {
	b   []byte
	i   int
	buf []byte
}

func (d *decoder) errf(format string, a ...any) error {
	return &SyntaxError{Offset: d.i, Msg: fmt.Sprintf(format, a...)}
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// DecodeBatch decodes a JSON array of messages or a single message object, as sent
// by long-polling, callback-polling and websocket clients. The input must be valid
// UTF-8. Returned messages do not alias b except through Data and Ext, which are
// copied, so b may be reused.
func DecodeBatch(b []byte) ([]*Mutable, error) {
	if !utf8.Valid(b) {
		return nil, &SyntaxError{Msg: "invalid UTF-8"}
	}
	d := decoder{b: b}
	d.ws()
	var out []*Mutable
	switch d.peek() {
	case '[':
		d.i++
		d.ws()
		if d.peek() == ']' {
			d.i++
			if err := d.end(); err != nil {
				return nil, err
			}
			return nil, ErrEmptyBatch
		}
		for {
			m, err := d.message()
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			d.ws()
			c := d.peek()
			if c == ',' {
				d.i++
				continue
			}
			if c == ']' {
				d.i++
				break
			}
			return nil, d.errf("expected ',' or ']' in message array")
		}
	case '{':
		m, err := d.message()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	default:
		return nil, d.errf("expected a message object or an array of them")
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// Decode decodes exactly one message object.
func Decode(b []byte) (*Mutable, error) {
	if !utf8.Valid(b) {
		return nil, &SyntaxError{Msg: "invalid UTF-8"}
	}
	d := decoder{b: b}
	d.ws()
	m, err := d.message()
	if err != nil {
		return nil, err
	}
	return m, d.end()
}

func (d *decoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return d.errf("trailing data after JSON value")
	}
	return nil
}

func (d *decoder) message() (*Mutable, error) {
	d.ws()
	if d.peek() != '{' {
		return nil, d.errf("expected '{'")
	}
	m := &Mutable{}
	if err := d.members("message object", func(key string) error { return d.field(m, key) }); err != nil {
		return nil, err
	}
	return m, nil
}

// members walks the members of the object whose '{' is at d.i, calling each
// with the reader positioned at the member's value; each must consume that
// value. what names the object in syntax errors.
func (d *decoder) members(what string, each func(key string) error) error {
	d.i++
	d.ws()
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		d.ws()
		key, err := d.str()
		if err != nil {
			return err
		}
		d.ws()
		if d.peek() != ':' {
			return d.errf("expected ':' after object key")
		}
		d.i++
		d.ws()
		if err := each(key); err != nil {
			return err
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.errf("expected ',' or '}' in %s", what)
		}
	}
}

func (d *decoder) field(m *Mutable, key string) error {
	var err error
	switch key {
	case "channel":
		m.Channel, err = d.strField(key)
	case "id":
		// Clients send string ids; tolerate numbers by keeping their text.
		if c := d.peek(); c == '-' || (c >= '0' && c <= '9') {
			start := d.i
			if err = d.skip(0); err == nil {
				m.ID = string(d.b[start:d.i])
			}
		} else {
			m.ID, err = d.strField(key)
		}
	case "clientId":
		m.ClientID, err = d.strField(key)
	case "data":
		m.Data, err = d.raw()
	case "ext":
		if d.peek() != '{' && !d.isNull() {
			return &FieldError{Field: key, Want: "an object"}
		}
		m.Ext, err = d.raw()
		if string(m.Ext) == "null" {
			m.Ext = nil
		}
	case "advice":
		m.Advice, err = d.advice()
	case "successful":
		m.Successful, err = d.tri(key)
	case "authSuccessful":
		m.AuthSuccessful, err = d.tri(key)
	case "error":
		m.Error, err = d.strField(key)
	case "subscription":
		m.Subscription, m.SubscriptionList, err = d.strOrList(key)
	case "version":
		m.Version, err = d.strField(key)
	case "minimumVersion":
		m.MinimumVersion, err = d.strField(key)
	case "supportedConnectionTypes":
		var list bool
		m.SupportedConnectionTypes, list, err = d.strOrList(key)
		if err == nil && !list && m.SupportedConnectionTypes != nil {
			return &FieldError{Field: key, Want: "an array of strings"}
		}
	case "connectionType":
		m.ConnectionType, err = d.strField(key)
	case "timestamp":
		m.Timestamp, err = d.strField(key)
	default:
		err = d.skip(0)
	}
	return err
}

func (d *decoder) isNull() bool {
	return len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null"
}

func (d *decoder) strField(key string) (string, error) {
	if d.isNull() {
		d.i += 4
		return "", nil
	}
	if d.peek() != '"' {
		return "", &FieldError{Field: key, Want: "a string"}
	}
	return d.str()
}

func (d *decoder) tri(key string) (Tri, error) {
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return True, nil
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return False, nil
	case d.isNull():
		d.i += 4
		return Unset, nil
	}
	return Unset, &FieldError{Field: key, Want: "a boolean"}
}

func (d *decoder) strOrList(key string) ([]string, bool, error) {
	switch d.peek() {
	case '"':
		s, err := d.str()
		return []string{s}, false, err
	case '[':
		d.i++
		out := []string{}
		d.ws()
		if d.peek() == ']' {
			d.i++
			return out, true, nil
		}
		for {
			d.ws()
			if d.peek() != '"' {
				return nil, true, &FieldError{Field: key, Want: "a string or an array of strings"}
			}
			s, err := d.str()
			if err != nil {
				return nil, true, err
			}
			out = append(out, s)
			d.ws()
			c := d.peek()
			if c == ',' {
				d.i++
				continue
			}
			if c == ']' {
				d.i++
				return out, true, nil
			}
			return nil, true, d.errf("expected ',' or ']'")
		}
	}
	if d.isNull() {
		d.i += 4
		return nil, false, nil
	}
	return nil, false, &FieldError{Field: key, Want: "a string or an array of strings"}
}

func (d *decoder) advice() (*Advice, error) {
	if d.isNull() {
		d.i += 4
		return nil, nil
	}
	if d.peek() != '{' {
		return nil, &FieldError{Field: "advice", Want: "an object"}
	}
	a := NewAdvice()
	err := d.members("advice", func(key string) (err error) {
		switch key {
		case "reconnect":
			a.Reconnect, err = d.strField("advice.reconnect")
		case "interval":
			a.Interval, err = d.intField("advice.interval")
		case "timeout":
			a.Timeout, err = d.intField("advice.timeout")
		case "maxInterval":
			a.MaxInterval, err = d.intField("advice.maxInterval")
		case "multiple-clients":
			var t Tri
			t, err = d.tri("advice.multiple-clients")
			a.MultipleClients = t == True
		default:
			err = d.skip(0)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (d *decoder) intField(key string) (int64, error) {
	c := d.peek()
	if c != '-' && (c < '0' || c > '9') {
		return 0, &FieldError{Field: key, Want: "a number"}
	}
	start := d.i
	if err := d.number(); err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
	if err != nil || f > 1<<53 || f < -(1<<53) {
		return 0, &FieldError{Field: key, Want: "a number of milliseconds"}
	}
	return int64(f), nil
}

// raw skips one value and returns a copy of its bytes.
func (d *decoder) raw() ([]byte, error) {
	start := d.i
	if err := d.skip(0); err != nil {
		return nil, err
	}
	return append([]byte(nil), d.b[start:d.i]...), nil
}

// SkipValue validates the JSON value at b[i:] (after any white space) and
// returns the offset just past it, or a *SyntaxError. It is the skipper
// DecodeBatch uses for values it keeps raw, shared with the other hand-written
// decoder (broker/client's). It does not check UTF-8; nesting deeper than 256
// levels is an error.
func SkipValue(b []byte, i int) (int, error) {
	d := decoder{b: b, i: i}
	if err := d.skip(0); err != nil {
		return i, err
	}
	return d.i, nil
}

// skip validates and skips one JSON value.
func (d *decoder) skip(depth int) error {
	if depth > maxDepth {
		return d.errf("nesting too deep")
	}
	d.ws()
	switch c := d.peek(); {
	case c == '"':
		return d.skipStr()
	case c == '{':
		d.i++
		d.ws()
		if d.peek() == '}' {
			d.i++
			return nil
		}
		for {
			d.ws()
			if d.peek() != '"' {
				return d.errf("expected object key")
			}
			if err := d.skipStr(); err != nil {
				return err
			}
			d.ws()
			if d.peek() != ':' {
				return d.errf("expected ':'")
			}
			d.i++
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			d.ws()
			switch d.peek() {
			case ',':
				d.i++
			case '}':
				d.i++
				return nil
			default:
				return d.errf("expected ',' or '}'")
			}
		}
	case c == '[':
		d.i++
		d.ws()
		if d.peek() == ']' {
			d.i++
			return nil
		}
		for {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			d.ws()
			switch d.peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return nil
			default:
				return d.errf("expected ',' or ']'")
			}
		}
	case c == 't':
		return d.lit("true")
	case c == 'f':
		return d.lit("false")
	case c == 'n':
		return d.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 0 && d.i >= len(d.b):
		return d.errf("unexpected end of input")
	}
	return d.errf("unexpected character %q", d.peek())
}

func (d *decoder) lit(s string) error {
	if len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return d.errf("invalid literal")
	}
	d.i += len(s)
	return nil
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func (d *decoder) number() error {
	i := d.i
	if i < len(d.b) && d.b[i] == '-' {
		i++
	}
	switch {
	case i < len(d.b) && d.b[i] == '0':
		i++
	case i < len(d.b) && d.b[i] >= '1' && d.b[i] <= '9':
		i = digits(d.b, i)
	default:
		return d.errf("invalid number")
	}
	if i < len(d.b) && d.b[i] == '.' {
		j := digits(d.b, i+1)
		if j == i+1 {
			return d.errf("invalid number fraction")
		}
		i = j
	}
	if i < len(d.b) && (d.b[i] == 'e' || d.b[i] == 'E') {
		i++
		if i < len(d.b) && (d.b[i] == '+' || d.b[i] == '-') {
			i++
		}
		j := digits(d.b, i)
		if j == i {
			return d.errf("invalid number exponent")
		}
		i = j
	}
	d.i = i
	return nil
}

func (d *decoder) skipStr() error {
	d.i++ // opening quote
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return nil
		case c == '\\':
			if d.i+1 >= len(d.b) {
				return d.errf("unterminated escape")
			}
			switch d.b[d.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i += 2
			case 'u':
				if d.i+6 > len(d.b) || !isHex4(d.b[d.i+2:d.i+6]) {
					return d.errf("invalid \\u escape")
				}
				d.i += 6
			default:
				return d.errf("invalid escape")
			}
		case c < 0x20:
			return d.errf("control character in string")
		default:
			d.i++
		}
	}
	return d.errf("unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// str decodes a JSON string at the current position.
func (d *decoder) str() (string, error) {
	if d.peek() != '"' {
		return "", d.errf("expected string")
	}
	start := d.i + 1
	i := start
	for i < len(d.b) {
		c := d.b[i]
		if c == '"' {
			d.i = i + 1
			return string(d.b[start:i]), nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		i++
	}
	// Slow path: escapes.
	buf := d.buf[:0]
	buf = append(buf, d.b[start:i]...)
	for i < len(d.b) {
		c := d.b[i]
		switch {
		case c == '"':
			d.i = i + 1
			d.buf = buf
			return string(buf), nil
		case c < 0x20:
			d.i = i
			return "", d.errf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			i++
			continue
		}
		if i+1 >= len(d.b) {
			d.i = i
			return "", d.errf("unterminated escape")
		}
		e := d.b[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			if i+4 > len(d.b) || !isHex4(d.b[i:i+4]) {
				d.i = i
				return "", d.errf("invalid \\u escape")
			}
			r := hex4(d.b[i : i+4])
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 <= len(d.b) && d.b[i] == '\\' && d.b[i+1] == 'u' && isHex4(d.b[i+2:i+6]) {
					if r2 := utf16.DecodeRune(r, hex4(d.b[i+2:i+6])); r2 != utf8.RuneError {
						r = r2
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			d.i = i
			return "", d.errf("invalid escape")
		}
	}
	d.i = i
	return "", d.errf("unterminated string")
}
