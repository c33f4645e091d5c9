package conformance

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/browsertest"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// TestBrowsers runs the CometD JavaScript client and Faye's browser client in
// a real headless Chromium against the broker binary, on every transport each
// has, from a page on another origin that the broker allows; the same page on
// an origin the broker does not allow is refused on every transport; and two
// demo pages chat with each other. It fails, never skips, without a browser
// (hack/ensure-chromium.sh installs Debian's chromium when it is missing).
//
// DEMO_SCREENSHOT=<path> writes the demo page's screenshot there (make
// docs-screenshot); BROWSER_CASES=<substring> runs only the matching cases.
func TestBrowsers(t *testing.T) {
	requireNode(t)
	root := repoRoot(t)
	browsertest.RequireNodeModules(t, root)
	chromium := browsertest.Chromium(t, root)
	allowed := browsertest.ServePage(t, root)
	denied := browsertest.ServePage(t, root)
	b := startBroker(t, "COMETD_ALLOWED_ORIGINS="+allowed.Origin, "COMETD_DEMO=true")
	testutil.Eventually(t, 30*time.Second, "the broker to report its demo page", func(context.Context) (bool, string) {
		return strings.Contains(b.Logs.String(), `msg="serving the demo page"`), b.Logs.String()
	})
	cfg := browsertest.Config{
		Broker: b.URL, Allowed: allowed, Denied: denied,
		Demo:       strings.TrimSuffix(b.URL, "/cometd") + "/demo/",
		Screenshot: os.Getenv("DEMO_SCREENSHOT"),
		Only:       os.Getenv("BROWSER_CASES"),
	}
	results, version := browsertest.Run(t, root, chromium, cfg, 5*time.Minute)
	t.Logf("%s: %d cases", version, len(results))
	for _, name := range browsertest.Cases {
		if cfg.Only != "" && !strings.Contains(name, cfg.Only) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			if err := browsertest.Check(results, name); err != nil {
				t.Fatal(err)
			}
			if r := results[name]; name == "demo/chat" {
				t.Logf("demo: transport %s, round trip %.1f ms", r.Transport, r.RTTMs)
			}
		})
	}
}

// TestDemoBundleIsFaye: the Faye bundle the broker's demo page embeds is the
// one the npm package (and so this suite) has.
func TestDemoBundleIsFaye(t *testing.T) {
	requireNode(t)
	root := repoRoot(t)
	embedded, err := os.ReadFile(filepath.Join(root, "broker", "demo", "static", "faye-browser-min.js"))
	if err != nil {
		t.Fatal(err)
	}
	npm, err := os.ReadFile(filepath.Join(root, "test", "conformance", "node_modules", "faye", "client", "faye-browser-min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(embedded, npm) {
		t.Fatal("broker/demo/static/faye-browser-min.js differs from the npm faye package's: copy it again after upgrading faye")
	}
}
