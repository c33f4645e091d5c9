package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/config"
)

// FuzzLongPollingBody feeds arbitrary request bodies to the long-polling
// handler: it must never panic, must answer 200, 400 or 413, and a 200 must
// carry a JSON array.
func FuzzLongPollingBody(f *testing.F) {
	for _, s := range []string{
		`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`,
		`{"channel":"/meta/connect","clientId":"x","connectionType":"long-polling","advice":{"timeout":0}}`,
		`[{"channel":"/meta/subscribe","clientId":"x","subscription":["/a/*","/b/**"]}]`,
		`[{"channel":"/meta/handshake"},{"channel":"/a","data":{}},{"channel":"/meta/disconnect"}]`,
		`[{"channel":"/meta/unsubscribe","subscription":"/a"},{"channel":"/service/x","data":1,"id":5}]`,
		`[{}]`, `[`, `{"channel":"/meta/connect","advice":"x"}`,
	} {
		f.Add([]byte(s))
	}
	s, err := NewServer(Config{Timeout: time.Millisecond, MaxMessageSize: 4096})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/cometd/", strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var out []json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("200 with a body that is not a JSON array: %q (%v)", rec.Body.String(), err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}

func TestConfigDefaultsMatchCometD(t *testing.T) {
	s, err := NewServer(ConfigFromFile(&emptyFile))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := s.Config()
	if c.Timeout != 30*time.Second || c.Interval != 0 || c.MaxInterval != 10*time.Second ||
		c.MaxLazyTimeout != 5*time.Second || c.MaxMessageSize != 64<<10 || c.WSMessagesPerFrame != 1 ||
		len(c.Transports) != 3 || c.MaxQueue != -1 || c.MaxQueueBytes != 4<<20 {
		t.Fatalf("defaults %+v", c)
	}
	if _, err := NewServer(Config{NodeID: "bad id"}); err == nil {
		t.Fatal("invalid node ID accepted")
	}
	if _, err := NewServer(Config{Transports: []string{"flash"}}); err == nil {
		t.Fatal("unknown transport accepted")
	}
}

var emptyFile = config.File{}

func TestConfigFromFileMapsLimits(t *testing.T) {
	c := ConfigFromFile(&config.File{DrainRate: 25, MaxSubscriptionsPerSession: -1, MaxQueue: 7})
	if c.DrainRate != 25 || c.MaxSubscriptionsPerSession != -1 || c.MaxQueue != 7 {
		t.Errorf("ConfigFromFile lost settings: DrainRate %v, MaxSubscriptionsPerSession %d, MaxQueue %d",
			c.DrainRate, c.MaxSubscriptionsPerSession, c.MaxQueue)
	}
}
