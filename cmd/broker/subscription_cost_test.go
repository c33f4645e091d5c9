package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

// TestSubscriptionCost measures the heap a subscription costs on a broker
// with its backbone (the figures docs/operations.md gives for sizing): a
// subscription to a channel no other session here subscribes to costs the
// channel, its trie node and the backbone's NATS subscription (about 1.7 KiB);
// one more subscriber of a channel costs about 100 bytes.
func TestSubscriptionCost(t *testing.T) {
	bb, closeFn, err := openBackbone(&config.File{}, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	s, _ := server.NewServer(server.Config{Backbone: bb, MaxSubscriptionsPerSession: -1, MaxInterval: 600e9})
	defer s.Close()
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	post := func(body string) []map[string]any {
		resp, err := http.Post(hs.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out []map[string]any
		_ = json.Unmarshal(b, &out)
		return out
	}
	var ids []string
	for i := 0; i < 50; i++ {
		out := post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`)
		ids = append(ids, out[0]["clientId"].(string))
	}
	for _, shared := range []bool{false, true} {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		n := 0
		for i, id := range ids {
			var subs []string
			for j := 0; j < 100; j++ {
				ch := fmt.Sprintf("/own%v/%d/%d", shared, i, j)
				if shared {
					ch = fmt.Sprintf("/shared/%d", j)
				}
				subs = append(subs, fmt.Sprintf("%q", ch))
				n++
			}
			out := post(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":[%s]}]`, id, strings.Join(subs, ",")))
			if out[0]["successful"] != true {
				t.Fatal(out)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&b)
		per := int(int64(b.HeapAlloc)-int64(a.HeapAlloc)) / n
		t.Logf("shared channels %v: %d subscriptions, %d bytes each", shared, n, per)
		if limit := map[bool]int{false: 2048, true: 256}[shared]; per > limit {
			t.Errorf("a subscription (shared channels %v) costs %d bytes, over the %d documented for sizing", shared, per, limit)
		}
	}
}
