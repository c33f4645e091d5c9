package serverpolicy

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// refresher is a Go client extension that sends a fresh token with the next
// /meta/connect once one is set, and records what the replies say of it.
type refresher struct {
	mu      sync.Mutex
	next    string
	expires []float64
	errors  []string
}

func (r *refresher) send(tok string) { r.mu.Lock(); r.next = tok; r.mu.Unlock() }

func (r *refresher) Outgoing(m *client.Message) bool {
	if m.Channel != "/meta/connect" {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next != "" {
		if m.Ext == nil {
			m.Ext = map[string]any{}
		}
		m.Ext["auth"] = map[string]any{"token": r.next}
		r.next = ""
	}
	return true
}

func (r *refresher) Incoming(m *client.Message) bool {
	if m.Channel != "/meta/connect" {
		return true
	}
	auth, _ := m.Ext["auth"].(map[string]any)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := auth["expires"].(float64); ok {
		r.expires = append(r.expires, e)
	}
	if e, ok := auth["error"].(string); ok {
		r.errors = append(r.errors, e)
	}
	return true
}

func (r *refresher) last() (float64, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var e float64
	if len(r.expires) > 0 {
		e = r.expires[len(r.expires)-1]
	}
	return e, append([]string(nil), r.errors...)
}

// goClient handshakes a Go client with a token that expires at exp.
func goClient(t *testing.T, b *broker, transport string, exp time.Time, r *refresher) *client.Client {
	t.Helper()
	tok := token(t, msg{"exp": exp.Unix()})
	c, err := client.NewClient(client.Config{URL: b.url, Transports: []string{transport},
		Extensions: []client.Extension{authExt{tok}, r}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := c.Handshake(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// authExt puts the token in the handshake's ext.auth.
type authExt struct{ token string }

func (a authExt) Outgoing(m *client.Message) bool {
	if m.Channel == "/meta/handshake" {
		m.Ext = map[string]any{"auth": map[string]any{"token": a.token}}
	}
	return true
}
func (authExt) Incoming(*client.Message) bool { return true }

// A session ends when its token expires, whatever its transport, unless its
// client sends a fresh token for the same subject with a connect; a token for
// another subject, or a bad one, is refused in the connect's reply and the
// session keeps its old expiry.
func TestTokenExpiryAndRefresh(t *testing.T) {
	zero := 0
	b := newBrokerLeeway(t, slog.New(slog.NewTextHandler(io.Discard, nil)), &zero, false,
		allow("join", handshake, nil, "authenticated"))
	for _, transport := range []string{"long-polling", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			soon := time.Now().Add(3 * time.Second).Truncate(time.Second)
			expiring := &refresher{}
			ce := goClient(t, b, transport, soon, expiring)
			refreshed := &refresher{}
			cr := goClient(t, b, transport, soon, refreshed)
			denied := &refresher{}
			cd := goClient(t, b, transport, soon, denied)
			idE, idR, idD := ce.ClientID(), cr.ClientID(), cd.ClientID()

			later := time.Now().Add(time.Hour).Truncate(time.Second)
			refreshed.send(token(t, msg{"exp": later.Unix()}))
			denied.send(token(t, msg{"exp": later.Unix(), "sub": "mallory"}))
			testutil.Eventually(t, testWait, "the refresh to be answered", func(context.Context) (bool, string) {
				e, _ := refreshed.last()
				_, errs := denied.last()
				return e == float64(later.Unix()) && len(errs) > 0, ""
			})
			if _, errs := denied.last(); errs[0] != RefreshOtherSubject {
				t.Fatalf("a token for another subject: %v, want %s", errs, RefreshOtherSubject)
			}
			if e, _ := expiring.last(); e != float64(soon.Unix()) {
				t.Fatalf("connect replies say the session expires at %v, want %d", e, soon.Unix())
			}
			// Past the first expiry: the sessions of the first token end,
			// the refreshed one lives on.
			testutil.Eventually(t, testWait, "the expired sessions to end", func(context.Context) (bool, string) {
				return b.srv.Session(idE) == nil && b.srv.Session(idD) == nil, ""
			})
			if b.srv.Session(idR) == nil {
				t.Fatal("the session with a refreshed token ended")
			}
			if time.Now().Before(soon) {
				t.Fatal("a session ended before its token expired")
			}
			// The client is told to handshake again; its expired token is
			// refused, so it cannot come back under a new clientId either.
			testutil.Eventually(t, testWait, "the expired client to be refused", func(context.Context) (bool, string) {
				return ce.State() == client.StateDisconnected, ce.State().String()
			})
			if cr.State() == client.StateDisconnected || cr.ClientID() != idR {
				t.Fatalf("the refreshed client: %s, clientId %s (was %s)", cr.State(), cr.ClientID(), idR)
			}
		})
	}
	if st := b.sec.Stats(); st.TokensExpired < 4 || st.TokensRefreshed != 2 || st.RefreshesDenied != 2 {
		t.Fatalf("stats %+v: want at least 4 expired, 2 refreshed, 2 refused", st)
	}
}
