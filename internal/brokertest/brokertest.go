// Package brokertest runs the real broker binary (cmd/broker) for tests: it
// builds the module's commands once per test process, starts a broker on
// loopback ports chosen by the kernel, reads the addresses it reports, and
// stops it with SIGTERM.
package brokertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// StartWait bounds building a command and starting a broker.
	StartWait = 3 * time.Minute
	// stopWait bounds a broker's exit after SIGTERM.
	stopWait = 30 * time.Second
)

// RepoRoot is the module root: the nearest directory above the working
// directory (a test's package directory) that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("cannot find the module root above %s", wd)
		}
	}
}

// builds caches the binaries this test process built, by package and flags.
var (
	buildMu sync.Mutex
	builds  = map[string]string{}
)

// Binary builds the command pkg of this module (for example "./cmd/broker"),
// with the race detector when race is set, once per test process, and returns
// its path.
func Binary(t testing.TB, pkg string, race bool) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := fmt.Sprint(pkg, race)
	if p, ok := builds[key]; ok {
		return p
	}
	// One directory for the whole process: the binaries outlive the test that
	// built them.
	dir, err := os.MkdirTemp("", "brokertest-bin-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, fmt.Sprintf("%s-race%v", filepath.Base(pkg), race))
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	builds[key] = out
	return out
}

// SyncBuffer collects a process's output safely.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Broker is a running broker process.
type Broker struct {
	// Name names the broker in failure messages.
	Name string
	// Cmd is the process.
	Cmd *exec.Cmd
	// Addr is the client listener's host:port: pass it as --listen to start
	// a broker again on the same address.
	Addr string
	// URL is the client endpoint, http://<Addr>/cometd.
	URL string
	// Admin is the admin endpoint, http://127.0.0.1:port.
	Admin string
	// Logs holds the process's stdout and stderr.
	Logs *SyncBuffer
	// Exited receives the process's exit status once, then is closed.
	Exited chan error
}

var addrRE = regexp.MustCompile(`msg="serving (bayeux|admin)" addr=(\S+)`)

// Start runs the broker binary bin with args and the extra environment env,
// listening on loopback ports chosen by the kernel, and waits until it has
// reported both addresses. args come after the loopback --listen and
// --admin-listen, so they may override them (the last value of a flag wins).
// The broker is stopped when the test ends.
func Start(t testing.TB, bin, name string, args []string, env ...string) *Broker {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)...)
	// A broker stopped in a test needs no time for a Service to notice: no
	// linger after its drain, unless env asks for one.
	cmd.Env = append(append(os.Environ(), "COMETD_DRAIN_LINGER_MS=-1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{Name: name, Cmd: cmd, Logs: &SyncBuffer{}, Exited: make(chan error, 1)}
	cmd.Stdout = b.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 2)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = b.Logs.Write([]byte(line + "\n"))
			if m := addrRE.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		_, _ = io.Copy(b.Logs, stderr)
		b.Exited <- cmd.Wait()
		close(b.Exited)
	}()
	t.Cleanup(func() { b.Stop(t) })
	deadline := time.After(StartWait)
	for b.URL == "" || b.Admin == "" {
		select {
		case a := <-addrs:
			if a[0] == "bayeux" {
				b.Addr = a[1]
				b.URL = "http://" + a[1] + "/cometd"
			} else {
				b.Admin = "http://" + a[1]
			}
		case err := <-b.Exited:
			t.Fatalf("broker %s exited at start-up: %v\n%s", b.Name, err, b.Logs)
		case <-deadline:
			t.Fatalf("broker %s did not report its addresses\n%s", b.Name, b.Logs)
		}
	}
	return b
}

// Stop sends SIGTERM and waits for the process; it kills it if it hangs. When
// the test has failed, it logs the broker's output.
func (b *Broker) Stop(t testing.TB) {
	_ = b.Cmd.Process.Signal(syscall.SIGTERM) // fails harmlessly once exited
	select {
	case <-b.Exited:
	case <-time.After(stopWait):
		_ = b.Cmd.Process.Kill()
		<-b.Exited
		t.Errorf("broker %s did not exit within %v of SIGTERM\n%s", b.Name, stopWait, b.Logs)
	}
	if t.Failed() {
		t.Logf("logs of %s:\n%s", b.Name, b.Logs)
	}
}

// Kill stops the broker abruptly (SIGKILL), as a crash would, and waits for
// it to exit.
func (b *Broker) Kill(t testing.TB) {
	_ = b.Cmd.Process.Kill() // fails harmlessly once exited
	select {
	case <-b.Exited:
	case <-time.After(stopWait):
		t.Errorf("broker %s did not exit within %v of SIGKILL", b.Name, stopWait)
	}
}
