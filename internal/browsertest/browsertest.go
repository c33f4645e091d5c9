// Package browsertest runs the real-browser conformance suite
// (test/conformance/browser-conformance.mjs): the CometD JavaScript client and
// Faye's browser client in a headless Chromium, on pages served from origins
// other than the broker's. The conformance tests run it against the broker
// binary, the e2e tests against a cluster's Service.
package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Chromium returns the path of a Chromium, installing Debian's package when
// none is found (hack/ensure-chromium.sh). It fails the test, never skips
// it, when there is none and it cannot be installed.
func Chromium(t testing.TB, root string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "ensure-chromium.sh"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("no Chromium for the browser suite, and hack/ensure-chromium.sh could not install one: %v\n%s", err, stderr.String())
	}
	p := strings.TrimSpace(stdout.String())
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		t.Fatalf("hack/ensure-chromium.sh named %q, which is not a file (%v)", p, err)
	}
	return p
}

// RequireNodeModules fails the test when the npm packages the suite needs
// are not installed in test/conformance/node_modules.
func RequireNodeModules(t testing.TB, root string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the browser suite drives Chromium with puppeteer-core under node")
	}
	for _, pkg := range []string{"cometd", "faye", "puppeteer-core"} {
		if _, err := os.Stat(filepath.Join(root, "test", "conformance", "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("npm package %s is missing from test/conformance/node_modules: run `make npm-deps`", pkg)
		}
	}
}

// Page is the suite's test page, served on a loopback port of its own, so
// that its origin is neither the broker's nor another Page's.
type Page struct {
	// URL is the page's address, on "localhost" (the broker is reached on
	// an IP address, so the two origins differ in host and port).
	URL string
	// Origin is what the browser sends as the page's Origin; list it in the
	// broker's allowedOrigins to allow the page.
	Origin string
}

// ServePage serves test/conformance/browser/index.html and the npm clients
// it loads (the cometd package's ES modules, Faye's browser bundle) until
// the test ends.
func ServePage(t testing.TB, root string) Page {
	t.Helper()
	dir := filepath.Join(root, "test", "conformance")
	mux := http.NewServeMux()
	mux.Handle("/node_modules/cometd/", http.FileServer(http.Dir(dir)))
	mux.Handle("/node_modules/faye/client/", http.FileServer(http.Dir(dir)))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "browser", "index.html"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(mux)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)
	origin := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	return Page{URL: origin + "/", Origin: origin}
}

// Config is what the suite runs against.
type Config struct {
	// Broker is the Bayeux URL (http://host:port/cometd).
	Broker string `json:"broker"`
	// Allowed is a page whose origin the broker allows; Denied one whose
	// origin it does not.
	Allowed, Denied Page `json:"-"`
	// Demo is the broker's demo page (http://host:port/demo/), on the
	// broker's origin: Faye's eventsource case runs there, and two of them
	// chat. A full run needs it: without it those cases are missing.
	Demo string `json:"demo"`
	// Screenshot, when set, is where the demo page's PNG is written.
	Screenshot string `json:"screenshot,omitempty"`
	// Only runs the cases whose name contains it.
	Only string `json:"only,omitempty"`
}

// Result is one case's outcome.
type Result struct {
	Case       string   `json:"case"`
	OK         bool     `json:"ok"`
	Transport  string   `json:"transport"`
	Steps      []string `json:"steps"`
	Error      string   `json:"error"`
	PageErrors []string `json:"pageErrors"`
	RTTMs      float64  `json:"rttMs"`
}

// Check says what is wrong with case name's result in results, or nil: it
// must be reported and pass, and a client case must have run over the
// transport its name asks for.
func Check(results map[string]Result, name string) error {
	r, ok := results[name]
	switch {
	case !ok:
		return fmt.Errorf("the suite did not report %s", name)
	case !r.OK:
		last := ""
		if len(r.Steps) > 0 {
			last = r.Steps[len(r.Steps)-1]
		}
		return fmt.Errorf("%s failed at %q (transport %q): %s\nsteps: %v\npage errors: %v", name, last, r.Transport, r.Error, r.Steps, r.PageErrors)
	case strings.HasPrefix(name, "cometd/") || strings.HasPrefix(name, "faye/"):
		if want := name[strings.Index(name, "/")+1:]; r.Transport != want {
			return fmt.Errorf("%s ran over %q, want %q", name, r.Transport, want)
		}
	}
	return nil
}

// Cases are the cases a full run reports, each of which must pass.
var Cases = []string{
	"cometd/websocket", "cometd/long-polling", "cometd/callback-polling",
	"faye/websocket", "faye/cross-origin-long-polling", "faye/callback-polling", "faye/eventsource",
	"eventsource-cors/allowed", "eventsource-cors/denied",
	"refused/cometd/websocket", "refused/cometd/long-polling", "refused/cometd/callback-polling",
	"refused/faye/websocket", "refused/faye/cross-origin-long-polling", "refused/faye/callback-polling",
	"refused/faye/eventsource",
	"demo/chat",
}

// Run runs the suite with chromium and returns each case's result, by name,
// and the browser's version. It fails the test if the runner fails.
func Run(t testing.TB, root, chromium string, cfg Config, timeout time.Duration) (map[string]Result, string) {
	t.Helper()
	arg, err := json.Marshal(struct {
		Config
		Chromium    string `json:"chromium"`
		AllowedPage string `json:"allowedPage"`
		DeniedPage  string `json:"deniedPage"`
	}{cfg, chromium, cfg.Allowed.URL, cfg.Denied.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "browser-conformance.mjs", string(arg))
	cmd.Dir = filepath.Join(root, "test", "conformance")
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	results := map[string]Result{}
	version, done := "", false
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Result
			Browser string `json:"browser"`
			Done    bool   `json:"done"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch {
		case line.Browser != "":
			version = line.Browser
		case line.Done:
			done = true
		case line.Case != "":
			results[line.Case] = line.Result
		}
	}
	if runErr != nil || !done {
		t.Fatalf("the browser suite did not finish (%v, deadline %v):\nstdout:\n%s\nstderr:\n%s", runErr, timeout, stdout.String(), stderr.String())
	}
	return results, version
}
