package client_test

import "testing"

func TestFaye(t *testing.T) {
	f := startFaye(t, 0)
	runPeerSuite(t, f.URL)
}

func TestFayeReconnectAfterRestart(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			f := startFaye(t, 0)
			testReconnectAfterRestart(t, f.URL, tr, func() {
				f.kill()
				startFaye(t, f.port)
			})
		})
	}
}
