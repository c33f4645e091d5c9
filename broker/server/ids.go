package server

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
)

// clientIDSep separates the owning node's ID from the random part of a clientId.
const clientIDSep = "~"

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomToken returns n random bytes, base32-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics on platform failure)
	return idEncoding.EncodeToString(b)
}

// newClientID returns "<nodeID>~<160 random bits>".
func newClientID(nodeID string) string { return nodeID + clientIDSep + randomToken(20) }

// OwnerOf returns the node ID that issued clientID, or "" when clientID was not
// issued by a Server of this package (its prefix is not a valid node ID).
func OwnerOf(clientID string) string {
	i := strings.LastIndex(clientID, clientIDSep)
	if i <= 0 || !isNodeID(clientID[:i]) {
		return ""
	}
	return clientID[:i]
}

// validNodeID reports whether id can prefix clientIds.
func validNodeID(id string) error {
	if id == "" || len(id) > maxNodeID {
		return fmt.Errorf("server: node ID must have 1 to %d characters, got %d", maxNodeID, len(id))
	}
	if !isNodeID(id) {
		return fmt.Errorf("server: node ID %q may only hold letters, digits, '-', '_' and '.'", id)
	}
	return nil
}

// maxNodeID bounds a node ID's length.
const maxNodeID = 128

// isNodeID is validNodeID without the error: cheap enough for every message.
func isNodeID(id string) bool {
	if id == "" || len(id) > maxNodeID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// SanitizeNodeID turns any name (a pod name, a hostname) into a valid node ID.
func SanitizeNodeID(name string) string {
	var b strings.Builder
	for _, c := range name {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 128 {
		s = s[:128]
	}
	if s == "" {
		s = "node-" + randomToken(5)
	}
	return s
}
