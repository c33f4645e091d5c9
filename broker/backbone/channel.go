package backbone

import (
	"fmt"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// validatePattern checks a subscription pattern: a channel or wildcard pattern
// of the Bayeux grammar (bayeux.ParseChannel).
func validatePattern(pattern string) error {
	if _, err := bayeux.ParseChannel(pattern); err != nil {
		return fmt.Errorf("backbone: invalid channel pattern %q: %w", pattern, err)
	}
	return nil
}

// validateChannel checks a publish channel: like a pattern, but never a wildcard.
func validateChannel(channel string) error {
	if _, err := bayeux.ParsePlainChannel(channel); err != nil {
		return fmt.Errorf("backbone: invalid channel %q: %w", channel, err)
	}
	return nil
}

// interested reports whether patterns holds channel (a valid plain channel) or
// a wildcard pattern that matches it.
func interested[V any](patterns map[string]V, channel string) bool {
	if _, ok := patterns[channel]; ok {
		return true
	}
	it := bayeux.MatchingWildcards(channel)
	for p, ok := it.Next(); ok; p, ok = it.Next() {
		if _, ok := patterns[string(p)]; ok {
			return true
		}
	}
	return false
}
