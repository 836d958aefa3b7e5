# Conformance and benchmark targets; included by the top-level Makefile
# (`include scripts/bench.mk`). Both need root.
#
#   make conformance                     OCI runtime-tools v0.9.0 suite: runc, then bin/moat
#   make conformance CONFORMANCE_RUNTIMES='runc "bin/moat --overlay=none"'
#   make bench-run                       run-latency + idle-memory benchmark (env N, RUNTIMES)
#   make bench-run N=20 RUNTIMES=runc,moat=bin/moat

# moat runs twice: with the gofer (--overlay=none, so that writes reach the
# bundle as the suite expects: it reads files the container wrote) and with
# --file-access=direct (runc semantics).
CONFORMANCE_RUNTIMES ?= runc "bin/moat --overlay=none" "bin/moat --file-access=direct"
BENCH_FLAGS ?=

.PHONY: conformance bench-run

conformance:
	./scripts/conformance.sh $(CONFORMANCE_RUNTIMES)

bench-run:
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
