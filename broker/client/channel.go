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

// matchPatterns calls fn with each subscription pattern that can match the
// concrete channel name: the name itself, then "<parent>/*" for the direct
// parent, then "<ancestor>/**" for every ancestor, deepest first.
func matchPatterns(name string, fn func(pattern string)) {
	fn(name)
	last := strings.LastIndexByte(name, '/')
	if last < 0 {
		return
	}
	var buf [128]byte
	b := append(buf[:0], name[:last]...)
	b = append(b, "/*"...)
	fn(string(b))
	for i := last; i >= 0; i = strings.LastIndexByte(name[:i], '/') {
		b = append(b[:0], name[:i]...)
		b = append(b, "/**"...)
		fn(string(b))
		if i == 0 {
			break
		}
	}
}
