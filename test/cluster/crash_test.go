package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/jsclient"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// recoveryBound is how soon after its broker's SIGKILL every client must be
// publishing and receiving again. It is typically 1.6-3 s here (the test logs
// each); the bound leaves room for a loaded machine, where a client whose
// connect failed waits out the CometD client's backoff (one more second per
// failed attempt) before it tries again.
const recoveryBound = 8 * time.Second

// startCrashBroker starts a broker of cluster; durable ones keep their
// sessions in JetStream.
func startCrashBroker(t *testing.T, cluster, node, natsURL string, durable bool) *broker {
	t.Helper()
	env := []string{"COMETD_CLUSTER=" + cluster, "COMETD_DRAIN_GRACE_PERIOD_MS=2000"}
	if durable {
		env = append(env, "COMETD_DURABLE=true")
	}
	b := &broker{brokertest.Start(t, brokerBinary(t), cluster+"/"+node, []string{"--node", node, "--nats-url", natsURL}, env...)}
	b.waitReady(t, true)
	return b
}

// TestBrokersKilledInTurn SIGKILLs each of three brokers in turn, behind a
// proxy that follows /readyz, while a CometD client publishes at 50 messages
// a second to CometD clients with the ack extension (long-polling and
// websocket) and Faye clients; each killed broker is replaced by a new one.
// After each kill, the time until a message published after the kill has
// reached every client is under recoveryBound, and no publish sent after
// that fails.
//
// Without durability the dead broker's sessions are lost: their clients
// handshake again, and their losses are reported. With durability, another
// broker adopts each of them: the ack clients lose and duplicate nothing,
// and no client handshakes again.
func TestBrokersKilledInTurn(t *testing.T) {
	for _, durable := range []bool{false, true} {
		name := "without durability"
		if durable {
			name = "with durability"
		}
		t.Run(name, func(t *testing.T) { killInTurn(t, durable) })
	}
}

func killInTurn(t *testing.T, durable bool) {
	jsclient.NodeModules(t)
	nats := startNATS(t)
	cluster := "crash"
	if durable {
		nats = startJetStream(t)
		cluster = "crash-durable"
	}
	px := newReadyProxy(t)
	var gen0 []*broker
	for i := range 3 {
		b := startCrashBroker(t, cluster, fmt.Sprintf("g0-b%d", i), nats.url(), durable)
		px.add(b)
		gen0 = append(gen0, b)
	}
	endpoint := px.srv.URL + "/cometd"
	acks, fayes := jsclient.StartMix(t, endpoint, "/crash/**")
	all := append(append([]*jsclient.Client(nil), acks...), fayes...)
	pubClient := jsclient.Start(t, "cometd", endpoint, "long-polling")
	pub := jsclient.StartRatePublisher(pubClient, "/crash/x", 20*time.Millisecond)

	type window struct{ from, to int64 } // publishes sent between a kill and its recovery
	var outages []window
	var recoveries []time.Duration
	for i, old := range gen0 {
		before := pub.Sent()
		testutil.Eventually(t, waitTimeout, "traffic before the next kill", func(context.Context) (bool, string) {
			return pub.Sent() >= before+25, fmt.Sprintf("%d sent", pub.Sent())
		})
		// Publishes the client has not had answered yet may be in flight to
		// the broker about to be killed: the outage starts after the last
		// one answered before the kill.
		from := jsclient.LastAnswered(pubClient) + 1
		old.Kill(t)
		killed := time.Now()
		px.remove(old)
		sentBefore := pub.Sent() // publishes from this index on were sent after the kill
		var to int64
		testutil.Eventually(t, 3*recoveryBound, "every client to receive a message published after the kill", func(context.Context) (bool, string) {
			ok, state := jsclient.ReceivedByAll(pubClient, sentBefore, all)
			if ok {
				to = pub.Sent()
			}
			return ok, state
		})
		took := time.Since(killed)
		recoveries = append(recoveries, took)
		outages = append(outages, window{from, to})
		t.Logf("%s killed: every client publishing and receiving again after %v", old.Name, took.Round(10*time.Millisecond))
		if took > recoveryBound {
			t.Errorf("recovery from the kill of %s took %v, more than %v", old.Name, took, recoveryBound)
		}
		nb := startCrashBroker(t, cluster, fmt.Sprintf("g1-b%d", i), nats.url(), durable)
		px.add(nb)
	}
	before := pub.Sent()
	testutil.Eventually(t, waitTimeout, "traffic after the last kill", func(context.Context) (bool, string) {
		return pub.Sent() >= before+25, fmt.Sprintf("%d sent", pub.Sent())
	})
	var published, unanswered []string
	var failed []jsclient.Event
	if durable {
		published, failed = pub.Finish(t)
	} else {
		published, failed, unanswered = pub.FinishUnanswered(t)
	}
	t.Logf("recoveries %v; %d published, %d failed, %d dropped by the client unanswered", recoveries, len(published), len(failed), len(unanswered))
	during := func(id string) bool {
		idx, _ := strconv.ParseInt(strings.TrimPrefix(id, "m"), 10, 64)
		for _, w := range outages {
			if idx >= w.from && idx < w.to {
				return true
			}
		}
		return false
	}
	for _, e := range failed {
		if !during(e.PayloadID()) {
			t.Errorf("publish %s failed outside the outages %v: %+v", e.PayloadID(), outages, e)
		}
	}
	for _, id := range unanswered {
		if !during(id) {
			t.Errorf("publish %s went unanswered outside the outages %v", id, outages)
		}
	}
	if durable {
		jsclient.CheckDelivery(t, acks, fayes, published, failed, len(failed))
		if n := pubClient.Handshakes(); n != 1 {
			t.Errorf("the publisher handshook %d times", n)
		}
		return
	}
	last := published[len(published)-1]
	for _, c := range acks {
		c.WaitMessage(last)
	}
	for _, c := range all {
		lost, dup := jsclient.LossReport(c, published)
		t.Logf("%-28s %d lost, %d duplicated of %d; %d handshakes", c.Name(), lost, dup, len(published), c.Handshakes())
	}
	t.Logf("the publisher handshook %d times", pubClient.Handshakes())
}
