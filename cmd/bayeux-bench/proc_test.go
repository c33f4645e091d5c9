package main

import (
	"os"
	"testing"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want float64
		ok   bool
	}{
		{"plain", "42 (broker) S 1 42 42 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 1 2 3", 3.8, true},
		{"spaces and parentheses in the name", "7 (node (x) y) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 2 3", 0.03, true},
		{"truncated", "7 (node) R 1 7", 0, false},
		{"no name", "7 node R", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat))
			if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
				t.Fatalf("parseStatCPU = %v, %v; want %v (ok %v)", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	got, err := parseStatusRSS([]byte("Name:\tbroker\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t9\n"))
	if err != nil || got != 1234<<10 {
		t.Fatalf("parseStatusRSS = %v, %v", got, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tx\n")); err == nil {
		t.Fatal("no VmRSS accepted")
	}
}

// TestReadProcSelf reads this test process, which has used some CPU and
// memory.
func TestReadProcSelf(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes <= 0 || s.CPUSeconds < 0 {
		t.Fatalf("readProc(self) = %+v", s)
	}
}
