// Package docs_test checks the user documentation against the code it
// describes, so that a new condition reason or a renamed metric cannot ship
// undocumented or documented wrongly.
package docs_test

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/testenv"
)

var root = testenv.RepoRoot()

// stringConsts returns the exported string constants declared in the non-test
// Go files under dir whose names start with prefix, as name → value.
func stringConsts(t *testing.T, dir, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !name.IsExported() || !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						return err
					}
					out[filepath.Base(path)+":"+name.Name] = v
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tableRows returns the lines of a Markdown file that are table rows.
func tableRows(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "|") {
			rows = append(rows, line)
		}
	}
	return rows
}

func anyRowContains(rows []string, s string) bool {
	for _, r := range rows {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// Every condition type (api/v1alpha1) and every condition reason (the
// controllers) has a row in the troubleshooting tables of operations.md.
func TestOperationsDocumentsEveryCondition(t *testing.T) {
	rows := tableRows(t, "operations.md")
	reasons := stringConsts(t, filepath.Join(root, "controllers"), "Reason")
	maps := []map[string]string{reasons, stringConsts(t, filepath.Join(root, "api"), "Reason")}
	if len(reasons) < 20 {
		t.Fatalf("found only %d Reason constants under controllers/: has the code moved? %v", len(reasons), reasons)
	}
	for _, m := range maps {
		for name, v := range m {
			if !anyRowContains(rows, "`"+v+"`") {
				t.Errorf("docs/operations.md has no table row for reason `%s` (%s)", v, name)
			}
		}
	}
	types := stringConsts(t, filepath.Join(root, "api"), "Condition")
	if len(types) < 6 {
		t.Fatalf("found only %d Condition constants under api/: %v", len(types), types)
	}
	for name, v := range types {
		if !anyRowContains(rows, "| "+v+"=") {
			t.Errorf("docs/operations.md has no table row for condition %s (%s)", v, name)
		}
	}
}

// exportedMetrics starts the real broker (with its embedded NATS backbone) and
// scrapes its admin /metrics: the names of every metric family it exports,
// with their types.
func exportedMetrics(t *testing.T) map[string]string {
	t.Helper()
	b := brokertest.Start(t, brokertest.Binary(t, "./cmd/broker", false), "docs-0", []string{"--node", "docs-0"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.Admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %v\n%s", b.Admin, resp.StatusCode, err, body)
	}
	families := map[string]string{}
	for line := range strings.Lines(string(body)) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	if _, ok := families["cometd_sessions"]; !ok {
		t.Fatalf("the broker's /metrics has no cometd_sessions family:\n%s", body)
	}
	return families
}

// exports says whether name is an exported family, or a series of one (a
// histogram's or summary's _bucket, _sum and _count).
func exports(families map[string]string, name string) bool {
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if typ := families[base]; typ == "histogram" || (typ == "summary" && suffix != "_bucket") {
				return true
			}
		}
	}
	return false
}

var (
	// metricName is a cometd_ metric name in a PromQL expression.
	metricName = regexp.MustCompile(`cometd_[a-zA-Z0-9_]*`)
	// nameMatcher is a PromQL matcher on the metric name: {__name__=~"re"}.
	nameMatcher = regexp.MustCompile(`__name__\s*=~\s*"([^"]*)"`)
	// docMetric is a metric name in backquotes in Markdown, possibly with
	// brace alternatives: cometd_backbone_{in,out}_total.
	docMetric = regexp.MustCompile("`(cometd_[a-z0-9_{},]*)`")
	braces    = regexp.MustCompile(`\{([^{}]*)\}`)
)

// expand expands the first {a,b} of s, recursively.
func expand(s string) []string {
	loc := braces.FindStringSubmatchIndex(s)
	if loc == nil {
		return []string{s}
	}
	var out []string
	for _, alt := range strings.Split(s[loc[2]:loc[3]], ",") {
		out = append(out, expand(s[:loc[0]]+alt+s[loc[1]:])...)
	}
	return out
}

// operatorMetrics are the names of the metrics the operator declares
// (controllers/*.go: Name: "cometd_operator_…").
func operatorMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "controllers", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range operatorMetricName.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
	}
	if len(out) == 0 {
		t.Fatal("found no operator metric under controllers/: has the code moved?")
	}
	return out
}

var operatorMetricName = regexp.MustCompile(`Name:\s*"(cometd_operator_[a-z0-9_]+)"`)

// The metrics operations.md and the Grafana dashboard name are the metrics a
// real broker exports, and operations.md lists every cometd_ metric it exports.
func TestDocumentedMetricsAreExported(t *testing.T) {
	families := exportedMetrics(t)

	ops, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	operator := operatorMetrics(t)
	for _, m := range docMetric.FindAllStringSubmatch(string(ops), -1) {
		for _, name := range expand(m[1]) {
			documented[name] = true
			if strings.HasPrefix(name, "cometd_operator_") {
				if !operator[name] {
					t.Errorf("docs/operations.md names metric %s, which the operator does not register", name)
				}
				continue
			}
			if !exports(families, name) {
				t.Errorf("docs/operations.md names metric %s, which the broker does not export", name)
			}
		}
	}
	for name := range families {
		if strings.HasPrefix(name, "cometd_") && !documented[name] {
			t.Errorf("the broker exports %s, which docs/operations.md does not list", name)
		}
	}

	raw, err := os.ReadFile(filepath.Join(root, "docs", "grafana", "cometd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dashboard any
	if err := json.Unmarshal(raw, &dashboard); err != nil {
		t.Fatalf("cometd-dashboard.json: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if strings.Contains(v, "cometd_") {
				exprs = append(exprs, v)
			}
		}
	}
	walk(dashboard)
	if len(exprs) < 5 {
		t.Fatalf("found only %d expressions naming cometd_ metrics in the dashboard", len(exprs))
	}
	for _, expr := range exprs {
		for _, m := range nameMatcher.FindAllStringSubmatch(expr, -1) {
			re, err := regexp.Compile("^(?:" + m[1] + ")$")
			if err != nil {
				t.Errorf("dashboard expression %q: bad __name__ regexp: %v", expr, err)
				continue
			}
			matched := false
			for name := range families {
				matched = matched || re.MatchString(name)
			}
			if !matched {
				t.Errorf("dashboard expression %q: __name__=~%q matches no metric the broker exports", expr, m[1])
			}
		}
		for _, name := range metricName.FindAllString(nameMatcher.ReplaceAllString(expr, ""), -1) {
			if !exports(families, name) {
				t.Errorf("dashboard expression %q names metric %s, which the broker does not export", expr, name)
			}
		}
	}
}

var (
	applySample   = regexp.MustCompile(`kubectl apply -f (config/samples/\S+\.ya?ml)`)
	clusterByName = regexp.MustCompile(`kubectl \w+ (?:cometdcluster|cometdclusters|cdc)[/ ]([a-z0-9][a-z0-9.-]*)`)
)

// In a shell block of the docs that applies a sample, every kubectl command on
// a CometdCluster names a cluster that sample defines.
func TestDocsCommandsNameTheAppliedCluster(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs: %v", err)
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blocks := strings.Split(string(b), "```")
		for i := 1; i < len(blocks); i += 2 { // odd parts are inside fences
			block := blocks[i]
			applied := map[string]bool{}
			for _, m := range applySample.FindAllStringSubmatch(block, -1) {
				for _, name := range sampleClusterNames(t, m[1]) {
					applied[name] = true
				}
			}
			if len(applied) == 0 {
				continue
			}
			for _, m := range clusterByName.FindAllStringSubmatch(block, -1) {
				checked++
				if !applied[m[1]] {
					t.Errorf("%s: %q names CometdCluster %s, but the block applies %v", filepath.Base(f), m[0], m[1], applied)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no kubectl command on a CometdCluster after a sample was applied: has the quickstart moved?")
	}
}

// sampleClusterNames returns the names of the CometdClusters a sample file defines.
func sampleClusterNames(t *testing.T, rel string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatalf("docs apply %s: %v", rel, err)
	}
	var names []string
	for _, doc := range strings.Split(string(b), "\n---") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if obj.Kind == "CometdCluster" {
			names = append(names, obj.Metadata.Name)
		}
	}
	return names
}
