package policy_test

import (
	"fmt"

	"github.com/cometd-operator/cometd-operator/broker/policy"
)

// The operator compiles a cluster's ChannelPolicies into the ConfigMap's
// policy.json; the brokers evaluate it.
func ExampleCompile() {
	doc, errs := policy.Compile([]policy.SourcePolicy{{
		Name: "default/chat",
		Rules: []policy.Rule{
			{Name: "join", Effect: policy.Allow, Actions: []policy.Action{policy.ActionHandshake}, Principals: []string{"authenticated"}},
			{Name: "rooms", Effect: policy.Allow, Actions: []policy.Action{policy.ActionSubscribe, policy.ActionPublish, policy.ActionCreate},
				Channels: []string{"/chat/*", "/user/{sub}/**"}, Principals: []string{"authenticated"}},
			{Name: "announce", Effect: policy.Deny, Actions: []policy.Action{policy.ActionPublish},
				Channels: []string{"/chat/announce"}, Principals: []string{"*"}},
		},
	}}, policy.ClusterSettings{
		Default: policy.Deny,
		Auth: policy.Auth{Algorithm: policy.RS256, Issuer: "https://idp.example.com", Audience: "chat",
			Keys: []policy.Key{{File: "/etc/cometd/jwt/keys.pem"}}},
	})
	if len(errs) > 0 {
		fmt.Println(errs)
		return
	}
	b, _ := policy.Marshal(doc)
	fmt.Println(string(b))

	acl, _ := policy.NewACL(doc)
	bob := policy.Identity{Subject: "bob", Authenticated: true}
	for _, q := range []struct {
		action  policy.Action
		channel string
	}{
		{policy.ActionSubscribe, "/chat/lobby"},
		{policy.ActionSubscribe, "/chat/**"},
		{policy.ActionPublish, "/chat/announce"},
		{policy.ActionSubscribe, "/user/bob/inbox"},
		{policy.ActionSubscribe, "/user/alice/inbox"},
	} {
		d := acl.Evaluate(bob, q.action, q.channel)
		fmt.Printf("%s %s: %v (%s %s)\n", q.action, q.channel, d.Allowed, d.Reason, d.Rule)
	}
	// Output:
	// {
	//   "apiVersion": "cometd.bayeux.dev/policy/v1",
	//   "version": "28782853533bf581",
	//   "default": "deny",
	//   "auth": {
	//     "algorithm": "RS256",
	//     "issuer": "https://idp.example.com",
	//     "audience": "chat",
	//     "keys": [
	//       {
	//         "file": "/etc/cometd/jwt/keys.pem"
	//       }
	//     ]
	//   },
	//   "rules": [
	//     {
	//       "name": "join",
	//       "source": "default/chat",
	//       "effect": "allow",
	//       "actions": [
	//         "handshake"
	//       ],
	//       "principals": [
	//         "authenticated"
	//       ]
	//     },
	//     {
	//       "name": "rooms",
	//       "source": "default/chat",
	//       "effect": "allow",
	//       "actions": [
	//         "subscribe",
	//         "publish",
	//         "create"
	//       ],
	//       "channels": [
	//         "/chat/*",
	//         "/user/{sub}/**"
	//       ],
	//       "principals": [
	//         "authenticated"
	//       ]
	//     },
	//     {
	//       "name": "announce",
	//       "source": "default/chat",
	//       "effect": "deny",
	//       "actions": [
	//         "publish"
	//       ],
	//       "channels": [
	//         "/chat/announce"
	//       ],
	//       "principals": [
	//         "*"
	//       ]
	//     }
	//   ]
	// }
	// subscribe /chat/lobby: true (allowed by rule rooms)
	// subscribe /chat/**: false (denied by default )
	// publish /chat/announce: false (denied by rule announce)
	// subscribe /user/bob/inbox: true (allowed by rule rooms)
	// subscribe /user/alice/inbox: false (denied by default )
}
