// Package e2e is the end-to-end suite: it deploys the operator into a real
// Kubernetes cluster the way a user would (kustomize config/default, real RBAC),
// runs CometdClusters with managed NATS, and talks to them through their Service
// with third-party Bayeux clients (the CometD JavaScript client and Faye).
//
// The tests carry the build tag e2e and need a cluster; run them with
// `make e2e`, which brings up the local cluster (hack/cluster), imports the
// images and sets E2E_KUBECONFIG, E2E_KUBECTL and E2E_KUSTOMIZE. Run without a
// cluster, the suite fails with a message that says so; it never skips.
package e2e
