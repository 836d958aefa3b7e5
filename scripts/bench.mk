# Conformance and benchmark targets; included by the top-level Makefile
# (`include scripts/bench.mk`). Both need root.
#
#   make conformance                     OCI runtime-tools v0.9.0 suite: runc, then bin/moat
#   make conformance CONFORMANCE_RUNTIMES='runc "bin/moat --overlay=none"'
#   make bench-run                       run-latency + idle-memory benchmark (env N, RUNTIMES)
#   make bench-run N=20 RUNTIMES=runc,moat=bin/moat
#   make bench-net                       sandbox network vs slirp4netns (iperf3, connections/s),
#                                        then moat net's idle and flooded RSS in a real container
#   make bench-rootless                  rootless start-up: moat as root vs as a user vs rootlesskit runc

# moat runs twice: with the gofer (--overlay=none, so that writes reach the
# bundle as the suite expects: it reads files the container wrote) and with
# --file-access=direct (runc semantics).
CONFORMANCE_RUNTIMES ?= runc "bin/moat --overlay=none" "bin/moat --file-access=direct"
BENCH_FLAGS ?=

.PHONY: conformance bench-run trace-run

conformance: build
	./scripts/conformance.sh $(CONFORMANCE_RUNTIMES)

# trace-run: the start-up timeline of one `moat run` (the median of RUNS),
# each phase's share; FLAGS are moat's global flags (e.g. --file-access=direct).
trace-run: build
	$(if $(RUNS),RUNS=$(RUNS)) ./scripts/trace-run.sh $(FLAGS)

bench-run: build
	$(if $(N),N=$(N)) $(if $(RUNTIMES),RUNTIMES='$(RUNTIMES)') ./scripts/bench-run.sh $(BENCH_FLAGS)

# File-system benchmark (issue 4): exec/python/compile/walk/small-file/seq-read workloads
# inside native (chroot), runc, moat (gofer), moat --file-access=direct and runsc, warm and
# cold, medians over interleaved rounds, plus the gofer's idle RSS. Needs root; builds the
# image once in /var/tmp/moat-bench-image. Env: ROUNDS WORKLOADS RUNTIMES PASSES TIMEOUT.
#   make bench-fs
#   make bench-fs ROUNDS=1 WORKLOADS=walk,readall
.PHONY: bench-fs
bench-fs: build
	$(if $(ROUNDS),ROUNDS=$(ROUNDS)) $(if $(WORKLOADS),WORKLOADS='$(WORKLOADS)') $(if $(RUNTIMES),RUNTIMES='$(RUNTIMES)') $(if $(PASSES),PASSES='$(PASSES)') ./scripts/bench-fs.sh

# Network benchmark (issue 6): TCP throughput container->host (out_send),
# host->container (out_recv), host->container through a port forward
# (in_fwd) and short connections per second, moat's sandbox network vs
# slirp4netns, MTU 65520, iperf3 over loopback in namespaces the test creates.
# Needs root, iperf3 and slirp4netns (apt-get install iperf3 slirp4netns).
.PHONY: bench-net
bench-net: build probe
	@out=$$(mktemp); MOAT_NET_IPERF3=1 $(GO) test -count=1 -run '^TestIperf3$$' -v ./internal/network/ >$$out 2>&1; rc=$$?; \
	grep -E 'moat:|slirp4netns:|^(ok|FAIL|---)|_test.go' $$out; rm -f $$out; [ $$rc = 0 ] || exit $$rc; \
	out=$$(mktemp); MOAT_BIN=$(CURDIR)/$(BIN)/moat PROBE_BIN=$(CURDIR)/$(BIN)/probe $(GO) test -count=1 -run '^TestSandboxFloodMemory$$' -v ./test/e2e/ >$$out 2>&1; rc=$$?; \
	grep -E 'moat net:|^--- ' $$out; rm -f $$out; exit $$rc

# Rootless start-up cost (issue 5): `run` of /bin/true by moat as root, moat
# as an unprivileged user (BENCH_USER, default moatci from .ci/run: with an
# /etc/subuid range) and `rootlesskit runc` as that user, interleaved. Every
# runtime goes through runuser, so that its cost cancels out. Needs root,
# the user, and rootlesskit for the comparison (apt-get install rootlesskit).
BENCH_USER ?= moatci
BENCH_RL_DIR := /tmp/moat-bench-rootless
.PHONY: bench-rootless
bench-rootless: build
	rm -rf $(BENCH_RL_DIR) && mkdir -p $(BENCH_RL_DIR) && cp $(BIN)/moat $(BENCH_RL_DIR)/ && chmod -R a+rX $(BENCH_RL_DIR)
	RSS=0 $(if $(N),N=$(N)) RUNTIMES='moat-root=runuser -u root -- $(BENCH_RL_DIR)/moat,moat-rootless=runuser -u $(BENCH_USER) -- $(BENCH_RL_DIR)/moat,rootlesskit-runc=runuser -u $(BENCH_USER) -- rootlesskit runc --root /tmp/runc-$(BENCH_USER)' ./scripts/bench-run.sh

# moat do (issue 15): start-up of `true` in moat do, bwrap and runsc do;
# go build, python3 -m compileall and git status with the directory
# writable: host vs moat do --rw vs bwrap; the syscall surface left by moat
# do's default seccomp profile (../shared/tools/surface.c). Needs root,
# bubblewrap and runsc (apt-get install bubblewrap runsc), gcc for the
# surface. Env: N (rounds of true), WN (rounds of each workload).
.PHONY: bench-do
bench-do: build
	$(GO) run ./test/bench/dobench -moat $(BIN)/moat -surface $(CURDIR)/../shared/tools/surface.c $(if $(N),-n $(N)) $(if $(WN),-wn $(WN))
