// Package policy is the channel access-control model shared by the operator and
// the brokers: the versioned JSON format of the compiled ACL, its compilation
// from ChannelPolicy objects, its evaluation, JWT verification of handshakes,
// and hot reload of the file the brokers enforce.
//
// The operator calls Compile with a cluster's policies and writes the result,
// rendered by Marshal, into the cluster's policy ConfigMap under the key
// policy.json. Brokers mount it and name it in broker.yaml (policyFile); a
// Watcher reloads it when it changes. Neither side imports Kubernetes code
// through this package.
//
// # Format (apiVersion cometd.bayeux.dev/policy/v1)
//
// One JSON object; unknown fields are an error (a broker never ignores a
// setting it does not understand: it keeps the rules it has and reports it).
//
//	{
//	  "apiVersion": "cometd.bayeux.dev/policy/v1",   // required, exactly this
//	  "version": "3f2a9c0d51e7b684",                  // ComputeVersion; "" = compute
//	  "default": "deny",                              // required: "allow" | "deny"
//	  "allowAnonymous": false,                        // may clients handshake without a token?
//	  "auth": {                                       // omitted = no tokens accepted
//	    "algorithm": "RS256",                         // "HS256" | "RS256" | "ES256", the ONLY one accepted
//	    "issuer": "https://idp.example.com",          // "" = iss not checked
//	    "audience": "chat",                           // "" = aud not checked
//	    "keys": [                                     // key FILES, mounted from a Secret
//	      {"dir": "/etc/cometd/jwt"},                 // every file; kid = name minus ".pem"
//	      {"file": "/etc/cometd/old/previous.pem", "id": "2025-11"}
//	    ],
//	    "leewaySeconds": 30,                          // clock skew on exp/nbf; absent = 30, 0 = none
//	    "groupsClaim": "groups"                       // "" = "groups"
//	  },
//	  "rules": [
//	    {
//	      "name": "members-chat",                     // unique within its source
//	      "source": "default/chat-policy",            // the ChannelPolicy it came from
//	      "effect": "allow",                          // "allow" | "deny"
//	      "actions": ["subscribe", "publish"],        // handshake, subscribe, publish, create
//	      "channels": ["/chat/**", "/user/{sub}/**"], // patterns; not needed for handshake
//	      "principals": ["group:members"]             // see below
//	    }
//	  ]
//	}
//
// Version is the first 16 hex digits of the SHA-256 of the document's compact
// JSON encoding (encoding/json of Document) with version empty; see
// ComputeVersion. A broker refuses a document whose non-empty version does not
// match its content, so the version it reports in /status is always the one of
// the rules it enforces, and the operator can compare it with what it wrote.
//
// Key material never appears in the document, so no secret ends up in a
// ConfigMap: the operator mounts the key Secret into the broker pods and lists
// the paths (relative paths are relative to the document's directory): a file,
// or a directory (the whole Secret mounted as a volume: every file not starting
// with "."). An HS256 key file holds the secret's exact bytes (at least 32); an
// RS256 or ES256 file holds PEM blocks (PUBLIC KEY, RSA PUBLIC KEY or
// CERTIFICATE), several for key rotation. The Watcher re-reads key files and
// directories too, so rotating the Secret is picked up without a new document.
//
// # Channel patterns
//
// A pattern is a sequence of segments, "/a/b/c" (PatternRegexp):
//
//   - a literal segment: ASCII letters, digits and - _ . ~ ! $ @ ( ) + = , :
//     (SegmentCharClass), not only dots;
//   - "*": exactly one segment, in any position ("/chat/*" matches "/chat/x",
//     not "/chat/x/y"; "/user/*/inbox" matches "/user/bob/inbox");
//   - "**": one or more segments, last only ("/chat/**" matches "/chat/x" and
//     "/chat/x/y", not "/chat");
//   - "{sub}" or "{claim:<name>}": the identity's subject or a top-level claim
//     (a string or an integer), as a whole segment ("/user/{sub}/**").
//
// A pattern may not start with /meta: meta channels are never under the
// policy's control.
//
// # Principals
//
// PrincipalRegexp: "*" (everyone, anonymous included), "anonymous" (no token),
// "authenticated" (any valid token), "user:<subject>" (the token's sub),
// "group:<name>" (an entry of the token's groups claim).
//
// # Semantics
//
// See ACL.Evaluate: a matching deny wins; with no matching rule the default
// applies (to handshakes too: with "default": "deny" a rule must allow the
// handshake action); anonymous clients handshake only when allowAnonymous is
// true; wildcard subscriptions are judged as the set of channels they name.
//
// The create action is asked whenever a client's subscribe or publish would
// bring a channel into existence on a broker (the first subscriber, or a
// publish to a channel nobody is subscribed to). So with "default": "deny",
// grant create together with subscribe and publish on the same patterns, or
// those operations fail with 403::create_denied.
package policy
