# cometd-operator: a Kubernetes operator for Bayeux (CometD) broker clusters.
#
#   make run    set up everything and run the product (see README)
#   make test   the whole test suite, as CI runs it (.ci/run)

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG ?= cometd-operator:dev
BROKER_IMG ?= cometd-broker:dev

LOCALBIN ?= $(CURDIR)/bin
GO ?= go
export GOTOOLCHAIN := local

# Pinned tool versions (kustomize v5.8.3 needs Go 1.27).
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
HELM_VERSION ?= v3.22.0
K8S_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.5.35

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
ENVTEST_ASSETS ?= $(LOCALBIN)/k8s/$(K8S_VERSION)
NPM_DIR := test/conformance

# Test tunables: TEST_PKGS narrows the run, FUZZTIME bounds each fuzz target (a
# count of executions such as 200000x; see hack/fuzz-smoke.sh for why not a duration).
TEST_PKGS ?= ./...
FUZZTIME ?= 200000x
GO_TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from the API types and controller markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases
	hack/sync-chart.sh

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: docs
docs: ## Generate the API field reference (docs/api-reference.md) from the CRDs.
	$(GO) run ./hack/crd-docs -crds config/crd/bases -out docs/api-reference.md

.PHONY: docs-screenshot
docs-screenshot: npm-deps ## Regenerate docs/images/demo.png: the demo page in headless Chromium after two pages chatted.
	DEMO_SCREENSHOT=$(CURDIR)/docs/images/demo.png BROWSER_CASES=demo $(GO) test -count=1 -run '^TestBrowsers$$' ./test/conformance

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: ## Check formatting and vet (fails on unformatted files).
	@out=$$(gofmt -s -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail if generated code or manifests are stale.
	hack/verify-generated.sh

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd from source (cached in bin/k8s).
	@K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/envtest-assets.sh >/dev/null

.PHONY: npm-deps
npm-deps: $(NPM_DIR)/node_modules/.installed ## Install the third-party Bayeux clients (npm).

$(NPM_DIR)/node_modules/.installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	hack/ensure-node.sh
	cd $(NPM_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: test
test: lint verify-generated helm-lint envtest-assets npm-deps ## Run the whole test suite: vet, generated-code check, chart, fuzz smoke, e2e on a local cluster, go test -race.
	FUZZTIME=$(FUZZTIME) hack/fuzz-smoke.sh
	$(MAKE) --no-print-directory e2e
	HELM=$(HELM) KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) TMPDIR=$(LOCALBIN)/tmp hack/run-tests.sh $(GO_TEST_FLAGS) $(TEST_PKGS)

.PHONY: test-unit
test-unit: lint verify-generated helm-lint envtest-assets npm-deps ## The suite without fuzzing and without the local cluster (e2e).
	HELM=$(HELM) KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) TMPDIR=$(LOCALBIN)/tmp hack/run-tests.sh $(GO_TEST_FLAGS) $(TEST_PKGS)

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint and helm template the chart with every examples/ values file.
	$(HELM) lint --strict --kube-version $(K8S_VERSION) charts/cometd-operator
	for f in charts/cometd-operator/examples/*.yaml; do \
		echo "helm template with $$f"; \
		$(HELM) lint --strict --kube-version $(K8S_VERSION) charts/cometd-operator -f $$f >/dev/null; \
		$(HELM) template cometd charts/cometd-operator --kube-version $(K8S_VERSION) -n cometd-system -f $$f >/dev/null; \
	done

.PHONY: bench
bench: ## Run the Go benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem ./...

# BENCH_PEERS_ARGS passes flags to hack/bench-peers (-regimes, -servers,
# -transports, -idle-sessions, -sparse-messages, …; see its -help).
.PHONY: bench-peers
bench-peers: npm-deps ## The broker side by side with Faye and the CometD Node server (minutes): writes docs/performance.md and docs/performance.svg.
	$(GO) run ./hack/bench-peers -root $(CURDIR) -md docs/performance.md -svg docs/performance.svg $(BENCH_PEERS_ARGS)

# SCALE_CLUSTERS, SCALE_MANAGED_EVERY, SCALE_IDLE_SECONDS and SCALE_MANAGER_ARGS
# (extra manager flags) narrow or vary it; see test/scale.
.PHONY: bench-operator
bench-operator: envtest-assets ## The operator at scale on envtest (minutes): 500 clusters converge, roll, stay idle; again with a tenth of the brokers hanging.
	mkdir -p $(LOCALBIN)/tmp
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) TMPDIR=$(LOCALBIN)/tmp $(GO) test -tags scale -run '^$$' -bench BenchmarkOperatorScale -benchtime 1x -timeout 60m ./test/scale/

##@ Build

.PHONY: build
build: ## Build bin/manager and bin/broker.
	CGO_ENABLED=0 $(GO) build -trimpath -o $(LOCALBIN)/manager ./cmd/manager
	CGO_ENABLED=0 $(GO) build -trimpath -o $(LOCALBIN)/broker ./cmd/broker

.PHONY: run
run: run-cluster ## The main job: local Kubernetes (or the cluster in KUBECONFIG), the operator, a sample CometdCluster until Available.

.PHONY: run-broker
run-broker: build ## One broker alone, with embedded NATS: Bayeux on :8080/cometd, admin on :8081, the demo page on :8080/demo/.
	@echo "demo page: http://localhost:8080/demo/ (open it twice to chat)"
	$(LOCALBIN)/broker --demo

.PHONY: run-manager
run-manager: build manifests ## Run the operator against the current kubeconfig.
	$(LOCALBIN)/manager

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRDs.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator (config/default) with IMG.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found=$(ignore-not-found) -f -

include hack/cluster.mk

##@ Tools

$(LOCALBIN):
	mkdir -p $@

$(CONTROLLER_GEN): | $(LOCALBIN)
	$(call go-install-tool,$@,sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

$(HELM): | $(LOCALBIN)
	$(call go-install-tool,$@,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

$(KUSTOMIZE): | $(LOCALBIN)
	$(call go-install-tool,$@,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: controller-gen kustomize helm
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into bin/.
kustomize: $(KUSTOMIZE) ## Install kustomize into bin/.
helm: $(HELM) ## Install helm into bin/.

# go-install-tool installs $2@$3 as $1 (a versioned name) and links the bare name to it.
define go-install-tool
@[ -f "$(1)" ] || { \
	set -e; \
	echo "installing $(2)@$(3)"; \
	rm -f "$(1)"; \
	GOBIN="$(LOCALBIN)" $(GO) install "$(2)@$(3)"; \
	mv "$(LOCALBIN)/$$(basename "$$(echo "$(2)" | sed 's|/v[0-9]*$$||')")" "$(1)"; \
	}; \
	ln -sf "$$(basename "$(1)")" "$(LOCALBIN)/$$(basename "$$(echo "$(2)" | sed 's|/v[0-9]*$$||')")"
endef
