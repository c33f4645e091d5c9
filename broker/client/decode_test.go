package client

import (
	"encoding/json"
	"reflect"
	"testing"
)

var decodeSeeds = []string{
	`[]`,
	`[{"channel":"/meta/handshake","id":"1","successful":true,"clientId":"abc","version":"1.0","supportedConnectionTypes":["websocket","long-polling"],"advice":{"reconnect":"retry","interval":0,"timeout":30000},"ext":{"ack":true}}]`,
	`[{"channel":"/meta/connect","id":"7","successful":true,"ext":{"ack":3}},{"channel":"/chat/a","data":{"n":1,"s":"x\"y"},"id":"99"}]`,
	`[ {"channel":"/a","data":[1,2.5e3,-0.1,true,false,null,"\u00e9\ud83d\ude00"]} , {"channel":"/b","data":"caf\u00e9"} ]`,
	`[{"channel":"/meta/subscribe","successful":false,"error":"403:/a:denied","subscription":["/a","/b"]}]`,
	`[{"channel":"/meta/subscribe","successful":true,"subscription":"/a"}]`,
	`[{"channel":"/x","data":null,"advice":null,"ext":null,"successful":null,"unknown":{"deep":[[[]]]}}]`,
	`[{"Channel":"/upper"}]`,
	`[{"channel":"/a","channel":"/b","ext":{"a":1},"ext":{"b":2}}]`,
	`[{"channel":"/é","data":"\u0000"}]`,
	`[{"channel":5}]`,
	`[null]`,
	`[{"channel":"/a"},]`,
	`[{"channel":"/a","data":01}]`,
	`[{"channel":"/a","data":{"k":tru}}]`,
	"[{\"channel\":\"\xff\"}]",
	`[{"channel":"/a"}] x`,
	`[{"id":"1","successful":"yes"}]`,
	`[{"dATA":null}]`, // a known key but for case, with null: left to encoding/json (found by the fuzzer)
	`[{"advice":{"Interval":null}}]`,
}

// FuzzFastDecode checks the fast decoder against encoding/json: whenever it
// accepts input, encoding/json accepts it too and decodes the same messages.
func FuzzFastDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastDecodeBatch(append([]byte(nil), b...))
		var ref []*Message
		err := json.Unmarshal(b, &ref)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("fast decoder accepted %q, encoding/json refused: %v", b, err)
		}
		if len(fast) != len(ref) {
			t.Fatalf("%q: %d messages, encoding/json %d", b, len(fast), len(ref))
		}
		for i := range fast {
			if !reflect.DeepEqual(fast[i], ref[i]) {
				t.Fatalf("%q: message %d\nfast %+v\njson %+v", b, i, fast[i], ref[i])
			}
		}
	})
}

func TestFastDecodeTakesCommonShapes(t *testing.T) {
	for _, s := range decodeSeeds[:7] {
		if _, ok := fastDecodeBatch([]byte(s)); !ok {
			t.Errorf("fast path declined %s", s)
		}
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	body := []byte(`[{"channel":"/meta/connect","id":"7","successful":true,"advice":{"reconnect":"retry","interval":0,"timeout":30000}},{"channel":"/bench/0","data":{"p":1,"s":12345,"t":1763900000000000000},"id":"99"},{"channel":"/bench/0","data":{"p":1,"s":12346,"t":1763900000000000000},"id":"100"}]`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := fastDecodeBatch(body); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m []*Message
			if err := json.Unmarshal(body, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
