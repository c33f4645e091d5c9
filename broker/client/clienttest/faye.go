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

// FayeServer is Faye's Node server (npm faye), started from
// test/conformance/client-faye-server.cjs.
type FayeServer struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	Port  int    // the port it listens on, on 127.0.0.1
	URL   string // its Bayeux endpoint, http://127.0.0.1:<port>/faye
	done  chan error
}

// ConformanceDir returns test/conformance, where the npm packages live.
func ConformanceDir(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate test source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "test", "conformance")
}

// StartFaye starts Faye on 127.0.0.1:port (0 = a free port) and waits until
// it listens. It is stopped when the test ends.
func StartFaye(t testing.TB, port int) *FayeServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	dir := ConformanceDir(t)
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "client-faye-server.cjs"), fmt.Sprint(port), "5", "600")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting faye server: %v", err)
	}
	f := &FayeServer{t: t, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
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
		t.Fatalf("faye server exited before listening: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("faye server did not report its port within 20s")
	}
	f.URL = fmt.Sprintf("http://127.0.0.1:%d/faye", f.Port)
	return f
}

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (f *FayeServer) Kill() {
	f.cmd.Process.Kill()
	f.wait()
}

// Stop ends the server by closing its stdin.
func (f *FayeServer) Stop() {
	f.stdin.Close()
	f.wait()
}

func (f *FayeServer) wait() {
	select {
	case err := <-f.done:
		f.done <- err
	case <-time.After(10 * time.Second):
		f.cmd.Process.Kill()
		err := <-f.done
		f.done <- err
	}
}
