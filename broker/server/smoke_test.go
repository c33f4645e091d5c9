package server

import (
	"fmt"
	"testing"
)

func TestSmokeLongPolling(t *testing.T) {
	ts := newTestServer(t, Config{})
	a := ts.connected(t)
	b := ts.connected(t)
	ts.subscribe(t, a, "/chat/*")
	done := make(chan []msg, 1)
	go func() { done <- ts.connect(t, a) }()
	waitFor(t, "held connect", func() bool { s := ts.Session(a); s.mu.Lock(); defer s.mu.Unlock(); return s.held != nil })
	if r := ts.publish(t, b, "/chat/x", `{"t":1}`); r["successful"] != true {
		t.Fatalf("publish: %v", r)
	}
	out := <-done
	fmt.Println(out)
}
