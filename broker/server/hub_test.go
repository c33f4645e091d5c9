package server

import (
	"sync"
	"testing"
	"time"
)

// returnsWithin runs f and fails the test if it has not returned within
// testWait (a deadlock).
func returnsWithin(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatalf("%s did not return: deadlock", what)
	}
}

// TestCreateChannelInitializerUsesTheChannel: an initializer may change the
// channel it initialises and subscribe sessions to it (it used to run under
// the channel map's lock, and both hung forever).
func TestCreateChannelInitializerUsesTheChannel(t *testing.T) {
	ts := newTestServer(t, Config{})
	id := ts.connected(t)
	ss := ts.Session(id)

	var persistent *ServerChannel
	returnsWithin(t, "CreateChannel with SetPersistent in init", func() {
		c, err := ts.CreateChannel("/init/persistent", func(c *ServerChannel) {
			c.SetPersistent(true)
			c.SetPersistent(false)
			c.SetPersistent(true)
		})
		if err != nil {
			t.Error(err)
		}
		persistent = c
	})
	if persistent == nil || !persistent.IsPersistent() || ts.Channel("/init/persistent") != persistent {
		t.Fatalf("the persistent channel is not in the server: %v", persistent)
	}

	var subscribed *ServerChannel
	returnsWithin(t, "CreateChannel with Subscribe in init", func() {
		c, err := ts.CreateChannel("/init/subscribe", func(c *ServerChannel) {
			if err := c.Subscribe(ss); err != nil {
				t.Error(err)
			}
		})
		if err != nil {
			t.Error(err)
		}
		subscribed = c
	})
	if subscribed == nil || subscribed.SubscriberCount() != 1 || ts.Channel("/init/subscribe") != subscribed {
		t.Fatalf("the initializer's subscription is missing: %v", subscribed)
	}
	if err := ts.Publish("/init/subscribe", "hello"); err != nil {
		t.Fatal(err)
	}
	if ev := events(ts.connect(t, id)); len(ev) != 1 || ev[0]["data"] != "hello" {
		t.Fatalf("the subscriber got %v", ev)
	}
}

// TestCreateChannelWaitsForTheInitializer: whoever asks for a channel while
// its creator's initializer runs gets it only once the initializer is done,
// so nobody sees it half made (an authorizer missing, say).
func TestCreateChannelWaitsForTheInitializer(t *testing.T) {
	ts := newTestServer(t, Config{})
	inInit := make(chan struct{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = ts.CreateChannel("/init/slow", func(c *ServerChannel) {
			close(inInit)
			<-release
			c.SetLazy(true)
			c.SetPersistent(true)
		})
	}()
	<-inInit
	// The channel is in the server while its initializer runs ...
	if ts.Channel("/init/slow") == nil {
		t.Fatal("the channel is not in the server while its initializer runs")
	}
	got := make(chan *ServerChannel, 1)
	go func() {
		c, _ := ts.CreateChannel("/init/slow")
		got <- c
	}()
	close(release)
	// ... but another creator gets it only initialised.
	select {
	case c := <-got:
		if !c.IsLazy() || !c.IsPersistent() {
			t.Fatal("a second CreateChannel returned the channel before its initializer was done")
		}
	case <-time.After(testWait):
		t.Fatal("the second CreateChannel never returned")
	}
	wg.Wait()
}
