package clienttest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BuildBroker builds cmd/broker into a temporary directory of t and returns
// the binary's path.
func BuildBroker(t testing.TB) string {
	t.Helper()
	root := filepath.Join(ConformanceDir(t), "..", "..")
	bin := filepath.Join(t.TempDir(), "broker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/broker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/broker: %v\n%s", err, out)
	}
	return bin
}

// BrokerProcess is the project's broker binary running with its embedded
// NATS backbone, listening on loopback only.
type BrokerProcess struct {
	t    testing.TB
	cmd  *exec.Cmd
	done chan error
	Addr string // host:port of the Bayeux listener
	URL  string // http://<Addr>/cometd
}

// StartBroker runs bin with its Bayeux listener on listen ("127.0.0.1:0"
// for a free port) and its admin listener on a free loopback port, and waits
// until it logs that it serves. It is killed when the test ends.
func StartBroker(t testing.TB, bin, listen string) *BrokerProcess {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := exec.CommandContext(ctx, bin, "--listen", listen, "--admin-listen", "127.0.0.1:0",
		"--node", "clienttest", "--log-format", "json")
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting broker: %v", err)
	}
	b := &BrokerProcess{t: t, cmd: cmd, done: make(chan error, 1)}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving bayeux" {
				addrc <- line.Addr
			}
		}
	}()
	go func() { b.done <- cmd.Wait(); cancel() }()
	t.Cleanup(b.Kill)
	select {
	case b.Addr = <-addrc:
	case err := <-b.done:
		b.done <- err
		t.Fatalf("broker exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not report its address within 30s")
	}
	b.URL = fmt.Sprintf("http://%s/cometd", b.Addr)
	return b
}

// Kill stops the broker abruptly (SIGKILL), as a crash would, and waits for
// it to exit.
func (b *BrokerProcess) Kill() {
	b.cmd.Process.Kill()
	err := <-b.done
	b.done <- err
}
