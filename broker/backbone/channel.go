package backbone

import (
	"fmt"
	"strings"
)

// validatePattern checks a subscription pattern: an absolute Bayeux channel name
// with non-empty segments, where "*" and "**" may only stand as the whole last
// segment.
func validatePattern(pattern string) error {
	if err := checkSegments(pattern, true); err != nil {
		return fmt.Errorf("backbone: invalid channel pattern %q: %w", pattern, err)
	}
	return nil
}

// validateChannel checks a publish channel: like a pattern, but never a wildcard.
func validateChannel(channel string) error {
	if err := checkSegments(channel, false); err != nil {
		return fmt.Errorf("backbone: invalid channel %q: %w", channel, err)
	}
	return nil
}

func checkSegments(name string, wildOK bool) error {
	if len(name) < 2 || name[0] != '/' {
		return fmt.Errorf("must start with '/' and name at least one segment")
	}
	rest := name[1:]
	for {
		i := strings.IndexByte(rest, '/')
		seg := rest
		if i >= 0 {
			seg = rest[:i]
		}
		if seg == "" {
			return fmt.Errorf("empty segment")
		}
		if seg == "*" || seg == "**" {
			if !wildOK {
				return fmt.Errorf("wildcard segment %q in a publish channel", seg)
			}
			if i >= 0 {
				return fmt.Errorf("wildcard %q must be the last segment", seg)
			}
		}
		if i < 0 {
			return nil
		}
		rest = rest[i+1:]
	}
}

// matchingPatterns calls fn with every pattern that matches channel (a valid,
// non-wildcard channel): the channel itself, its parent with "/*", and every
// ancestor with "/**". It stops early when fn returns true.
func matchingPatterns(channel string, fn func(pattern string) bool) {
	if fn(channel) {
		return
	}
	last := strings.LastIndexByte(channel, '/')
	if fn(channel[:last+1] + "*") {
		return
	}
	for i := last; i >= 0; i = strings.LastIndexByte(channel[:i], '/') {
		if fn(channel[:i+1] + "**") {
			return
		}
		if i == 0 {
			return
		}
	}
}
