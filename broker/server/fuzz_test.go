package server

import (
	"encoding/json"
	"math"
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
		len(c.Transports) != 5 || c.MaxQueue != -1 || c.MaxQueueBytes != 4<<20 {
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
	c := ConfigFromFile(&config.File{DrainRate: 25, MaxSubscriptionsPerSession: -1, MaxQueue: 7, MaxSessions: 3})
	if c.DrainRate != 25 || c.MaxSubscriptionsPerSession != -1 || c.MaxQueue != 7 || c.MaxSessions != 3 {
		t.Errorf("ConfigFromFile lost settings: DrainRate %v, MaxSubscriptionsPerSession %d, MaxQueue %d, MaxSessions %d",
			c.DrainRate, c.MaxSubscriptionsPerSession, c.MaxQueue, c.MaxSessions)
	}
}

func TestNewServerRejectsNegativeConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string // "" when the config is valid
	}{
		{"Timeout", Config{Timeout: -time.Second}, "Timeout"},
		{"Interval", Config{Interval: -1}, "Interval"},
		{"MaxInterval", Config{MaxInterval: -time.Millisecond}, "MaxInterval"},
		{"MaxLazyTimeout", Config{MaxLazyTimeout: -1}, "MaxLazyTimeout"},
		{"MultiSessionInterval", Config{MultiSessionInterval: -1}, "MultiSessionInterval"},
		{"SweepInterval", Config{SweepInterval: -1}, "SweepInterval"},
		{"MaxQueue -2", Config{MaxQueue: -2}, "MaxQueue"},
		{"MaxQueue -1 means no cap", Config{MaxQueue: -1}, ""},
		{"MaxQueueBytes -5", Config{MaxQueueBytes: -5}, "MaxQueueBytes"},
		{"MaxQueueBytes -1 means no cap", Config{MaxQueueBytes: -1}, ""},
		{"MaxMessageSize", Config{MaxMessageSize: -1}, "MaxMessageSize"},
		{"MaxSessions -1", Config{MaxSessions: -1}, "MaxSessions"},
		{"MaxSessions 0 means no limit", Config{MaxSessions: 0}, ""},
		{"WSMessagesPerFrame -1", Config{WSMessagesPerFrame: -1}, "WSMessagesPerFrame"},
		{"WSMessagesPerFrame -3", Config{WSMessagesPerFrame: -3}, "WSMessagesPerFrame"},
		{"MaxSessionsPerBrowser -2", Config{MaxSessionsPerBrowser: -2}, "MaxSessionsPerBrowser"},
		{"MaxSessionsPerBrowser -1 means no limit", Config{MaxSessionsPerBrowser: -1}, ""},
		{"MaxSubscriptionsPerSession -7", Config{MaxSubscriptionsPerSession: -7}, "MaxSubscriptionsPerSession"},
		{"MaxSubscriptionsPerSession -1 means no cap", Config{MaxSubscriptionsPerSession: -1}, ""},
		{"DrainRate -0.5", Config{DrainRate: -0.5}, "DrainRate"},
		{"DrainRate NaN", Config{DrainRate: math.NaN()}, "DrainRate"},
		{"DrainRate -1 means all at once", Config{DrainRate: -1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewServer(tc.cfg)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("NewServer accepted a negative %s", tc.field)
			}
			if !strings.Contains(err.Error(), "Config."+tc.field+" ") {
				t.Errorf("error %q does not name Config.%s", err, tc.field)
			}
		})
	}
}
