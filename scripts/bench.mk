# Conformance and benchmark targets; included by the top-level Makefile
# (`include scripts/bench.mk`). Both need root.
#
#   make conformance                     OCI runtime-tools v0.9.0 suite: runc, then bin/moat
#   make conformance CONFORMANCE_RUNTIMES='runc "bin/moat --overlay=none"'
#   make bench-run                       run-latency + idle-memory benchmark (env N, RUNTIMES)
#   make bench-run N=20 RUNTIMES=runc,moat=bin/moat

CONFORMANCE_RUNTIMES ?=
BENCH_FLAGS ?=

.PHONY: conformance bench-run

conformance:
	./scripts/conformance.sh $(CONFORMANCE_RUNTIMES)

bench-run:
	$(if $(N),N=$(N)) $(if $(RUNTIMES),RUNTIMES='$(RUNTIMES)') ./scripts/bench-run.sh $(BENCH_FLAGS)
