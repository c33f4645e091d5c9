package backbone

import (
	"fmt"
	"strings"
)

// Subject encoding.
//
// A backbone subject is
//
//	<prefix>.<cluster>.ch.<segment>.<segment>…   (channel traffic)
//	<prefix>.<cluster>.node.<node ID>            (node-to-node requests)
//
// where the cluster name, every Bayeux channel segment and the node ID are each
// encoded into one NATS token by EncodeToken. The Bayeux wildcard segments map to the
// NATS wildcards: "/a/*" subscribes to "….ch.a.*" and "/a/**" to "….ch.a.>", which
// have the same meaning (one more segment; one or more segments).
//
// EncodeToken keeps the bytes A–Z, a–z, 0–9 and '-' as they are, and writes every
// other byte (including '_', '.', '*', '>', spaces, controls and each byte of a
// multi-byte UTF-8 character) as '_' followed by two upper-case hex digits. The empty
// string, which no Bayeux segment can be but a cluster name can, becomes "_". So:
//
//   - a token never contains '.', whitespace or a wildcard, and is never "*" or ">";
//   - the code is prefix-free ('_' starts an escape and nothing else), so distinct
//     inputs give distinct tokens and DecodeToken(EncodeToken(s)) == s;
//   - there is one encoding per input: DecodeToken accepts only what EncodeToken
//     produces.

const hexDigits = "0123456789ABCDEF"

func literal(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// EncodeToken encodes s as one NATS subject token (see the package's subject
// encoding notes above).
func EncodeToken(s string) string {
	if s == "" {
		return "_"
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !literal(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	return string(appendToken(make([]byte, 0, len(s)+2*n), s))
}

// appendToken appends EncodeToken(s) to b, for non-empty s.
func appendToken(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if literal(c) {
			b = append(b, c)
		} else {
			b = append(b, '_', hexDigits[c>>4], hexDigits[c&0xF])
		}
	}
	return b
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DecodeToken reverses EncodeToken. It rejects any token EncodeToken could not
// have produced.
func DecodeToken(tok string) (string, error) {
	if tok == "_" {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("backbone: empty subject token")
	}
	if strings.IndexByte(tok, '_') < 0 {
		for i := 0; i < len(tok); i++ {
			if !literal(tok[i]) {
				return "", fmt.Errorf("backbone: invalid byte %q in subject token %q", tok[i], tok)
			}
		}
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case literal(c):
			b = append(b, c)
		case c == '_' && i+2 < len(tok):
			hi, ok1 := unhex(tok[i+1])
			lo, ok2 := unhex(tok[i+2])
			v := hi<<4 | lo
			if !ok1 || !ok2 || literal(v) {
				return "", fmt.Errorf("backbone: invalid escape %q in subject token %q", tok[i:i+3], tok)
			}
			b = append(b, v)
			i += 2
		default:
			return "", fmt.Errorf("backbone: invalid subject token %q", tok)
		}
	}
	return string(b), nil
}

// MaxSubjectLength bounds the subjects this package sends to NATS. A NATS
// server closes the connection of a client whose protocol line exceeds its
// max_control_line (4 KiB by default), and the client does not reconnect after
// that; so a subject that could push a line past that limit is refused here,
// with an error, instead of costing the node its connection. The line also
// carries the verb, a reply subject and sizes: 3.5 KiB leaves them room.
const MaxSubjectLength = 3584

// ErrSubjectTooLong is returned for a channel or node whose subject would
// exceed MaxSubjectLength.
var ErrSubjectTooLong = fmt.Errorf("backbone: subject longer than %d bytes", MaxSubjectLength)

// channelSubject appends the subject tokens of a Bayeux channel or pattern (already
// validated) to prefix, which ends with '.'.
func channelSubject(prefix, channel string) string {
	b := make([]byte, 0, len(prefix)+len(channel)+8)
	b = append(b, prefix...)
	rest := channel[1:]
	for {
		i := strings.IndexByte(rest, '/')
		seg := rest
		if i >= 0 {
			seg = rest[:i]
		}
		switch seg {
		case "*":
			b = append(b, '*')
		case "**":
			b = append(b, '>')
		default:
			b = appendToken(b, seg)
		}
		if i < 0 {
			return string(b)
		}
		b = append(b, '.')
		rest = rest[i+1:]
	}
}

// subjectChannel decodes the channel of a message subject that starts with prefix
// (which ends with '.').
func subjectChannel(prefix, subject string) (string, error) {
	if !strings.HasPrefix(subject, prefix) || len(subject) == len(prefix) {
		return "", fmt.Errorf("backbone: subject %q is not a channel subject under %q", subject, prefix)
	}
	var b strings.Builder
	b.Grow(len(subject) - len(prefix) + 1)
	rest := subject[len(prefix):]
	for {
		i := strings.IndexByte(rest, '.')
		tok := rest
		if i >= 0 {
			tok = rest[:i]
		}
		seg, err := DecodeToken(tok)
		if err != nil {
			return "", err
		}
		if seg == "" {
			return "", fmt.Errorf("backbone: empty channel segment in subject %q", subject)
		}
		b.WriteByte('/')
		b.WriteString(seg)
		if i < 0 {
			return b.String(), nil
		}
		rest = rest[i+1:]
	}
}

// validSubjectPrefix checks a configured subject prefix: one or more non-empty
// tokens of printable ASCII, separated by '.', with no wildcard.
func validSubjectPrefix(p string) error {
	if p == "" {
		return fmt.Errorf("backbone: empty subject prefix")
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("backbone: subject prefix %q has an empty token", p)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c >= 0x7f || c == '*' || c == '>' {
				return fmt.Errorf("backbone: subject prefix %q contains %q", p, c)
			}
		}
	}
	return nil
}
