//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// subscriberDeadline bounds each node subscriber process.
const subscriberDeadline = 3 * time.Minute

// ensureNodeModules makes the npm clients installed for the conformance tests
// (test/conformance/node_modules) resolvable from clients.mjs.
func ensureNodeModules(t *testing.T, e env) {
	t.Helper()
	src := filepath.Join(e.root, "test", "conformance", "node_modules")
	if _, err := os.Stat(filepath.Join(src, "cometd")); err != nil {
		t.Fatalf("the npm clients are not installed (%v): run `make npm-deps`", err)
	}
	link := filepath.Join(e.root, "test", "e2e", "node_modules")
	if target, err := os.Readlink(link); err == nil && target == "../conformance/node_modules" {
		return
	}
	_ = os.Remove(link)
	if err := os.Symlink("../conformance/node_modules", link); err != nil {
		t.Fatal(err)
	}
}

// subscriber is a third-party client (node clients.mjs sub ...) subscribed to a
// channel; it reports which broker pods the messages it received came through.
type subscriber struct {
	name  string
	cmd   *exec.Cmd
	ready chan struct{}
	done  chan error

	mu     sync.Mutex
	via    map[string]int // pod name -> messages received through it
	errMsg string
	stderr strings.Builder
}

func startSubscriber(ctx context.Context, t *testing.T, e env, clientName, transport, url, channel string) *subscriber {
	t.Helper()
	s := &subscriber{
		name:  clientName + "/" + transport,
		ready: make(chan struct{}),
		done:  make(chan error, 1),
		via:   map[string]int{},
	}
	s.cmd = exec.CommandContext(ctx, "node", "clients.mjs", "sub", clientName, url, channel, "1000000", transport)
	s.cmd.Dir = filepath.Join(e.root, "test", "e2e")
	s.cmd.Env = append(os.Environ(), fmt.Sprintf("DEADLINE_MS=%d", subscriberDeadline.Milliseconds()))
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	s.cmd.WaitDelay = 5 * time.Second
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		readyOnce := sync.OnceFunc(func() { close(s.ready) })
		for sc.Scan() {
			var ev struct {
				Event string `json:"event"`
				Error string `json:"error"`
				Data  struct {
					Via string `json:"via"`
				} `json:"data"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			switch ev.Event {
			case "ready":
				readyOnce()
			case "message":
				s.mu.Lock()
				s.via[ev.Data.Via]++
				s.mu.Unlock()
			case "error":
				s.mu.Lock()
				s.errMsg = ev.Error
				s.mu.Unlock()
			}
		}
		s.done <- s.cmd.Wait()
	}()
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// seen reports whether the subscriber got a message through pod.
func (s *subscriber) seen(pod string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.via[pod] > 0
}

func (s *subscriber) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	pods := make([]string, 0, len(s.via))
	for p, n := range s.via {
		pods = append(pods, fmt.Sprintf("%s×%d", p, n))
	}
	sort.Strings(pods)
	msg := fmt.Sprintf("%s received via [%s]", s.name, strings.Join(pods, " "))
	if s.errMsg != "" {
		msg += "; error: " + s.errMsg
	}
	if s.stderr.Len() > 0 {
		msg += "; stderr: " + tail(s.stderr.String(), 5)
	}
	return msg
}

// waitReady waits until the subscription is confirmed, the process exits, or timeout.
func (s *subscriber) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-s.ready:
	case err := <-s.done:
		s.done <- err
		t.Fatalf("%s exited before subscribing: %v; %s", s.name, err, s)
	case <-time.After(timeout):
		t.Fatalf("%s did not subscribe within %s; %s", s.name, timeout, s)
	}
}

// brokerEndpoint is one broker pod behind the client Service.
type brokerEndpoint struct {
	pod string
	url string
}

// serviceEndpoints lists the ready pods behind a Service, from its EndpointSlices.
func (e env) serviceEndpoints(ctx context.Context, ns, svc string) ([]brokerEndpoint, error) {
	var slices list[struct {
		Endpoints []struct {
			Addresses  []string `json:"addresses"`
			Conditions struct {
				Ready *bool `json:"ready"`
			} `json:"conditions"`
			TargetRef struct {
				Name string `json:"name"`
			} `json:"targetRef"`
		} `json:"endpoints"`
		Ports []struct {
			Port int32 `json:"port"`
		} `json:"ports"`
	}]
	if err := e.getJSON(ctx, &slices, "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name="+svc); err != nil {
		return nil, err
	}
	var out []brokerEndpoint
	for _, s := range slices.Items {
		if len(s.Ports) == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 0 || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			out = append(out, brokerEndpoint{pod: ep.TargetRef.Name, url: fmt.Sprintf("http://%s:%d/cometd", ep.Addresses[0], s.Ports[0].Port)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pod < out[j].pod })
	return out, nil
}

// clientKind is a third-party client and the one transport it may use.
type clientKind struct{ client, transport string }

// checkFanout subscribes each of the given clients through the Service's
// ClusterIP, then publishes
// through every broker pod directly until each subscriber has received a
// message through each pod: so every subscriber gets messages that entered the
// cluster on a pod other than the one serving it.
func checkFanout(t *testing.T, e env, ns, name string, kinds ...clientKind) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), subscriberDeadline)
	defer cancel()

	endpoint := serviceURL(t, e, ns, name)
	channel := "/e2e/fanout/" + fmt.Sprint(time.Now().UnixNano())
	t.Logf("subscribing through the Service at %s on %s", endpoint, channel)

	var subs []*subscriber
	for _, c := range kinds {
		subs = append(subs, startSubscriber(ctx, t, e, c.client, c.transport, endpoint, channel))
	}
	defer func() {
		cancel()
		for _, s := range subs {
			<-s.done
		}
	}()
	for _, s := range subs {
		s.waitReady(t, 60*time.Second)
	}

	// EndpointSlices follow pod readiness a moment later: wait until the Service
	// lists every ready broker pod before publishing through each of them.
	var eps []brokerEndpoint
	eventually(t, time.Minute, "every ready broker pod behind the Service", func(ctx context.Context) (bool, string, error) {
		var err error
		if eps, err = e.serviceEndpoints(ctx, ns, name); err != nil {
			return false, "", err
		}
		pods, err := e.brokerPods(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		ready := readyCount(pods)
		return len(eps) >= 2 && len(eps) == ready, fmt.Sprintf("%d endpoints, %d ready pods", len(eps), ready), nil
	})
	if len(eps) < 2 {
		t.Fatalf("want at least 2 ready broker pods behind the Service, got %v", eps)
	}
	pubs := make([]*client.Client, len(eps))
	for i, ep := range eps {
		c, err := client.NewClient(client.Config{URL: ep.url})
		if err != nil {
			t.Fatal(err)
		}
		hctx, hcancel := context.WithTimeout(ctx, 20*time.Second)
		err = c.Handshake(hctx)
		hcancel()
		if err != nil {
			t.Fatalf("publisher handshake with %s (%s): %v", ep.pod, ep.url, err)
		}
		pubs[i] = c
		defer func() {
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer dcancel()
			_ = c.Disconnect(dctx)
		}()
	}

	// Interest spreads through NATS asynchronously: publish again through each
	// pod some subscriber has not yet heard from, until all have, or time is up.
	seq := 0
	took := testutil.Eventually(t, 90*time.Second, "every subscriber to receive messages published through every pod", func(context.Context) (bool, string) {
		missing := 0
		for i, ep := range eps {
			need := false
			for _, s := range subs {
				if !s.seen(ep.pod) {
					need = true
				}
			}
			if !need {
				continue
			}
			missing++
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			err := pubs[i].Publish(pctx, channel, map[string]any{"via": ep.pod, "seq": seq})
			pcancel()
			if err != nil {
				t.Logf("publish through %s: %v", ep.pod, err)
			}
		}
		seq++
		var report []string
		for _, s := range subs {
			report = append(report, s.String())
		}
		return missing == 0, fmt.Sprintf("pods %v; subscribers:\n%s", eps, strings.Join(report, "\n"))
	})
	for _, s := range subs {
		select {
		case err := <-s.done:
			t.Fatalf("%s exited early: %v", s, errors.Join(err))
		default:
		}
	}
	t.Logf("%d subscribers received messages through each of %d pods (%.1fs)", len(subs), len(eps), took.Seconds())
}
