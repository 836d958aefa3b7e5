#!/usr/bin/env bash
# Usage: scripts/bench-run.sh [runbench flags...]
#
# Benchmarks `RUNTIME run` latency of a /bin/true container (p50/p90, ratio to runc) and
# the idle memory a runtime keeps next to a started `sleep 30` container, for each runtime
# in turn, interleaved. Builds and runs test/bench/runbench (see its doc comment).
#
# Environment (flags given on the command line win):
#   N          measured runs per runtime (default 50)
#   WARMUP     warm-up runs per runtime (default 3)
#   RUNTIMES   comma-separated [label=]command [global flags], default
#              "moat=bin/moat" (if built), runc, crun, "runsc=runsc --network=none"
#   BUSYBOX    static busybox for the rootfs (default /bin/busybox, from busybox-static)
#   TRUE_BIN   static binary to use as /bin/true instead of busybox's applet
#   RSS=0      skip the idle-memory measurement
#   EXEC=0     skip the exec measurement (RUNTIME exec ID /bin/true in a started container)
# Examples:
#   scripts/bench-run.sh
#   N=20 RUNTIMES="runc,moat=bin/moat --network=none" scripts/bench-run.sh
#   scripts/bench-run.sh -n 100 -settle 2s
# Must run as root. A runtime that fails its first run is reported once and skipped.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
GO=${GO:-go}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
fi
[[ $(id -u) -eq 0 ]] || echo "bench-run: warning: not root; runtimes will likely fail" >&2

build=$(mktemp -d "${TMPDIR:-/tmp}/bench-run.XXXXXX")
runtimes=${RUNTIMES:-}

# Safety net: runbench removes its containers itself (also on SIGINT/SIGTERM); if it was
# killed hard, remove whatever it left (ids start with "runbench-").
# shellcheck disable=SC2317 # invoked by the EXIT trap
sweep() {
	local spec cmd id
	local IFS=,
	for spec in ${runtimes:-runc,crun,runsc,bin/moat}; do
		spec=${spec#*=}
		IFS=' ' read -r -a cmd <<<"$spec"
		[[ ${#cmd[@]} -gt 0 ]] || continue
		command -v "${cmd[0]}" >/dev/null 2>&1 || continue
		while read -r id; do
			[[ $id == runbench-* ]] || continue
			echo "bench-run: removing leftover ${cmd[0]} container $id" >&2
			"${cmd[@]}" kill "$id" KILL >/dev/null 2>&1 || true
			"${cmd[@]}" delete --force "$id" >/dev/null 2>&1 || true
		done < <("${cmd[@]}" list -q 2>/dev/null || true)
	done
	rm -rf "$build"
}
trap sweep EXIT

CGO_ENABLED=0 GOFLAGS='' GOWORK=off "$GO" build -o "$build/runbench" ./test/bench/runbench
"$build/runbench" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true; wait "$child" || true; exit 130' INT TERM HUP
rc=0
wait "$child" || rc=$?
exit "$rc"
