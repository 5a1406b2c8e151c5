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
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0

.PHONY: help
help: ## Describe useful make targets
	@grep -E '^[a-zA-Z_-]+:.*?## .*$$' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*?## "}; {printf "%-16s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## Install pinned tools into .tmp/bin (only those missing)

.PHONY: generate
generate: tools ## Regenerate Go code in proto/gen and the example descriptor set
	buf generate
	$(MAKE) --no-print-directory descriptors

.PHONY: descriptors
descriptors: $(BIN)/buf ## Write examples/library/library.binpb (with imports and source info)
	buf build --path proto/rosetta/examples/library -o examples/library/library.binpb

.PHONY: checkgenerate
checkgenerate: generate ## Fail if generated files differ from the committed ones
	git diff --exit-code -- proto/gen examples/library/library.binpb

.PHONY: lint-proto
lint-proto: $(BIN)/buf ## Lint and check formatting of .proto files
	buf lint
	buf format -d --exit-code

$(BIN)/buf:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	@mkdir -p $(@D)
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
