package client_test

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

// fayeServer is Faye's Node server (npm faye), started from
// test/conformance/client-faye-server.cjs.
type fayeServer struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  int
	URL   string
	done  chan error
}

func conformanceDir(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate test source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "conformance")
}

// startFaye starts Faye on 127.0.0.1:port (0 = a free port) and waits until
// it listens. It is stopped when the test ends.
func startFaye(t testing.TB, port int) *fayeServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	dir := conformanceDir(t)
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
	f := &fayeServer{t: t, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
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
	t.Cleanup(f.stop)
	select {
	case f.port = <-portc:
	case err := <-f.done:
		f.done <- err
		t.Fatalf("faye server exited before listening: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("faye server did not report its port within 20s")
	}
	f.URL = fmt.Sprintf("http://127.0.0.1:%d/faye", f.port)
	return f
}

// kill stops the server abruptly (SIGKILL), as a crash would.
func (f *fayeServer) kill() {
	f.cmd.Process.Kill()
	f.wait()
}

// stop ends the server by closing its stdin.
func (f *fayeServer) stop() {
	f.stdin.Close()
	f.wait()
}

func (f *fayeServer) wait() {
	select {
	case err := <-f.done:
		f.done <- err
	case <-time.After(10 * time.Second):
		f.cmd.Process.Kill()
		err := <-f.done
		f.done <- err
	}
}
