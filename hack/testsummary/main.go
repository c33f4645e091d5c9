// Command testsummary reads `go test -json` on stdin, prints each package's result
// and the output of every failed test, and ends with one line
// "go test: N passed, N failed, N skipped". It exits non-zero when anything failed
// or when no test ran at all.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout))
}

func run(in io.Reader, out io.Writer) int {
	outputs := map[string]*strings.Builder{} // package/test -> output
	var passed, failed, skipped int
	var failedTests []string
	var buildErrors []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Build failures and other non-JSON lines are printed as they are.
			fmt.Fprintln(out, string(line))
			buildErrors = append(buildErrors, string(line))
			continue
		}
		key := e.Package + "/" + e.Test
		switch e.Action {
		case "output":
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			b.WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Test == "" {
				fmt.Fprintf(out, "%-4s %s (%.1fs)\n", strings.ToUpper(e.Action), e.Package, e.Elapsed)
				if e.Action == "fail" {
					if b := outputs[key]; b != nil {
						fmt.Fprint(out, indent(b.String()))
					}
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "skip":
				skipped++
			case "fail":
				failed++
				failedTests = append(failedTests, key)
				if b := outputs[key]; b != nil {
					fmt.Fprintf(out, "--- FAIL: %s %s\n%s", e.Package, e.Test, indent(b.String()))
				}
			}
			delete(outputs, key)
		}
	}
	sort.Strings(failedTests)
	for _, t := range failedTests {
		fmt.Fprintln(out, "failed:", t)
	}
	fmt.Fprintf(out, "go test: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(buildErrors) > 0 {
		return 1
	}
	if passed == 0 {
		fmt.Fprintln(out, "no test ran")
		return 1
	}
	return 0
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("    " + l)
		}
	}
	return b.String()
}
