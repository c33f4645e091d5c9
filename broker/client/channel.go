package client

import (
	"fmt"
	"strings"
)

// validChannel checks a channel name or pattern given to Subscribe or Publish.
// Wildcards are allowed only as the whole last segment, and only when
// wild is true.
func validChannel(name string, wild bool) error {
	if len(name) < 2 || name[0] != '/' {
		return fmt.Errorf("bayeux: invalid channel %q: must start with / and have a segment", name)
	}
	segs := strings.Split(name[1:], "/")
	for i, s := range segs {
		if s == "" {
			return fmt.Errorf("bayeux: invalid channel %q: empty segment", name)
		}
		if s == "*" || s == "**" {
			if !wild {
				return fmt.Errorf("bayeux: invalid channel %q: wildcards are not allowed here", name)
			}
			if i != len(segs)-1 {
				return fmt.Errorf("bayeux: invalid channel %q: a wildcard must be the last segment", name)
			}
		}
	}
	return nil
}

// matchPatterns calls fn with each wildcard subscription pattern that can
// match the concrete channel name: "<parent>/*" for the direct parent, then
// "<ancestor>/**" for every ancestor, deepest first. The slice is only valid
// during the call (index maps with string(pattern): no allocation).
func matchPatterns(name string, fn func(pattern []byte)) {
	last := strings.LastIndexByte(name, '/')
	if last < 0 {
		return
	}
	var buf [128]byte
	b := append(buf[:0], name[:last]...)
	b = append(b, "/*"...)
	fn(b)
	for i := last; i >= 0; i = strings.LastIndexByte(name[:i], '/') {
		b = append(b[:0], name[:i]...)
		b = append(b, "/**"...)
		fn(b)
		if i == 0 {
			break
		}
	}
}
