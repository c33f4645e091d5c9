package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

// TestNoGoroutineLeak runs websocket and long-polling sessions with held
// connects, closes the server, and checks every goroutine it started ends.
func TestNoGoroutineLeak(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	base := runtime.NumGoroutine()
	func() {
		s, err := NewServer(Config{})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s.Handler())
		ts := &testServer{Server: s, url: hs.URL + "/cometd", hs: hs}
		for range 3 {
			ws := ts.dialWS(t)
			id := ws.handshake()
			ws.send(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/a/**"},{"channel":"/meta/connect","clientId":%q,"connectionType":"websocket"}]`, id, id))
			ts.waitHeld(t, id)
		}
		id := ts.connected(t)
		ts.subscribe(t, id, "/a/b")
		held := ts.connectAsync(id)
		ts.waitHeld(t, id)
		if err := s.Publish("/a/b", "x"); err != nil {
			t.Fatal(err)
		}
		recv(t, held)
		s.Close()
		hs.Close()
		http.DefaultClient.CloseIdleConnections()
	}()
	deadline := time.After(testWait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > base {
		select {
		case <-deadline:
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		case <-tick.C:
		}
	}
}
