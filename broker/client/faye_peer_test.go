package client_test

import (
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/client/clienttest"
)

func TestFaye(t *testing.T) {
	f := clienttest.StartFaye(t, 0)
	runPeerSuite(t, f.URL)
}

func TestFayeReconnectAfterRestart(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			f := clienttest.StartFaye(t, 0)
			testReconnectAfterRestart(t, f.URL, tr, func() {
				f.Kill()
				clienttest.StartFaye(t, f.Port)
			})
		})
	}
}
