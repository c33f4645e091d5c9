// Package backbone carries Bayeux traffic between the brokers of one cluster.
//
// It knows channels and opaque encoded messages, never Bayeux meta semantics. The
// server (broker/server) registers interest in the channel patterns that have local
// subscribers, publishes what local clients publish, and receives what other nodes
// published through the Handler. Node-to-node requests (forwarding a long-poll to
// the broker that owns a session, handing a session over) use the Requester role.
//
// Implementations: Memory (in-process, the default, so unit tests need no NATS) and
// NATS (see nats.go).
package backbone

import (
	"context"
	"errors"
)

// Message is one Bayeux message crossing the backbone.
type Message struct {
	// Channel is the Bayeux channel the message was published to (never a wildcard).
	Channel string
	// Data is the encoded Bayeux message: one JSON object, shared read-only.
	Data []byte
	// Origin is the ID of the node that published it.
	Origin string
	// ID is what the publisher gave Publish to identify the message (may be
	// empty). The server uses it to recognise one message reaching a session
	// twice while the session moves between nodes.
	ID string
	// Seq is the message's sequence in the cluster's durable stream, or 0
	// without durability (see durable.go).
	Seq uint64
}

// Handler receives messages that other nodes published on channels this node has
// interest in. Each message is delivered to a node at most once, even when several
// of its patterns match, and messages from one origin arrive in publish order.
// The handler must not block for long: it runs on the backbone's delivery goroutine.
type Handler func(Message)

// Backbone is the cross-node fan-out.
type Backbone interface {
	// Subscribe registers interest in a Bayeux channel pattern ("/a/b", "/a/*",
	// "/a/**"). Calls are reference counted: the underlying subscription is made on
	// the first call for a pattern and removed when Unsubscribe has been called as
	// many times.
	Subscribe(pattern string) error
	// Unsubscribe drops one reference to pattern.
	Unsubscribe(pattern string) error
	// Publish sends data, published on channel by this node, to the other nodes
	// with interest, with id (at most MaxMessageIDLength bytes, may be empty) as
	// its Message.ID. It never echoes back to this node: the caller delivers
	// locally.
	Publish(channel string, data []byte, id string) error
	// SetHandler installs the receiver of remote messages; call it before Subscribe.
	SetHandler(h Handler)
	// NodeID is this node's ID, unique in the cluster.
	NodeID() string
	// Close releases the backbone's resources.
	Close() error
}

// RequestHandler answers a request addressed to this node.
type RequestHandler func(ctx context.Context, data []byte) ([]byte, error)

// Requester sends requests to one named node and serves requests addressed to this
// one. It is an optional ability, discovered by type assertion on a Backbone.
type Requester interface {
	// Request sends data to node and waits for its reply or ctx's end.
	Request(ctx context.Context, node string, data []byte) ([]byte, error)
	// HandleRequests installs the handler for requests addressed to this node.
	HandleRequests(h RequestHandler)
}

// Router is an optional ability for work that is not addressed to one node:
// handing a session to whichever node can take it, and finding which node
// holds something. Requests reach the same RequestHandler as Requester's.
type Router interface {
	// RequestAny sends data to one other node that takes work (see TakeWork),
	// chosen by the backbone, and returns that node's ID and its reply. It
	// returns ErrNoNode when no other node takes work.
	RequestAny(ctx context.Context, data []byte) (node string, reply []byte, err error)
	// TakeWork makes this node one that RequestAny may choose (on) or not. A
	// node takes work from the start; a draining node stops.
	TakeWork(on bool) error
	// Ask sends data to every other node and returns the first reply, with the
	// ID of the node that gave it. A handler that returns a nil reply and a nil
	// error stays silent. Ask returns ErrNoNode when no node answered before
	// ctx ended.
	Ask(ctx context.Context, data []byte) (node string, reply []byte, err error)
}

// MaxMessageIDLength bounds Publish's id.
const MaxMessageIDLength = 64

// Health is an optional ability: whether the backbone can currently carry traffic
// (a NATS backbone is unhealthy while disconnected). /readyz reports it.
type Health interface {
	Healthy() error
}

// Liveness is an optional ability: whether the backbone has failed for good.
// A NATS client closes its connection, and never reconnects, after some errors
// (the server refusing its credentials, or a protocol violation); the
// broker's liveness probe reports that, so that the pod is restarted rather
// than left cut off from the other brokers.
type Liveness interface {
	Alive() error
}

// ErrNoNode is returned by Request when no node answers to the given ID.
var ErrNoNode = errors.New("backbone: no such node")

// ErrClosed is returned by operations on a closed backbone.
var ErrClosed = errors.New("backbone: closed")
