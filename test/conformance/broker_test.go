// Package conformance runs clients nobody here wrote (the CometD JavaScript
// client and the Faye Node client) against the real broker binary, over every
// transport they support, and checks the broker's process-level behaviour
// (admin endpoints, drain on SIGTERM).
package conformance

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
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startWait bounds how long the broker may take to build or start.
const startWait = 3 * time.Minute

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// brokerBinary builds cmd/broker once per test process.
func brokerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "conformance-broker-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "broker")
		ctx, cancel := context.WithTimeout(context.Background(), startWait)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-race", "-o", buildPath, "./cmd/broker")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/broker: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// requireNode fails (never skips) when node or the npm clients are missing.
func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the conformance suite runs the CometD and Faye clients with node")
	}
	for _, pkg := range []string{"cometd", "cometd-nodejs-client", "faye"} {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "test", "conformance", "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("npm package %s is missing from test/conformance/node_modules: run `make npm-deps`", pkg)
		}
	}
}

// syncBuffer collects a process's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// broker is a running broker process.
type broker struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:port/cometd
	admin  string // http://127.0.0.1:port
	logs   *syncBuffer
	exited chan error
}

var addrRE = regexp.MustCompile(`msg="serving (bayeux|admin)" addr=(\S+)`)

// startBroker runs the broker binary on loopback ports chosen by the kernel.
func startBroker(t *testing.T, env ...string) *broker {
	t.Helper()
	bin := brokerBinary(t)
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--node", "conformance-0")
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{cmd: cmd, logs: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout = b.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 2)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = b.logs.Write([]byte(line + "\n"))
			if m := addrRE.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		_, _ = io.Copy(b.logs, stderr)
		b.exited <- cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() { b.stop(t) })
	deadline := time.After(startWait)
	for b.url == "" || b.admin == "" {
		select {
		case a := <-addrs:
			if a[0] == "bayeux" {
				b.url = "http://" + a[1] + "/cometd"
			} else {
				b.admin = "http://" + a[1]
			}
		case err := <-b.exited:
			t.Fatalf("broker exited at start-up: %v\n%s", err, b.logs)
		case <-deadline:
			t.Fatalf("broker did not report its addresses\n%s", b.logs)
		}
	}
	return b
}

// stop sends SIGTERM and waits for the process; it kills it if it hangs.
func (b *broker) stop(t *testing.T) {
	_ = b.cmd.Process.Signal(syscall.SIGTERM) // fails harmlessly once exited
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		t.Errorf("broker did not exit within 30s of SIGTERM\n%s", b.logs)
	}
}

// runNode runs a node script from this directory with a deadline and returns
// its stdout, stderr and error.
func runNode(t *testing.T, timeout time.Duration, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = filepath.Join(repoRoot(t), "test", "conformance")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("node %s: deadline of %v exceeded: %w", strings.Join(args, " "), timeout, err)
	}
	return stdout.String(), stderr.String(), err
}

// sigterm is the signal Kubernetes sends to stop a pod.
var sigterm = syscall.SIGTERM
