package bayeux

import (
	"errors"
	"fmt"
	"strings"
)

// Channel name errors.
var (
	ErrChannelEmpty    = errors.New("bayeux: channel missing")
	ErrChannelSyntax   = errors.New("bayeux: channel must start with '/' and have non-empty segments")
	ErrChannelWildcard = errors.New("bayeux: a wildcard may only be the whole last segment")
	ErrChannelChar     = errors.New("bayeux: channel contains a control character")
	ErrChannelLong     = fmt.Errorf("bayeux: channel name is longer than %d bytes", MaxChannelLength)
	ErrChannelNotPlain = errors.New("bayeux: a wildcard pattern where a plain channel is required")
)

// MaxChannelLength bounds a channel name, in bytes. Real channel names are tens
// of bytes; the bound keeps every name, once encoded as a backbone subject
// (up to three bytes per byte), well inside NATS's 4 KiB protocol line.
const MaxChannelLength = 1024

// Wildcard kinds of a channel pattern.
const (
	NotWild  = 0 // a plain channel
	Wild     = 1 // ends with "/*": matches one more segment
	DeepWild = 2 // ends with "/**": matches one or more segments
)

// ChannelID is a parsed, valid channel name or pattern.
type ChannelID struct {
	name string
	wild uint8
	segs int
}

// ParseChannel validates name as a channel or wildcard pattern. Names start with
// '/', have non-empty segments without control characters, may end with a "*"
// or "**" segment (a wildcard anywhere else is an error), and have at most
// MaxChannelLength bytes.
func ParseChannel(name string) (ChannelID, error) {
	if name == "" {
		return ChannelID{}, ErrChannelEmpty
	}
	if len(name) > MaxChannelLength {
		return ChannelID{}, ErrChannelLong
	}
	if name[0] != '/' || len(name) < 2 || name[len(name)-1] == '/' {
		return ChannelID{}, ErrChannelSyntax
	}
	id := ChannelID{name: name}
	segStart := 1
	for i := 1; i <= len(name); i++ {
		if i < len(name) {
			c := name[i]
			if c < 0x20 || c == 0x7f {
				return ChannelID{}, ErrChannelChar
			}
			if c != '/' {
				continue
			}
		}
		seg := name[segStart:i]
		if seg == "" {
			return ChannelID{}, ErrChannelSyntax
		}
		id.segs++
		if strings.IndexByte(seg, '*') >= 0 {
			if i != len(name) || (seg != "*" && seg != "**") {
				return ChannelID{}, ErrChannelWildcard
			}
			id.wild = uint8(len(seg))
		}
		segStart = i + 1
	}
	return id, nil
}

// ParsePlainChannel is ParseChannel for a channel a message is published on:
// it also refuses a wildcard pattern, with ErrChannelNotPlain.
func ParsePlainChannel(name string) (ChannelID, error) {
	id, err := ParseChannel(name)
	if err == nil && id.IsWildcard() {
		return ChannelID{}, ErrChannelNotPlain
	}
	return id, err
}

// MustParseChannel is ParseChannel for names known to be valid; it panics otherwise.
func MustParseChannel(name string) ChannelID {
	id, err := ParseChannel(name)
	if err != nil {
		panic(err)
	}
	return id
}

// String returns the channel name.
func (c ChannelID) String() string { return c.name }

// Depth is the number of segments.
func (c ChannelID) Depth() int { return c.segs }

// IsWild reports whether c ends with "/*".
func (c ChannelID) IsWild() bool { return c.wild == Wild }

// IsDeepWild reports whether c ends with "/**".
func (c ChannelID) IsDeepWild() bool { return c.wild == DeepWild }

// IsWildcard reports whether c is any wildcard pattern.
func (c ChannelID) IsWildcard() bool { return c.wild != NotWild }

// IsMeta reports whether c is under /meta/.
func (c ChannelID) IsMeta() bool { return IsMeta(c.name) }

// IsService reports whether c is under /service/.
func (c ChannelID) IsService() bool { return IsService(c.name) }

// IsBroadcast reports whether c is neither meta nor service.
func (c ChannelID) IsBroadcast() bool { return !c.IsMeta() && !c.IsService() }

// Matches reports whether the pattern c matches the plain channel name.
func (c ChannelID) Matches(channel string) bool { return Match(c.name, channel) }

// IsMeta reports whether name is a /meta/ channel.
func IsMeta(name string) bool { return strings.HasPrefix(name, "/meta/") || name == "/meta" }

// IsService reports whether name is a /service/ channel.
func IsService(name string) bool {
	return strings.HasPrefix(name, "/service/") || name == "/service"
}

// Match reports whether pattern (a valid channel or wildcard pattern) matches
// channel (a valid plain channel). A plain pattern matches only itself; "/a/*"
// matches "/a/b" but not "/a/b/c"; "/a/**" matches both.
func Match(pattern, channel string) bool {
	switch {
	case strings.HasSuffix(pattern, "/**"):
		prefix := pattern[:len(pattern)-2]
		return len(channel) > len(prefix) && strings.HasPrefix(channel, prefix)
	case strings.HasSuffix(pattern, "/*"):
		prefix := pattern[:len(pattern)-1]
		return len(channel) > len(prefix) && strings.HasPrefix(channel, prefix) &&
			strings.IndexByte(channel[len(prefix):], '/') < 0
	}
	return pattern == channel
}

// Wildcards returns the wildcard patterns that match the plain channel name, most
// specific first: for "/a/b/c" that is "/a/b/*", "/a/b/**", "/a/**", "/**". It
// allocates each pattern; MatchingWildcards walks the same patterns without
// allocating.
func Wildcards(channel string) []string {
	var out []string
	it := MatchingWildcards(channel)
	for p, ok := it.Next(); ok; p, ok = it.Next() {
		out = append(out, string(p))
	}
	return out
}

// WildcardIter walks the wildcard patterns that match a plain channel, most
// specific first: for "/a/b/c" that is "/a/b/*", "/a/b/**", "/a/**", "/**". It
// is the one implementation of wildcard expansion. Keep it in a local variable;
// then neither the walk nor the patterns allocate (for channels of up to
// wildcardBuf-1 bytes):
//
//	it := bayeux.MatchingWildcards(channel)
//	for p, ok := it.Next(); ok; p, ok = it.Next() {
//		subs := byPattern[string(p)] // a map index with string(p) does not allocate
//	}
type WildcardIter struct {
	channel string
	slash   int  // the '/' that ends the prefix of the next pattern; -1 when done
	deep    bool // the next pattern ends in "**" (else "*": the first one)
	ext     []byte
	buf     [wildcardBuf]byte
}

// wildcardBuf is the size of a WildcardIter's own buffer.
const wildcardBuf = 128

// MatchingWildcards returns a WildcardIter over the wildcard patterns that match
// the plain channel name (valid, as ParsePlainChannel checks).
func MatchingWildcards(channel string) WildcardIter {
	return WildcardIter{channel: channel, slash: strings.LastIndexByte(channel, '/')}
}

// Next returns the next pattern, or false when there is none. The pattern is
// valid only until the following call.
func (w *WildcardIter) Next() ([]byte, bool) {
	i := w.slash
	if i < 0 {
		return nil, false
	}
	b := w.buf[:]
	if w.ext != nil {
		b = w.ext
	}
	if !w.deep {
		// The first pattern: the buffer gets the channel up to its last '/'. Each
		// pattern writes its stars after its own prefix, and the prefixes only
		// shorten from one pattern to the next.
		if i+3 > len(b) {
			w.ext = make([]byte, i+3)
			b = w.ext
		}
		copy(b, w.channel[:i+1])
		w.deep = true
		b[i+1] = '*'
		return b[:i+2], true
	}
	b[i+1], b[i+2] = '*', '*'
	if i == 0 {
		w.slash = -1
	} else {
		w.slash = strings.LastIndexByte(w.channel[:i], '/')
	}
	return b[:i+3], true
}
