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
// specific first: for "/a/b/c" that is "/a/b/*", "/a/b/**", "/a/**", "/**".
func Wildcards(channel string) []string {
	last := strings.LastIndexByte(channel, '/')
	if last < 0 {
		return nil
	}
	out := []string{channel[:last+1] + "*"}
	for i := last; i >= 0; i = strings.LastIndexByte(channel[:i], '/') {
		out = append(out, channel[:i+1]+"**")
		if i == 0 {
			break
		}
	}
	return out
}
