package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/backbone"
	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// Forwarding: any broker serves any session.
//
// A long-polling or callback-polling batch whose clientId names another node (see
// OwnerOf) is sent to that node over the backbone's Requester and processed there,
// as if it had arrived on the owner's own HTTP port; the owner's HTTP reply
// (status, content type, body) comes back and is written out unchanged. This
// covers held /meta/connects: the owner holds the request, and the forwarding node
// waits for its reply. A client that gives up cancels the owner's hold, so the
// messages it would have carried stay queued.
//
// A websocket carries no HTTP request per batch, so a batch read from a websocket
// whose session lives elsewhere (Faye handshakes over HTTP, then opens its
// websocket, which a Service may send to another broker) is forwarded the same
// way, as a long-polling batch, on a goroutine of its own so the connection keeps
// reading; the owner's reply is written on the websocket.
//
// A forwarded request is one line of JSON (forwardMeta) followed by '\n' and the
// batch as the client sent it; the reply is one line of JSON (forwardReply), '\n'
// and the body.

// forwardMargin is added to the connect timeout to bound a forwarded request, so
// that a held connect ends on the owner before the forwarding node gives up.
const forwardMargin = 15 * time.Second

// forwardKindPoll marks a forwarded polling batch (the only kind so far).
const forwardKindPoll = "poll"

type forwardMeta struct {
	Kind      string `json:"k"`
	Transport string `json:"t"`
	Callback  string `json:"cb,omitempty"`
	Browser   string `json:"b,omitempty"`
	UserAgent string `json:"ua,omitempty"`
	// Node names the sending node (an adopt request's source).
	Node string `json:"n,omitempty"`
}

type forwardReply struct {
	// Redirect, instead of a reply, names the node that holds the session
	// now: the node asked does not relay, so that no request waits on a node
	// that is about to exit.
	Redirect    string `json:"r,omitempty"`
	Status      int    `json:"s"`
	ContentType string `json:"ct,omitempty"`
	Cache       string `json:"cc,omitempty"`
	Cookie      string `json:"sc,omitempty"`
}

// frame is a node request or reply: head's JSON on one line, then body.
func frame(head any, body []byte) []byte {
	h, _ := json.Marshal(head) // structs of plain strings and ints: cannot fail
	out := make([]byte, 0, len(h)+1+len(body))
	return append(append(append(out, h...), '\n'), body...)
}

// serveNodeRequest answers requests from other nodes (the backbone's
// RequestHandler).
func (s *Server) serveNodeRequest(ctx context.Context, data []byte) ([]byte, error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, errors.New("server: malformed node request")
	}
	var meta forwardMeta
	if err := json.Unmarshal(data[:i], &meta); err != nil {
		return nil, fmt.Errorf("server: malformed node request: %w", err)
	}
	body := data[i+1:]
	switch meta.Kind {
	case forwardKindPoll:
	case kindAdopt:
		return s.adopt(body, meta.Node)
	case kindFinalize:
		return s.finalize(body)
	case kindAbort:
		s.abortArrival(string(body))
		return []byte{}, nil
	case kindWhere:
		return s.where(string(body)), nil
	case kindStarted:
		s.nodeStarted(meta.Node) // liveness.go
		return nil, nil          // silent: the announcement waits for no answer
	case kindPing:
		// The process's number: a node that restarted under the same ID
		// answers with another one (liveness.go).
		return strconv.AppendUint(nil, s.msgNode, 36), nil
	case kindPull:
		return s.servePull(ctx, string(body), meta.Transport != pullNoWait) // eventsource_relay.go
	case kindRequeue:
		return s.serveRequeue(body)
	default:
		return nil, fmt.Errorf("server: unknown node request kind %q", meta.Kind)
	}
	if meta.Transport != bayeux.TransportLongPolling && meta.Transport != bayeux.TransportCallbackPolling ||
		meta.Transport == bayeux.TransportCallbackPolling && !validCallback(meta.Callback) {
		return nil, fmt.Errorf("server: bad forwarded transport %q", meta.Transport)
	}
	msgs, err := bayeux.DecodeBatch(body)
	if err != nil {
		return nil, fmt.Errorf("server: forwarded batch: %w", err)
	}
	hr := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/"}, Header: http.Header{}}
	if meta.UserAgent != "" {
		hr.Header.Set("User-Agent", meta.UserAgent)
	}
	if meta.Browser != "" {
		hr.AddCookie(&http.Cookie{Name: BrowserCookie, Value: meta.Browser})
	}
	rec := &replyRecorder{header: http.Header{}}
	release, node := s.route(msgs)
	if release == nil {
		id := batchSession(msgs)
		if node == "" && id != "" && OwnerOf(id) != "" {
			node = s.locate(ctx, id)
		}
		if node == "" {
			// No node serves the session: with durability, adopt it (durable.go).
			switch a := s.orphan(id); {
			case a.here:
				release, _ = s.route(msgs)
			case a.node != "":
				node = a.node
			case a.retry:
				return nil, errAdoptionFailed
			}
		}
		if node != "" && node != s.nodeID {
			return frame(forwardReply{Redirect: node}, nil), nil
		}
	}
	s.respond(rec, hr.WithContext(ctx), msgs, meta.Transport, meta.Callback, release)
	if rec.status == 0 && rec.body.Len() == 0 {
		// The hold ended because the requester gave up: nothing was taken.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("server: forwarded batch produced no reply")
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return frame(forwardReply{
		Status:      rec.status,
		ContentType: rec.header.Get("Content-Type"),
		Cache:       rec.header.Get("Cache-Control"),
		Cookie:      rec.header.Get("Set-Cookie"),
	}, rec.body.Bytes()), nil
}

// replyRecorder is the http.ResponseWriter a forwarded batch is answered into.
type replyRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *replyRecorder) Header() http.Header { return r.header }

func (r *replyRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *replyRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// errMalformedReply: a node's reply to a forwarded batch could not be read.
var errMalformedReply = errors.New("server: malformed reply from the session's owner")

// askOwner sends a forwarded batch of session id to node and returns the reply
// of the node that holds the session: it follows redirects and, when a node is
// gone, asks every node where the session is, at most maxHops times. It
// returns an error wrapping backbone.ErrNoNode when no node holds it.
func (s *Server) askOwner(ctx context.Context, req backbone.Requester, node, id string, payload []byte) (forwardReply, []byte, error) {
	for hop := 0; ; hop++ {
		resp, err := s.requestLive(ctx, req, node, payload)
		if errors.Is(err, backbone.ErrNoNode) {
			s.forgetRoute(id)
			if hop >= maxHops {
				return forwardReply{}, nil, err
			}
			if node = s.locate(ctx, id); node == "" {
				return forwardReply{}, nil, err
			}
			continue
		}
		if err != nil {
			return forwardReply{}, nil, err
		}
		var rep forwardReply
		i := bytes.IndexByte(resp, '\n')
		if i < 0 || json.Unmarshal(resp[:i], &rep) != nil {
			return forwardReply{}, nil, errMalformedReply
		}
		if rep.Redirect == "" {
			if rep.Status < 100 || rep.Status > 999 {
				return forwardReply{}, nil, errMalformedReply
			}
			return rep, resp[i+1:], nil
		}
		if hop >= maxHops || rep.Redirect == node {
			return forwardReply{}, nil, fmt.Errorf("%w: redirected in circles looking for session %s", backbone.ErrNoNode, id)
		}
		s.routes.put(id, rep.Redirect)
		node = rep.Redirect
	}
}

// appendBatch appends msgs to b as a JSON array.
func appendBatch(b []byte, msgs []*bayeux.Mutable) []byte {
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = m.AppendJSON(b)
	}
	return append(b, ']')
}
