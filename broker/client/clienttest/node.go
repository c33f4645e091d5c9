// Package clienttest starts real Bayeux peer servers for tests of
// broker/client and of tools built on it.
package clienttest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// NodeServer is a third-party Bayeux server running under node, started
// from a script in test/conformance that prints {"port": N} once it listens
// and exits when its stdin closes.
type NodeServer struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	Port  int    // the port it listens on, on 127.0.0.1
	URL   string // its Bayeux endpoint, http://127.0.0.1:<port>/<mount>
	done  chan error
}

// FayeServer is Faye's Node server (npm faye).
type FayeServer = NodeServer

// ConformanceDir returns test/conformance, where the npm packages live.
func ConformanceDir(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate test source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "test", "conformance")
}

// StartFaye starts Faye (test/conformance/client-faye-server.cjs) on
// 127.0.0.1:port (0 = a free port) and waits until it listens. It is stopped
// when the test ends.
func StartFaye(t testing.TB, port int) *FayeServer {
	t.Helper()
	return startNode(t, "faye server", "/faye", "client-faye-server.cjs", fmt.Sprint(port), "5", "600")
}

// StartCometDNode starts the CometD project's Node server (npm
// cometd-nodejs-server, long-polling only; test/conformance/cometd-node-server.cjs)
// on 127.0.0.1:port (0 = a free port), with a 5 s connect timeout, and waits
// until it listens. It is stopped when the test ends.
func StartCometDNode(t testing.TB, port int) *NodeServer {
	t.Helper()
	return startNode(t, "cometd node server", "/cometd", "cometd-node-server.cjs", fmt.Sprint(port), "5000")
}

// startNode runs node script args in test/conformance and waits for the port
// it reports.
func startNode(t testing.TB, name, mount, script string, args ...string) *NodeServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	dir := ConformanceDir(t)
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	f := &NodeServer{name: name, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	portc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct{ Port int }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Port > 0 {
				portc <- line.Port
			}
		}
	}()
	go func() { f.done <- cmd.Wait(); cancel() }()
	t.Cleanup(f.Stop)
	select {
	case f.Port = <-portc:
	case err := <-f.done:
		f.done <- err
		t.Fatalf("%s exited before listening: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not report its port within 20s", name)
	}
	f.URL = fmt.Sprintf("http://127.0.0.1:%d%s", f.Port, mount)
	return f
}

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (f *NodeServer) Kill() {
	f.cmd.Process.Kill()
	f.wait()
}

// Stop ends the server by closing its stdin.
func (f *NodeServer) Stop() {
	f.stdin.Close()
	f.wait()
}

func (f *NodeServer) wait() {
	select {
	case err := <-f.done:
		f.done <- err
	case <-time.After(10 * time.Second):
		f.cmd.Process.Kill()
		err := <-f.done
		f.done <- err
	}
}
