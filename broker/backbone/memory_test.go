package backbone

import (
	"fmt"
	"testing"
)

func memoryCluster(t *testing.T, n int) []node {
	hub := NewMemoryHub()
	ns := make([]node, n)
	for i := range ns {
		m, err := NewMemory(MemoryConfig{Hub: hub, NodeID: fmt.Sprintf("mem-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		ns[i] = m
	}
	return ns
}

func TestMemory(t *testing.T) { runSuite(t, memoryCluster) }

func TestMemoryConfig(t *testing.T) {
	hub := NewMemoryHub()
	a, err := NewMemory(MemoryConfig{Hub: hub, NodeID: "same"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := NewMemory(MemoryConfig{Hub: hub, NodeID: "same"}); err == nil {
		t.Error("a second node with the same ID joined the hub")
	}
	r1, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r1.NodeID() == "" || r1.NodeID() == r2.NodeID() {
		t.Errorf("random node IDs %q and %q", r1.NodeID(), r2.NodeID())
	}
	// Once the first node leaves, its ID is free again.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := NewMemory(MemoryConfig{Hub: hub, NodeID: "same"})
	if err != nil {
		t.Fatalf("rejoin after Close: %v", err)
	}
	b.Close()
}

func TestMemorySetHealth(t *testing.T) {
	m, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.SetHealth(fmt.Errorf("outage"))
	if m.Healthy() == nil {
		t.Error("SetHealth(error) left the node healthy")
	}
	m.SetHealth(nil)
	if err := m.Healthy(); err != nil {
		t.Error(err)
	}
}
