package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode int
		wantLine string
	}{
		{"all pass", `{"Action":"pass","Package":"p","Test":"A"}
{"Action":"pass","Package":"p","Test":"B"}
{"Action":"skip","Package":"p","Test":"C"}
{"Action":"pass","Package":"p"}`, 0, "go test: 2 passed, 0 failed, 1 skipped"},
		{"a failure shows its output", `{"Action":"output","Package":"p","Test":"A","Output":"boom\n"}
{"Action":"fail","Package":"p","Test":"A"}
{"Action":"fail","Package":"p"}`, 1, "go test: 0 passed, 1 failed, 0 skipped"},
		{"no test ran", `{"Action":"pass","Package":"p"}`, 1, "go test: 0 passed, 0 failed, 0 skipped"},
		{"build error", "# p\n./x.go:1: syntax error\n" + `{"Action":"pass","Package":"q","Test":"A"}`, 1, "go test: 1 passed, 0 failed, 0 skipped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(strings.NewReader(tt.in), &out)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; output:\n%s", code, tt.wantCode, out.String())
			}
			if !strings.Contains(out.String(), tt.wantLine+"\n") {
				t.Errorf("output lacks %q:\n%s", tt.wantLine, out.String())
			}
			if tt.wantCode == 1 && strings.Contains(tt.in, "boom") && !strings.Contains(out.String(), "boom") {
				t.Errorf("failed test output not shown:\n%s", out.String())
			}
		})
	}
}
