# moat — build, demo, tests, conformance and benchmarks.
GO       ?= go
BIN      := bin
VERSION  ?= 0.1.0-dev
COMMIT   := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X github.com/moat-sandbox/moat/internal/cli.Version=$(VERSION) -X github.com/moat-sandbox/moat/internal/cli.Commit=$(COMMIT)
export CGO_ENABLED := 0

.PHONY: all build probe demo test unit e2e e2e-rootless vet fmt clean install readme-walkthrough

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/moat ./cmd/moat

# install: bin/moat to $(PREFIX)/bin (one static binary; nothing else).
# Builds it first if missing (so `make && sudo make install` needs no Go as
# root).
PREFIX ?= /usr/local
install:
	@test -x $(BIN)/moat || $(MAKE) build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/moat $(DESTDIR)$(PREFIX)/bin/moat

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

# The suite runs once with the gofer serving the container's files (the
# default) and once with --file-access=direct; same assertions.
FILE_ACCESS ?= gofer direct
e2e: build probe
	for fa in $(FILE_ACCESS); do \
		echo "== e2e as root, --file-access=$$fa"; \
		MOAT_E2E_FILE_ACCESS=$$fa MOAT_BIN=$(CURDIR)/$(BIN)/moat PROBE_BIN=$(CURDIR)/$(BIN)/probe \
			$(GO) test -count=1 -timeout 12m ./test/e2e/... || exit 1; \
	done

# readme-walkthrough: README's commands, run on a clean clone in a scratch
# directory (quick start, install to a scratch PREFIX, spec, run), their
# output checked against what README shows.
readme-walkthrough:
	./scripts/readme-walkthrough.sh

# test: everything CI runs (as root).
test: vet unit e2e e2e-rootless readme-walkthrough

clean:
	rm -rf $(BIN)

-include scripts/bench.mk

# clients: moat and runc driven by real clients — rootful and rootless
# Podman, Docker, ctr and crictl (containerd's CRI) — on private daemons,
# one PASS/FAIL line per scenario and a table; fails when moat fails what
# runc passes. Root, Debian 12 (installs what is missing). Narrow it with
# CLIENTS='podman docker' RUNTIMES=moat ONLY=exec,top (see scripts/clients.sh).
# bench-clients: p50 of `run --rm IMAGE true` through Podman, Docker and
# ctr: moat, moat direct, runc, runsc (N=20).
.PHONY: clients bench-clients
clients: build
	./scripts/clients.sh
bench-clients: build
	./scripts/bench-clients.sh

# e2e-rootless: the same suite as unprivileged users: moatci (with an
# /etc/subuid range) and moatci1 (single-ID map). .ci/run creates them.
E2E_TMP := /tmp/moat-e2e-bin
e2e-rootless: build probe
	rm -rf $(E2E_TMP) && mkdir -p $(E2E_TMP)
	$(GO) test -c -o $(E2E_TMP)/e2e.test ./test/e2e
	cp $(BIN)/moat $(BIN)/probe $(E2E_TMP)/ && chmod -R a+rX $(E2E_TMP)
	for u in $(ROOTLESS_USERS); do for fa in $(FILE_ACCESS); do \
		echo "== e2e as $$u, --file-access=$$fa"; \
		runuser -u $$u -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TMPDIR=/tmp \
			MOAT_E2E_FILE_ACCESS=$$fa MOAT_E2E_LEAKS=$(MOAT_E2E_LEAKS) MOAT_BIN=$(E2E_TMP)/moat PROBE_BIN=$(E2E_TMP)/probe \
			$(E2E_TMP)/e2e.test -test.count=1 -test.timeout=12m $(E2E_FLAGS) || exit 1; \
	done; done
ROOTLESS_USERS ?= moatci moatci1
