package server

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// benchSessions creates n handshaken sessions subscribed to channel.
func benchSessions(b *testing.B, s *Server, n int, channel string) []*ServerSession {
	b.Helper()
	out := make([]*ServerSession, n)
	for i := range out {
		ss := newSession(s, newClientID(s.nodeID))
		if err := s.addSession(ss, nil); err != nil {
			b.Fatal(err)
		}
		if err := s.hub.subscribe(s, ss, bayeux.MustParseChannel(channel), nil); err != nil {
			b.Fatal(err)
		}
		out[i] = ss
	}
	return out
}

// BenchmarkBroadcast publishes one message to N subscribers and drains every
// queue (what the transports' writers do), so the figure is the whole
// server-side cost of a delivery except the socket write.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			s, err := NewServer(Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			subs := benchSessions(b, s, n, "/bench/room")
			data := []byte(`{"user":"alice","text":"hello, world"}`)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				s.publish(nil, NewServerMessage(&bayeux.Mutable{Channel: "/bench/room", Data: data}), false)
				for _, ss := range subs {
					q := ss.queue.take()
					if len(q) != 1 {
						b.Fatal("message not queued")
					}
					ss.queue.recycle(q) // as the websocket writer does
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkBroadcastOverlapping delivers through two matching wildcard
// subscriptions per session, which needs the once-per-session dedupe.
func BenchmarkBroadcastOverlapping(b *testing.B) {
	s, err := NewServer(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	subs := benchSessions(b, s, 100, "/bench/*")
	for _, ss := range subs {
		if err := s.hub.subscribe(s, ss, bayeux.MustParseChannel("/bench/**"), nil); err != nil {
			b.Fatal(err)
		}
	}
	data := []byte(`{"n":1}`)
	b.ReportAllocs()
	for b.Loop() {
		s.publish(nil, NewServerMessage(&bayeux.Mutable{Channel: "/bench/room", Data: data}), false)
		for _, ss := range subs {
			if len(ss.queue.take()) != 1 {
				b.Fatal("not exactly once")
			}
		}
	}
}

// BenchmarkWebsocketFanout200 measures delivered messages per second to 200 real
// websocket subscribers (gorilla clients in the same process, so the client
// side's cost is included), publishing in windows of 50 messages.
func BenchmarkWebsocketFanout200(b *testing.B) {
	const subscribers, window = 200, 50
	s, err := NewServer(Config{WSMessagesPerFrame: 16})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer func() { s.Close(); hs.Close() }()
	var received atomic.Int64
	u := "ws" + strings.TrimPrefix(hs.URL, "http") + "/cometd"
	for range subscribers {
		c, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		send := func(v string) {
			if err := c.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
				b.Fatal(err)
			}
		}
		send(`[{"channel":"/meta/handshake","supportedConnectionTypes":["websocket"]}]`)
		var hsReply []map[string]any
		if err := c.ReadJSON(&hsReply); err != nil {
			b.Fatal(err)
		}
		id := hsReply[0]["clientId"].(string)
		send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/bench"},{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id, id))
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				_, p, err := c.ReadMessage()
				if err != nil {
					return
				}
				received.Add(int64(strings.Count(string(p), `"channel":"/bench"`)))
			}
		}()
	}
	data := map[string]string{"text": "hello, subscribers"}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	sent := int64(0)
	for b.Loop() {
		if err := s.Publish("/bench", data); err != nil {
			b.Fatal(err)
		}
		sent++
		if sent%window == 0 {
			for received.Load() < sent*subscribers {
				runtime.Gosched()
			}
		}
	}
	for received.Load() < sent*subscribers {
		runtime.Gosched()
	}
	b.ReportMetric(float64(sent*subscribers)/time.Since(start).Seconds(), "delivered/s")
}

// rawWS is a minimal websocket client (a TCP connection and a small reader), so
// measuring the server's memory per connection counts little client overhead.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(addr, path string) (*rawWS, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		path, addr, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReaderSize(c, 256)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	return &rawWS{c: c, br: br}, nil
}

func (r *rawWS) send(payload string) error {
	hdr := []byte{0x81, 0x80}
	switch n := len(payload); {
	case n < 126:
		hdr[1] |= byte(n)
	default:
		hdr[1] |= 126
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	}
	hdr = append(hdr, 0, 0, 0, 0) // a zero mask leaves the payload as is
	_, err := r.c.Write(append(hdr, payload...))
	return err
}

func (r *rawWS) read() (string, error) {
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return "", err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(r.br, e[:]); err != nil {
			return "", err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(r.br, e[:]); err != nil {
			return "", err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r.br, p)
	return string(p), err
}

// BenchmarkIdleWebsocketSessionMemory opens websocket sessions, each
// handshaken, subscribed and holding a /meta/connect, and reports the heap and
// stack growth per session (client side included, so it is an upper bound).
func BenchmarkIdleWebsocketSessionMemory(b *testing.B) {
	const sessions = 2000
	for b.Loop() {
		s, err := NewServer(Config{})
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(s.Handler())
		addr := strings.TrimPrefix(hs.URL, "http://")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		conns := make([]*rawWS, 0, sessions)
		for i := range sessions {
			r, err := dialRaw(addr, "/cometd")
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, r)
			if err := r.send(`[{"channel":"/meta/handshake","supportedConnectionTypes":["websocket"]}]`); err != nil {
				b.Fatal(err)
			}
			reply, err := r.read()
			if err != nil {
				b.Fatal(err)
			}
			i0 := strings.Index(reply, `"clientId":"`) + len(`"clientId":"`)
			id := reply[i0 : i0+strings.IndexByte(reply[i0:], '"')]
			_ = r.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/idle/%d"},{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket","advice":{"timeout":0}}]`, id, i%50, id))
			if _, err := r.read(); err != nil { // subscribe reply
				b.Fatal(err)
			}
			for !strings.Contains(reply, "/meta/connect") {
				if reply, err = r.read(); err != nil {
					b.Fatal(err)
				}
			}
			_ = r.send(fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id))
		}
		deadline := time.Now().Add(time.Minute)
		for s.Stats().Sessions != sessions || !allHeld(s) {
			if time.Now().After(deadline) {
				b.Fatal("sessions not idle")
			}
			runtime.Gosched()
		}
		// Idle goroutine stacks shrink by half at each GC while mostly unused, as
		// they do over time in a long-running broker.
		for range 4 {
			runtime.GC()
		}
		runtime.ReadMemStats(&after)
		per := float64((after.HeapAlloc+after.StackInuse)-(before.HeapAlloc+before.StackInuse)) / sessions
		b.ReportMetric(per, "bytes/session")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/sessions, "stack-bytes/session")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/sessions, "heap-bytes/session")
		if f := os.Getenv("IDLE_HEAP_PROFILE"); f != "" {
			if out, err := os.Create(f); err == nil {
				_ = pprof.WriteHeapProfile(out)
				out.Close()
			}
		}
		b.ReportMetric(float64(runtime.NumGoroutine())/sessions, "goroutines/session")
		for _, r := range conns {
			r.c.Close()
		}
		s.Close()
		hs.Close()
	}
}

func allHeld(s *Server) bool {
	for _, ss := range s.Sessions() {
		ss.mu.Lock()
		held := ss.held != nil
		ss.mu.Unlock()
		if !held {
			return false
		}
	}
	return true
}
