# See https://tech.davis-hansson.com/p/make/
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables
MAKEFLAGS += --no-builtin-rules

BIN := $(abspath .tmp/bin)
export PATH := $(BIN):$(PATH)

# Pinned tool versions, installed into $(BIN) by `make tools`.
# buf comes prebuilt from npm (@bufbuild/buf, the same release) when npm is
# installed, and is compiled with go install otherwise.
BUF_VERSION := v1.75.0
STATICCHECK_VERSION := v0.8.2
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
# HTTP/2 conformance (transports/h2's h2spec test). The module has no go.mod,
# so its latest release resolves to a +incompatible version.
H2SPEC_VERSION := v2.2.1+incompatible
# Connect conformance suite (make conformance): its runner and reference
# server, the same release as the protos the wrapper compiles.
CONFORMANCE_VERSION := v1.0.7
CONFORMANCE_TOOLS := $(BIN)/connectconformance $(BIN)/referenceserver
# Load benchmark (bench/, its own Go module): grpc-gateway's generator for
# the bench protos, and ghz, installed into bench/.tmp/bin.
PROTOC_GEN_GRPC_GATEWAY_VERSION := v2.33.0
GHZ_VERSION := v0.93.0
BENCH_BIN := $(abspath bench/.tmp/bin)

.PHONY: help
help: ## Describe useful make targets
	@grep -E '^[a-zA-Z_-]+:.*?## .*$$' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*?## "}; {printf "%-16s %s\n", $$1, $$2}'

GO_PACKAGES := ./...
# Fuzz targets run by `make fuzz`, as package:FuzzName.
FUZZ_TARGETS := ./router:FuzzParseTemplate ./router:FuzzMatch ./config:FuzzParse ./transcoder:FuzzDecodeRequest ./transcoder:FuzzWebSocketFrame ./transcoder/wirejson:FuzzAppendJSON ./transcoder/wirejson:FuzzAppendProto ./transports/h2:FuzzServerConn
FUZZ_TIME ?= 30s

.PHONY: all
all: build test ## Build and test

.PHONY: build
build: ## Build bin/rosetta and bin/library-server
	go build -o bin/rosetta ./cmd/rosetta
	go build -o bin/library-server ./examples/library/cmd/library-server

# The container image's binary (deploy/Dockerfile runs the same script),
# then deploy's TestStaticBinary on it: static, stripped, -trimpath.
.PHONY: build-static
build-static: ## Build bin/rosetta-static as the image does (deploy/build.sh: CGO_ENABLED=0 -trimpath -ldflags "-s -w") and check it is static
	deploy/build.sh bin/rosetta-static
	ROSETTA_STATIC_BINARY=$(abspath bin/rosetta-static) go test -count=1 -run '^TestStaticBinary$$' ./deploy

.PHONY: run
run: build ## Start the library backend on :9000 (browser demo on :8081) and the gateway on 127.0.0.1:8080
	@bin/library-server -listen 127.0.0.1:9000 -web 127.0.0.1:8081 & backend=$$!; \
	trap 'kill $$backend 2>/dev/null; wait $$backend 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null && break; sleep 0.1; done; \
	echo "gateway on http://127.0.0.1:8080 (Ctrl-C stops both); try: curl http://127.0.0.1:8080/v1/shelves"; \
	echo "browser demo (WebSocket chat, live books over SSE): http://127.0.0.1:8081/"; \
	bin/rosetta serve --config examples/rosetta.yaml

# Debian packages the tests run, as command:package: chromium for the
# browser test of examples/web, redis-server for tests against a real Redis.
TEST_DEBS := chromium:chromium redis-server:redis-server

# make test runs these with make -j4, installing each tool and package once:
#
#   test-debs    apt-get install of TEST_DEBS when missing (network and disk)
#   test-gen     buf (npm), protoc-gen-go and protoc-gen-go-grpc, then
#                checkgenerate, which rewrites proto/gen: whatever reads the
#                Go code waits for it
#   test-go      after test-gen: gofmt and go vet -race; then, once test-debs
#                and h2spec are done, go test -race
#   test-others  after test-gen: lint-files, buf lint; staticcheck; bench vet;
#                build-static (the image's binary); the conformance tools;
#                then the conformance suite, beside go test: it waits more
#                than it computes (20 s of CPU in 40 s), and its cases
#                pass under that load as they do alone
#
# The steps of a chain follow one another: a Go build already keeps both
# cores busy, and two side by side would compile the same packages twice.
# The two chains share little: test-go builds in race mode, test-others
# does not. go vet takes -race here so that go test reuses its build (the
# same checks: no Rosetta file depends on the race build tag), and go test
# skips its own vet pass, a subset of go vet's.
#
# go test: internal/gateway, the longest package (about a minute, mostly
# waiting on sockets), starts first, while the other packages' test
# binaries are linked and run beside it; -parallel 4 lets its waiting tests
# overlap on two cores; -ldflags=-w links without DWARF (a fifth less link
# time per binary; panics and race reports still name files and lines).
TEST_FLAGS := -race -vet=off -count=1 -timeout 15m -parallel 4 -ldflags=-w
TEST_PACKAGES := ./internal/gateway $(GO_PACKAGES)

.PHONY: test
test: ## Run checkgenerate, lint, every test with the race detector and the Connect conformance suite, installing what they need
	@$(MAKE) --no-print-directory -j4 --output-sync=target test-go test-others

.PHONY: test-gen
test-gen: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	@$(MAKE) --no-print-directory checkgenerate

.PHONY: test-go
test-go: test-vet test-debs $(BIN)/h2spec
	go test $(TEST_FLAGS) $(TEST_PACKAGES)

.PHONY: test-vet
test-vet: test-gen
	@$(MAKE) --no-print-directory lint-go VET_FLAGS=-race

.PHONY: test-others
test-others: test-gen
	@$(MAKE) --no-print-directory lint-files lint-proto
	@$(MAKE) --no-print-directory lint-staticcheck
	@$(MAKE) --no-print-directory lint-bench
	@$(MAKE) --no-print-directory build-static
	@$(MAKE) --no-print-directory conformance

.PHONY: test-debs
test-debs: ## Install the Debian packages the tests run (chromium, redis-server) when missing, with one apt-get
	@missing=""; for t in $(TEST_DEBS); do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t##*:}"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "test: missing Debian packages:$$missing (as root: apt-get install -y$$missing)"; exit 1; fi; \
	echo "apt-get install$$missing"; \
	apt-get update -qq -o DPkg::Lock::Timeout=300; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300$$missing >/dev/null

.PHONY: bench-websocket
bench-websocket: ## Benchmark the WebSocket bridge: 10,000 idle streams, msg/s vs direct gRPC
	cd bench && go run ./websocket -streams 10000 -messages 200000

.PHONY: bench
bench: bench-deps ## Load benchmark: Rosetta beside its peers, 3 rounds (~8 min on 2 cores); writes bench/results/latest.md
	cd bench && go run ./harness -rounds 3 -duration 4s -warmup 1s -out results/latest.md -command 'make bench'

.PHONY: bench-quick
bench-quick: bench-deps ## Load benchmark, one short round (~2 min); writes bench/results/quick.md
	cd bench && go run ./harness -rounds 1 -duration 2s -warmup 1s -out results/quick.md -command 'make bench-quick'

.PHONY: bench-deps
bench-deps: $(BENCH_BIN)/ghz ## Install the load benchmark's tools: h2load, nginx, HAProxy (Debian, as root) and ghz
	@missing=""; for t in h2load:nghttp2-client nginx:nginx haproxy:haproxy; do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	  else echo "bench: missing Debian packages:$$missing (as root: apt-get install -y$$missing)"; exit 1; fi; \
	fi

.PHONY: bench-generate
bench-generate: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-grpc-gateway ## Regenerate the load benchmark's Go code in bench/proto/gen
	cd bench && buf generate

.PHONY: lint
lint: lint-files lint-go lint-staticcheck lint-bench lint-proto ## Run the tracked-files check, gofmt, go vet, staticcheck and buf lint

.PHONY: lint-files
lint-files: ## Fail if git tracks a compiled executable or a file over 4 MiB
	go run ./internal/cmd/checkfiles

# Extra go vet flags (build flags such as -race); make test sets -race.
VET_FLAGS ?=

.PHONY: lint-go
lint-go: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(VET_FLAGS) $(GO_PACKAGES)

.PHONY: lint-staticcheck
lint-staticcheck: $(BIN)/staticcheck ## staticcheck
	staticcheck $(GO_PACKAGES)

.PHONY: lint-bench
lint-bench: ## go vet of the bench module (bench/; lint-go's gofmt covers it)
	cd bench && go vet ./...

.PHONY: bench-go
bench-go: ## Run the Go benchmarks of the hot paths
	go test -run '^$$' -bench . -benchmem $(GO_PACKAGES)

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZ_TIME (default 30s)
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name"; go test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZ_TIME); done

.PHONY: conformance
conformance: $(CONFORMANCE_TOOLS) ## Connect conformance suite (Connect, gRPC, gRPC-Web clients) against Rosetta in front of the reference server
	go build -o $(BIN)/serverundertest ./conformance/serverundertest
	timeout 10m $(BIN)/connectconformance --mode server --conf conformance/config.yaml --known-failing @conformance/known-failing.txt --known-flaky @conformance/known-flaky.txt --parallel 2 -- \
	  $(BIN)/serverundertest -referenceserver $(BIN)/referenceserver \
	  -protos "$$(go mod download -json connectrpc.com/conformance@$(CONFORMANCE_VERSION) | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')/proto"

# One go install builds both (&: a grouped target, so make -j runs it once).
$(CONFORMANCE_TOOLS) &:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) go install $(foreach t,$(CONFORMANCE_TOOLS),connectrpc.com/conformance/cmd/$(notdir $(t))@$(CONFORMANCE_VERSION))

.PHONY: clean
clean: ## Remove build output and installed tools
	rm -rf bin .tmp

.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## Install pinned tools into .tmp/bin (only those missing)

.PHONY: generate
generate: tools ## Regenerate Go code in proto/gen and the example descriptor set
	buf generate
	$(MAKE) --no-print-directory descriptors

.PHONY: descriptors
descriptors: $(BIN)/buf ## Write examples/library/library.binpb (with imports and source info)
	buf build --path proto/rosetta/examples/library -o examples/library/library.binpb

.PHONY: portal-vendor
portal-vendor: ## Re-vendor the portal's swagger-ui and uPlot from portal/web/package-lock.json (npm ci), after a version bump
	portal/web/vendor.sh

.PHONY: checkgenerate
checkgenerate: generate ## Fail if generated files differ from the committed ones
	git diff --exit-code -- proto/gen examples/library/library.binpb

.PHONY: lint-proto
lint-proto: $(BIN)/buf ## Lint and check formatting of .proto files
	buf lint
	buf format -d --exit-code

$(BIN)/staticcheck:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(BIN)/h2spec:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION)

# The npm package's platform dependency (@bufbuild/buf-<os>-<arch>) holds the
# release binary; npm checks its integrity against the registry. Its install
# script (which only replaces the JavaScript launcher) is not run.
$(BIN)/buf:
	@mkdir -p $(@D)
	@if command -v npm >/dev/null; then \
	  echo "npm install @bufbuild/buf@$(BUF_VERSION:v%=%)"; \
	  npm install --prefix .tmp/npm --no-save --no-package-lock --ignore-scripts --no-audit --no-fund --loglevel=error @bufbuild/buf@$(BUF_VERSION:v%=%); \
	  ln -sf "$$(ls -d $(abspath .tmp/npm)/node_modules/@bufbuild/buf-*/bin/buf)" $@; \
	else \
	  echo "GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)"; \
	  GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION); \
	fi
	@test "$$($@ --version)" = "$(BUF_VERSION:v%=%)" || { echo "$@: want buf $(BUF_VERSION:v%=%), got $$($@ --version)"; rm -f $@; exit 1; }

$(BIN)/protoc-gen-go:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(BIN)/protoc-gen-grpc-gateway:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(PROTOC_GEN_GRPC_GATEWAY_VERSION)

$(BENCH_BIN)/ghz:
	@mkdir -p $(@D)
	GOBIN=$(BENCH_BIN) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
