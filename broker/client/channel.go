package client

import (
	"fmt"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// validChannel checks a channel name or pattern given to Subscribe (wild) or
// Publish against the Bayeux grammar, before anything is sent: Publish refuses
// wildcard patterns.
func validChannel(name string, wild bool) error {
	parse := bayeux.ParsePlainChannel
	if wild {
		parse = bayeux.ParseChannel
	}
	if _, err := parse(name); err != nil {
		return fmt.Errorf("%w: %q", err, name)
	}
	return nil
}
