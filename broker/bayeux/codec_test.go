package bayeux

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeBatch(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []*Mutable
	}{
		{"single object", `{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}`,
			[]*Mutable{{Channel: "/meta/handshake", Version: "1.0", SupportedConnectionTypes: []string{"long-polling"}, ID: "1"}}},
		{"array", ` [ {"channel":"/a","data":{"x":[1,2.5e3,"s"]}} , {"channel":"/b","data":null} ] `,
			[]*Mutable{{Channel: "/a", Data: json.RawMessage(`{"x":[1,2.5e3,"s"]}`)}, {Channel: "/b", Data: json.RawMessage(`null`)}}},
		{"subscription string", `{"channel":"/meta/subscribe","subscription":"/x/*"}`,
			[]*Mutable{{Channel: "/meta/subscribe", Subscription: []string{"/x/*"}}}},
		{"subscription array", `{"channel":"/meta/subscribe","subscription":["/x","/y"]}`,
			[]*Mutable{{Channel: "/meta/subscribe", Subscription: []string{"/x", "/y"}, SubscriptionList: true}}},
		{"advice and escapes", `{"channel":"/a\u002fb\n\"","advice":{"timeout":0,"interval":1500,"reconnect":"none","x":{}},"successful":false}`,
			[]*Mutable{{Channel: "/a/b\n\"", Advice: &Advice{Timeout: 0, Interval: 1500, MaxInterval: -1, Reconnect: "none"}, Successful: False}}},
		{"numeric id and unknown fields", `{"id":42,"channel":"/a","foo":[{"bar":true}],"ext":{"ack":true}}`,
			[]*Mutable{{ID: "42", Channel: "/a", Ext: json.RawMessage(`{"ack":true}`)}}},
		{"surrogate pair", `{"channel":"/a","clientId":"\ud83d\ude00"}`,
			[]*Mutable{{Channel: "/a", ClientID: "😀"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeBatch([]byte(tc.in))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got[0], tc.want[0])
			}
		})
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		field string // "" means a syntax error is expected
	}{
		{"empty", ``, ""},
		{"truncated", `[{"channel":"/a"`, ""},
		{"trailing", `{"channel":"/a"} x`, ""},
		{"bad literal", `{"channel":"/a","data":tru}`, ""},
		{"bad number", `{"channel":"/a","data":01}`, ""},
		{"control char", "{\"channel\":\"/a\x01\"}", ""},
		{"bad escape", `{"channel":"\q"}`, ""},
		{"not an object", `[1]`, ""},
		{"invalid utf8", "{\"channel\":\"\xff\"}", ""},
		{"deep nesting", `{"data":` + string(make([]byte, 0)) + repeat("[", 300) + repeat("]", 300) + `}`, ""},
		{"channel number", `{"channel":5}`, "channel"},
		{"successful string", `{"channel":"/a","successful":"yes"}`, "successful"},
		{"subscription object", `{"channel":"/meta/subscribe","subscription":{}}`, "subscription"},
		{"subscription mixed array", `{"channel":"/meta/subscribe","subscription":["/a",1]}`, "subscription"},
		{"advice string", `{"channel":"/a","advice":"x"}`, "advice"},
		{"timeout string", `{"channel":"/a","advice":{"timeout":"1"}}`, "advice.timeout"},
		{"ext array", `{"channel":"/a","ext":[]}`, "ext"},
		{"connection types string", `{"channel":"/a","supportedConnectionTypes":"long-polling"}`, "supportedConnectionTypes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeBatch([]byte(tc.in))
			if err == nil {
				t.Fatal("expected an error")
			}
			var fe *FieldError
			var se *SyntaxError
			switch {
			case tc.field != "":
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Fatalf("want FieldError on %q, got %v", tc.field, err)
				}
			case !errors.As(err, &se):
				t.Fatalf("want SyntaxError, got %v", err)
			}
		})
	}
	if _, err := DecodeBatch([]byte(`[]`)); !errors.Is(err, ErrEmptyBatch) {
		t.Fatalf("empty array: got %v", err)
	}
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for range n {
		b = append(b, s...)
	}
	return string(b)
}

func TestEncodeRoundTrip(t *testing.T) {
	m := &Mutable{
		ID: "7", Channel: "/chat/demo", ClientID: "c1", Data: json.RawMessage(`{"text":"hi"}`),
		Ext: json.RawMessage(`{"ack":3}`), Successful: True, Error: "x\u2028y\"\\\x01",
		Subscription: []string{"/a"}, SubscriptionList: true, Version: "1.0",
		SupportedConnectionTypes: []string{"websocket"}, ConnectionType: "long-polling",
		AuthSuccessful: False, Timestamp: "t", Advice: &Advice{Reconnect: "retry", Interval: 0, Timeout: 30000, MaxInterval: -1, MultipleClients: true},
	}
	enc := m.AppendJSON(nil)
	if !json.Valid(enc) {
		t.Fatalf("invalid JSON: %s", enc)
	}
	got, err := Decode(enc)
	if err != nil {
		t.Fatalf("decode %s: %v", enc, err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	// encoding/json agrees on string content.
	var generic map[string]any
	if err := json.Unmarshal(enc, &generic); err != nil || generic["error"] != m.Error {
		t.Fatalf("encoding/json read error=%q err=%v", generic["error"], err)
	}
	if s := AppendString(nil, "a\xffb"); string(s) != `"a\ufffdb"` {
		t.Fatalf("invalid UTF-8 not replaced: %s", s)
	}
}

func TestExtFields(t *testing.T) {
	m := &Mutable{Channel: "/meta/connect", Ext: json.RawMessage(`{"ack":5,"other":"x"}`)}
	var ack int
	if !m.View().ExtField("ack", &ack) || ack != 5 {
		t.Fatalf("ack = %d", ack)
	}
	if err := m.SetExtField("ack", 6); err != nil {
		t.Fatal(err)
	}
	var other string
	if !m.View().ExtField("ack", &ack) || ack != 6 || !m.View().ExtField("other", &other) || other != "x" {
		t.Fatalf("after set: %s", m.Ext)
	}
	if m.View().ExtField("missing", &ack) {
		t.Fatal("missing key reported present")
	}
}

func TestSkipValue(t *testing.T) {
	for _, tc := range []struct {
		in  string
		end int // -1: an error
	}{
		{` {"a":[1,-2.5e3,true,null,"x\"\u00e9"]} ,`, 39},
		{`"s"x`, 3},
		{`0`, 1},
		{`01`, 1}, // one value; what follows is the caller's
		{`-`, -1},
		{`1.`, -1},
		{`"\x"`, -1},
		{`"\u12"`, -1},
		{"\"a\x01\"", -1},
		{`{"a" 1}`, -1},
		{`[1 2]`, -1},
		{`tru`, -1},
		{``, -1},
		{strings.Repeat("[", 300) + strings.Repeat("]", 300), -1},
	} {
		end, err := SkipValue([]byte(tc.in), 0)
		if tc.end < 0 {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("SkipValue(%q) = %d, %v; want a *SyntaxError", tc.in, end, err)
			}
			continue
		}
		if err != nil || end != tc.end {
			t.Errorf("SkipValue(%q) = %d, %v; want %d", tc.in, end, err, tc.end)
		}
	}
}
