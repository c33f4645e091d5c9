package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/broker/server"
)

func Example() {
	// A Bayeux server to talk to; any conforming server works.
	srv, _ := server.NewServer(server.Config{})
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.NewClient(client.Config{URL: hs.URL + "/cometd"})
	if err != nil {
		panic(err)
	}
	if err := c.Handshake(ctx); err != nil {
		panic(err)
	}
	defer c.Disconnect(ctx)

	got := make(chan *client.Message, 1)
	if _, err := c.SubscribeChan(ctx, "/chat/*", got); err != nil {
		panic(err)
	}
	if err := c.Publish(ctx, "/chat/room", map[string]string{"text": "hello"}); err != nil {
		panic(err)
	}
	m := <-got
	fmt.Println(c.Transport(), m.Channel, string(m.Data))
	// Output: websocket /chat/room {"text":"hello"}
}
