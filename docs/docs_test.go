// Package docs_test checks the user documentation against the code it
// describes, so that a new condition reason or a renamed metric cannot ship
// undocumented or documented wrongly.
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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
