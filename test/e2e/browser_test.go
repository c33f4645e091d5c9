//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/browsertest"
)

// TestBrowsersThroughService runs the real-browser suite (the CometD
// JavaScript client and Faye's browser client in headless Chromium, every
// transport each has, a refused origin, two demo pages chatting) against a
// two-broker CometdCluster through its Service, which sends a client's
// requests, websocket and eventsource stream to either broker. The pages are
// served from this machine; the cluster allows one of their origins and
// serves its demo page (spec.broker.demo).
func TestBrowsersThroughService(t *testing.T) {
	e := cluster
	browsertest.RequireNodeModules(t, e.root)
	chromium := browsertest.Chromium(t, e.root)
	deployOperator(t, e)
	allowed := browsertest.ServePage(t, e.root)
	denied := browsertest.ServePage(t, e.root)

	ns := e.testNamespace(t, "e2e-browser-")
	const name = "browsers"
	e.apply(t, ns, fmt.Sprintf(`apiVersion: cometd.bayeux.dev/v1alpha1
kind: CometdCluster
metadata:
  name: %s
spec:
  replicas: 2
  broker:
    demo: true
    allowedOrigins: [%q]
  nats:
    managed:
      replicas: 1
`, name, allowed.Origin))
	waitSettled(t, e, ns, name, 2, 4*time.Minute)
	eventually(t, 2*time.Minute, "FanoutReady=True on the CometdCluster", func(ctx context.Context) (bool, string, error) {
		cc, err := e.getCluster(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		c := cc.condition("FanoutReady")
		return c.Status == "True", fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message), nil
	})

	base := serviceBase(t, e, ns, name)
	cfg := browsertest.Config{Broker: base + "/cometd", Allowed: allowed, Denied: denied, Demo: base + "/demo/"}
	results, version := browsertest.Run(t, e.root, chromium, cfg, 8*time.Minute)
	t.Logf("%s through %s: %d cases", version, base, len(results))
	for _, c := range browsertest.Cases {
		if err := browsertest.Check(results, c); err != nil {
			t.Error(err)
		}
	}
}
