# Local single-node Kubernetes (no Docker), images without a registry, `make run`
# on a cluster and the end-to-end suite. Included by the Makefile; scripts live in
# hack/cluster/ (see LOCAL-CLUSTER facts in their headers).

E2E_TIMEOUT ?= 40m
E2E_FLAGS ?= -v
# E2E_RUN selects tests by name (go test -run), e.g. TestCometdClusterLifecycle.
E2E_RUN ?= .

##@ Local cluster

.PHONY: cluster-binaries
cluster-binaries: ## Build kube-* / kubectl v$(K8S_VERSION), etcd, CoreDNS and nats-server from source (cached in bin/).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/cluster/build-binaries.sh

.PHONY: cluster-up
cluster-up: ## Bring up the local single-node cluster (kubeconfig: bin/cluster/kubeconfig); no-op when up.
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and undo its host changes; no-op when down.
	hack/cluster/down.sh

.PHONY: images
images: ## Build the operator, broker, nats and pause OCI images and import them into the local cluster.
	hack/cluster/images.sh all

.PHONY: run-cluster
run-cluster: $(KUSTOMIZE) ## Local cluster (or $$KUBECONFIG's) + operator (config/default) + sample CometdCluster, until Available.
	KUSTOMIZE=$(KUSTOMIZE) IMG=$(IMG) BROKER_IMG=$(BROKER_IMG) hack/cluster/run.sh

.PHONY: e2e
e2e: $(KUSTOMIZE) $(HELM) npm-deps ## End-to-end suite on the local cluster (brings it up, and down again if it was down).
	KUSTOMIZE=$(KUSTOMIZE) HELM=$(HELM) E2E_TIMEOUT=$(E2E_TIMEOUT) E2E_FLAGS="$(E2E_FLAGS) -run $(E2E_RUN)" hack/cluster/e2e.sh
