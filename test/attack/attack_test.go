package attack

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestAttackUnreadReplies: clients that never read their websocket and send
// frames of tiny messages that each earn an error reply (no session needed).
// Before the bound, each pinned ~136 MB (20 connections: 3.1 GB RSS). Now a
// connection whose pending output passes maxPendingBytes (1 MiB) is cut as
// slow_connection: 20 such connections raise the RSS by less than 100 MiB.
func TestAttackUnreadReplies(t *testing.T) {
	const conns, frames = 20, 5000
	b := startBroker(t)
	g := &goodClient{b: b, hc: httpClient("127.0.0.1")}
	if err := g.roundTrip(); err != nil {
		t.Fatal(err)
	}
	base := rss(t, b)
	stop := make(chan struct{})
	peak, watched := peakRSS(t, b, stop), watch(b, stop)

	// 1,400 replies a frame: under the batch cap (1 MiB / 700 B), so every
	// frame is processed and earns replies.
	frame := []byte("[" + strings.TrimSuffix(strings.Repeat("{},", 1400), ",") + "]")
	var cut atomic.Int32
	start := time.Now()
	parallel(conns, func(int) {
		d := websocket.Dialer{
			HandshakeTimeout: 10 * time.Second,
			NetDial: func(network, addr string) (net.Conn, error) {
				c, err := dialer("127.0.0.2").Dial(network, addr)
				if err == nil {
					_ = c.(*net.TCPConn).SetReadBuffer(4096)
				}
				return c, err
			},
		}
		c, _, err := d.Dial("ws"+strings.TrimPrefix(b.URL, "http"), nil)
		if err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		defer c.Close()
		for range frames {
			_ = c.SetWriteDeadline(time.Now().Add(waitTimeout))
			if err := c.WriteMessage(websocket.TextMessage, frame); err != nil {
				cut.Add(1)
				return
			}
		}
	})
	took := time.Since(start)
	waitFor(t, waitTimeout, "the broker to release every attacking connection", func() bool {
		return brokerConnsFrom(t, b, "127.0.0.2") == 0
	})
	close(stop)
	grew := <-peak - base
	(<-watched).check(t)
	t.Logf("%d connections, each sending up to %d frames of 1400 messages: %d cut within %v; peak RSS %d MiB above the %d MiB baseline; slow connections %v",
		conns, frames, cut.Load(), took.Round(time.Millisecond), grew/mib, base/mib, metric(t, b, "cometd_slow_connections_total"))
	if int(cut.Load()) != conns {
		t.Errorf("%d of %d connections that never read were not cut", conns-int(cut.Load()), conns)
	}
	if grew > 100*mib {
		t.Errorf("RSS grew by %d MiB, want under 100 MiB", grew/mib)
	}
	if metric(t, b, "cometd_slow_connections_total") < 1 {
		t.Error("no connection counted in cometd_slow_connections_total")
	}
}

// TestAttackHugeHeaders: request headers were kept as long as the session
// lived (2,000 sessions with a 1 MB User-Agent held 2.2 GB). Now a header
// block over maxHeaderBytes (16 KiB) is refused with 431, and a session keeps
// 256 bytes of its User-Agent: 2,000 sessions with a 15,000-byte one (30 MB if
// kept) raise the RSS by less than 20 MiB.
func TestAttackHugeHeaders(t *testing.T) {
	const sessions, uaSize = 2000, 15000
	b := startBroker(t, "COMETD_MAX_INTERVAL_MS=300000")
	hc := httpClient("127.0.0.2")
	req, _ := http.NewRequest(http.MethodPost, b.URL, strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
	req.Header.Set("User-Agent", strings.Repeat("u", 1<<20))
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("a 1 MiB header: status %d, want 431", resp.StatusCode)
		}
	} // a reset before the reply is as good a refusal
	g := &goodClient{b: b, hc: httpClient("127.0.0.1")}
	if err := g.roundTrip(); err != nil {
		t.Fatal(err)
	}
	base := rss(t, b)
	stop := make(chan struct{})
	peak, watched := peakRSS(t, b, stop), watch(b, stop)
	ua := strings.Repeat("u", uaSize)
	var made atomic.Int32
	parallel(8, func(int) {
		for range sessions / 8 {
			req, _ := http.NewRequest(http.MethodPost, b.URL, strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
			req.Header.Set("User-Agent", ua)
			resp, err := hc.Do(req)
			if err != nil {
				t.Errorf("handshake: %v", err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `"successful":true`) {
				made.Add(1)
			}
		}
	})
	close(stop)
	grew := <-peak - base
	(<-watched).check(t)
	live := metric(t, b, "cometd_sessions")
	t.Logf("%d sessions with a %d-byte User-Agent: peak RSS %d MiB above the %d MiB baseline (%.0f sessions live)", made.Load(), uaSize, grew/mib, base/mib, live)
	if live < sessions-8 {
		t.Fatalf("only %.0f sessions live", live)
	}
	if grew > 20*mib {
		t.Errorf("RSS grew by %d MiB, want under 20 MiB", grew/mib)
	}
}

// rawRequest is a complete handshake request, kept alive.
func rawRequest(host string) string {
	body := `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`
	return fmt.Sprintf("POST /cometd HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body)
}

// TestAttackIdleConnections: 20,000 connections that sent one request and
// sat idle used to fill the file table in 60 s, after which new handshakes
// and /healthz timed out. Now: an address holds at most maxConnectionsPerIP
// connections, the broker at most maxConnections (the rest are answered 503
// and closed at accept), a kept-alive connection is closed idleTimeoutMs
// after its last reply, and one that sends nothing readTimeoutMs after it
// opened. Here with small limits (100 per address, 300 in all, 2 s each).
func TestAttackIdleConnections(t *testing.T) {
	const idle, perIP, maxConns = 2 * time.Second, 100, 300
	b := startBroker(t, "COMETD_IDLE_TIMEOUT_MS=2000", "COMETD_READ_TIMEOUT_MS=2000",
		fmt.Sprintf("COMETD_MAX_CONNECTIONS_PER_IP=%d", perIP), fmt.Sprintf("COMETD_MAX_CONNECTIONS=%d", maxConns))
	stop := make(chan struct{})
	watched := watch(b, stop)

	// One address, 150 connections that each send one request and sit idle.
	var served, refused atomic.Int32
	var latest atomic.Int64 // when the last reply was read
	conns := make([]net.Conn, 150)
	parallel(len(conns), func(i int) {
		c, err := dialer("127.0.0.2").Dial("tcp", b.Addr)
		if err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		conns[i] = c
		_, _ = c.Write([]byte(rawRequest(b.Addr)))
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		line, _ := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.Contains(line, " 200 "):
			served.Add(1)
			latest.Store(max(latest.Load(), time.Now().UnixNano()))
		case strings.Contains(line, " 503 "):
			refused.Add(1)
		}
	})
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if served.Load() != perIP || refused.Load() != int32(len(conns)-perIP) {
		t.Errorf("one address: %d served, %d refused; want %d and %d", served.Load(), refused.Load(), perIP, len(conns)-perIP)
	}
	waitFor(t, idle+3*time.Second, "idle connections to be closed", func() bool {
		return brokerConnsFrom(t, b, "127.0.0.2") == 0
	})
	if since := time.Since(time.Unix(0, latest.Load())); since > idle+2*time.Second {
		t.Errorf("the last idle connection was closed %v after its reply, want within %v", since.Round(time.Millisecond), idle+2*time.Second)
	}

	// Four addresses, 100 silent connections each: 400 > maxConnections.
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	opened := time.Now()
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		for range perIP {
			c, err := dialer(src).Dial("tcp", b.Addr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			silent = append(silent, c)
		}
	}
	held := 0
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		held += brokerConnsFrom(t, b, src)
	}
	if held > maxConns {
		t.Errorf("the broker holds %d connections, over maxConnections %d", held, maxConns)
	}
	waitFor(t, 2*time.Second+3*time.Second, "silent connections to be closed", func() bool {
		n := 0
		for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
			n += brokerConnsFrom(t, b, src)
		}
		return n == 0
	})
	closedAfter := time.Since(opened)
	close(stop)
	res := <-watched
	// While the broker is full, the well-behaved client may be refused with
	// 503 (that is the limit working); /healthz, on its own listener, may not.
	var other []string
	for _, f := range res.failures {
		if !strings.Contains(f, "503") && !strings.Contains(f, "reset") && !strings.Contains(f, "EOF") {
			other = append(other, f)
		}
	}
	if len(other) > 0 {
		t.Errorf("%d checks failed during the attack, first: %s", len(other), other[0])
	}
	refusedMax := metric(t, b, `cometd_connections_refused_total{reason="max_connections"}`)
	refusedIP := metric(t, b, `cometd_connections_refused_total{reason="max_connections_per_ip"}`)
	t.Logf("per address: %d served, %d refused; broker: %d held of 400, all closed %v after opening; refused: %v at the broker limit, %v at the address limit",
		served.Load(), refused.Load(), held, closedAfter.Round(time.Millisecond), refusedMax, refusedIP)
	if refusedMax < 100 {
		t.Errorf("cometd_connections_refused_total{max_connections} = %v, want at least 100", refusedMax)
	}
	g := &goodClient{b: b, hc: httpClient("127.0.0.1")}
	if err := g.roundTrip(); err != nil {
		t.Errorf("after the attack: %v", err)
	}
}

// TestAttackSlowRequests: a slow header block and a slow body were never
// closed. Now both are closed readTimeoutMs (2 s here) after they began.
func TestAttackSlowRequests(t *testing.T) {
	const readTimeout, n = 2 * time.Second, 50
	b := startBroker(t, "COMETD_READ_TIMEOUT_MS=2000")
	stop := make(chan struct{})
	watched := watch(b, stop)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range 2 * n {
		c, err := dialer("127.0.0.2").Dial("tcp", b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i%2 == 0 { // headers, unfinished
			_, _ = c.Write([]byte("POST /cometd HTTP/1.1\r\nHost: x\r\n"))
		} else { // complete headers, a body promised and never sent
			_, _ = c.Write([]byte("POST /cometd HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n[{"))
		}
	}
	// Until the broker accepts them they are in no table of the broker's, and
	// would count as closed.
	waitFor(t, 10*time.Second, "the broker to accept the slow connections", func() bool {
		return brokerConnsFrom(t, b, "127.0.0.2") == len(conns)
	})
	// The attackers trickle a byte every 200 ms, which must not keep them.
	trickle := time.NewTicker(200 * time.Millisecond)
	defer trickle.Stop()
	waitFor(t, readTimeout+3*time.Second, "slow requests to be closed", func() bool {
		select {
		case <-trickle.C:
			for i, c := range conns {
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				if i%2 == 0 {
					_, _ = c.Write([]byte("X"))
				} else {
					_, _ = c.Write([]byte(" "))
				}
			}
		default:
		}
		return brokerConnsFrom(t, b, "127.0.0.2") == 0
	})
	took := time.Since(start)
	close(stop)
	(<-watched).check(t)
	t.Logf("%d slow header blocks and %d slow bodies closed %v after they began", n, n, took.Round(time.Millisecond))
	if took > readTimeout+2*time.Second {
		t.Errorf("closed after %v, want within %v", took, readTimeout+2*time.Second)
	}
}

// TestAttackUnreadLongPoll: a long-poll client that never read its response
// pinned the response in memory. Now the reply must be written within
// writeTimeoutMs (2 s here) of being ready, or the connection is closed. The
// session's queue is raised to 16 MiB here so that the 12 MB reply is larger
// than what the kernel's socket buffers take in (a reply they take whole no
// longer costs the broker's memory; the connection then idles out).
func TestAttackUnreadLongPoll(t *testing.T) {
	const writeTimeout = 2 * time.Second
	b := startBroker(t, "COMETD_WRITE_TIMEOUT_MS=2000", "COMETD_MAX_QUEUE_BYTES=16777216")
	g := &goodClient{b: b, hc: httpClient("127.0.0.3")}
	out, err := g.post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`)
	if err != nil {
		t.Fatal(err)
	}
	id := out[0]["clientId"].(string)
	connect := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id)
	if _, err := g.post(connect); err != nil {
		t.Fatal(err)
	}
	if _, err := g.post(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/flood"}]`, id)); err != nil {
		t.Fatal(err)
	}
	// 12 MB waits in the session's queue.
	data := strings.Repeat("z", 30000)
	for range 400 {
		if _, err := g.post(fmt.Sprintf(`[{"channel":"/flood","clientId":%q,"data":%q}]`, id, data)); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	watched := watch(b, stop)
	d := dialer("127.0.0.2")
	c, err := d.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	// The broker holds the connection before the request is sent (until it
	// accepts it, it is in no table of the broker's, and would count as closed).
	waitFor(t, 10*time.Second, "the broker to accept the connection", func() bool {
		return brokerConnsFrom(t, b, "127.0.0.2") == 1
	})
	sent := time.Now()
	_, _ = fmt.Fprintf(c, "POST /cometd HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(connect), connect)
	took := waitFor(t, writeTimeout+3*time.Second, "the unread long-poll to be closed", func() bool {
		return brokerConnsFrom(t, b, "127.0.0.2") == 0
	})
	close(stop)
	(<-watched).check(t)
	t.Logf("a 12 MB reply nobody reads: connection closed %v after the request", time.Since(sent).Round(time.Millisecond))
	if took > writeTimeout+2*time.Second {
		t.Errorf("closed after %v, want within %v", took, writeTimeout+2*time.Second)
	}
}

// TestAdminSurface: pprof is not served unless --pprof-listen asks for it,
// and then only on that address; the admin port answers while the client
// port is full (see TestAttackIdleConnections).
func TestAdminSurface(t *testing.T) {
	b := startBroker(t)
	resp, err := httpClient("127.0.0.1").Get(b.Admin + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("admin /debug/pprof/ without --pprof-listen: %d, want 404", resp.StatusCode)
	}
	b2 := startBroker(t, "COMETD_PPROF_LISTEN=127.0.0.1:0")
	var addr string
	waitFor(t, waitTimeout, "the pprof address in the log", func() bool {
		for _, line := range strings.Split(b2.Logs.String(), "\n") {
			if i := strings.Index(line, "serving pprof"); i >= 0 {
				if j := strings.Index(line, "addr="); j >= 0 {
					addr = strings.Fields(line[j+len("addr="):])[0]
					return true
				}
			}
		}
		return false
	})
	resp, err = httpClient("127.0.0.1").Get("http://" + addr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("pprof on --pprof-listen: %d", resp.StatusCode)
	}
	resp, err = httpClient("127.0.0.1").Get(b2.Admin + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("admin /debug/pprof/ with --pprof-listen: %d, want 404", resp.StatusCode)
	}
}
