package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// writeWait bounds one websocket frame write.
const writeWait = 10 * time.Second

// httpSend posts one batch and returns the decoded response batch.
func (c *Client) httpSend(ctx context.Context, body []byte) ([]*Message, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("bayeux: building request: %w", err)
	}
	for k, v := range c.cfg.Header {
		req.Header[k] = append([]string(nil), v...)
	}
	req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	if c.manualJar {
		for _, ck := range c.cfg.Jar.Cookies(c.url) {
			req.AddCookie(ck)
		}
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bayeux: POST %s: %w", c.cfg.URL, err)
	}
	defer resp.Body.Close()
	if c.manualJar {
		if cks := resp.Cookies(); len(cks) > 0 {
			c.cfg.Jar.SetCookies(c.url, cks)
		}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxMessageSize+1))
	if err != nil {
		return nil, fmt.Errorf("bayeux: POST %s: reading response: %w", c.cfg.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bayeux: POST %s: HTTP %d: %q", c.cfg.URL, resp.StatusCode, snippet(bytes.TrimSpace(data)))
	}
	if int64(len(data)) > c.cfg.MaxMessageSize {
		return nil, fmt.Errorf("bayeux: POST %s: response larger than %d bytes", c.cfg.URL, c.cfg.MaxMessageSize)
	}
	return decodeBatch(data)
}

// wsConn is one websocket connection: one reader goroutine, writes serialised
// by writeMu.
type wsConn struct {
	conn    *websocket.Conn
	writeMu sync.Mutex
	done    chan struct{} // closed when the connection is gone
	once    sync.Once
	err     error // why it is gone; read only after done is closed
}

func (w *wsConn) fail(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.done)
		w.conn.Close()
	})
}

func (w *wsConn) write(data []byte) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	select {
	case <-w.done:
		return w.err
	default:
	}
	w.conn.SetWriteDeadline(time.Now().Add(writeWait))
	if err := w.conn.WriteMessage(websocket.TextMessage, data); err != nil {
		err = fmt.Errorf("bayeux: websocket write: %w", err)
		w.fail(err)
		return err
	}
	return nil
}

// websocket returns the live websocket connection, dialling one if needed.
func (c *Client) websocket(ctx context.Context) (*wsConn, error) {
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	w := c.ws
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrDisconnected
	}
	if w != nil {
		select {
		case <-w.done:
		default:
			return w, nil
		}
	}
	h := http.Header{}
	for k, v := range c.cfg.Header {
		h[k] = append([]string(nil), v...)
	}
	conn, resp, err := c.cfg.Dialer.DialContext(ctx, c.wsURL, h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("bayeux: websocket dial %s: %w (HTTP %d)", c.wsURL, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("bayeux: websocket dial %s: %w", c.wsURL, err)
	}
	conn.SetReadLimit(c.cfg.MaxMessageSize)
	w = &wsConn{conn: conn, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return nil, ErrDisconnected
	}
	old := c.ws
	c.ws = w
	c.mu.Unlock()
	if old != nil {
		old.fail(fmt.Errorf("bayeux: websocket replaced"))
	}
	c.readers.Add(1)
	go c.readLoop(w)
	return w, nil
}

func (c *Client) readLoop(w *wsConn) {
	defer c.readers.Done()
	for {
		_, data, err := w.conn.ReadMessage()
		if err != nil {
			w.fail(fmt.Errorf("bayeux: websocket read: %w", err))
			return
		}
		msgs, err := decodeBatch(data)
		if err != nil {
			// A frame we cannot parse means we can no longer trust the
			// stream; drop the connection so the connect loop re-establishes
			// it instead of silently losing messages.
			w.fail(err)
			return
		}
		c.receive(msgs)
	}
}

// dropWebsocket closes the current websocket, if any.
func (c *Client) dropWebsocket(reason error) {
	c.mu.Lock()
	w := c.ws
	c.ws = nil
	c.mu.Unlock()
	if w != nil {
		w.fail(reason)
	}
}
