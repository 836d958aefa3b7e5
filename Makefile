# moat — build, demo, tests, conformance and benchmarks.
GO       ?= go
BIN      := bin
VERSION  ?= 0.1.0-dev
COMMIT   := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X github.com/moat-sandbox/moat/internal/cli.Version=$(VERSION) -X github.com/moat-sandbox/moat/internal/cli.Commit=$(COMMIT)
export CGO_ENABLED := 0

.PHONY: all build probe demo test unit e2e vet fmt clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/moat ./cmd/moat

probe:
	$(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/probe ./test/probe

# demo: build moat and run a container whose root filesystem is made here
# from the static probe binary (no image download).
demo: build probe
	./scripts/demo.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/e2e)

e2e: build probe
	MOAT_BIN=$(CURDIR)/$(BIN)/moat PROBE_BIN=$(CURDIR)/$(BIN)/probe $(GO) test -count=1 -timeout 40m ./test/e2e/...

# test: everything CI runs (as root).
test: vet unit e2e

clean:
	rm -rf $(BIN)

-include scripts/bench.mk
