#!/usr/bin/env bash
# Usage: scripts/bench-fs.sh
#
# File-system benchmark (issues 4 and 13): the same workloads inside containers of each runtime,
# timed from inside (container start-up excluded), warm and cold, medians over ROUNDS
# interleaved rounds; one table per cache state with moat's ratio to runc next to the
# targets (warm: issue 4's; fresh: issue 13's); then the moat gofer's idle RSS. Builds test/bench/fsbench statically
# (it is also the in-container timing helper) and runs it. Needs root; `make bench-fs`
# builds bin/moat first.
#
# Workloads: exec (dash loop of 300 x /bin/true), python (8 x python3 -c 'import
# json,email,http.client'), compile (gcc -O2 -c of 6 C files + g++ -O2 -c of 2 C++ files),
# walk (lstat of every entry of /usr/lib, ~72k), readall (open+read of every file of
# /usr/include, ~8k), seqread (1 GiB file, 1 MiB reads), gitstatus (git status of a
# 50k-file work tree bind-mounted read-write at /repo).
#
# Image: built once from this Debian host's own files (GNU tar copy of /usr minus
# /usr/local, /etc minus secrets, the /bin /sbin /lib* symlinks, plus a 1 GiB
# pseudo-random /data/big) in $IMAGE_DIR/rootfs (~5.9 GiB, ~134k entries; 2-3 min), then
# reused; delete the directory to rebuild. Raw per-run results: $IMAGE_DIR/results/.
#
# Cache states: warm = second of two back-to-back runs in one fresh container; fresh =
# the first of those (new FUSE mount / sandbox, host page cache warm); cold = `sync; echo 3
# > /proc/sys/vm/drop_caches` before each run, fresh container, one run.
#
# Environment:
#   ROUNDS     measured rounds per pass (default 3)
#   WORKLOADS  comma-separated subset of exec,python,compile,walk,readall,seqread,gitstatus
#   EXEC_N, PYTHON_N  iterations of exec and python (default 300 and 8)
#   REPO_FILES files in gitstatus's work tree (default 50000; built once in $IMAGE_DIR/repo)
#   RUNTIMES   comma-separated [label=]command [global flags], or native; default
#              "native,runc,moat=bin/moat,moat-shared=bin/moat --shared-gofer --shared-gofer-idle=10m,moat-direct=bin/moat --file-access=direct,runsc=runsc --network=none"
#              (the one labelled "moat" is checked against the targets, relative to "runc";
#              "moat-shared" takes its root from the image's shared gofer (--shared-gofer),
#              warm from the rounds before it: its idle time outlasts a round's other runs;
#              the benchmark's shared gofers are stopped when it ends)
#   PASSES     warm,cold (default both; warm also gives the fresh table)
#   TIMEOUT    seconds per container run (default 600)
#   IMAGE_DIR  default /var/tmp/moat-bench-image
#   WALK_DIR, READ_DIR, BIG_MIB   default /usr/lib, /usr/include, 1024
#   ROOT_BASE  runtimes get --root=$ROOT_BASE/<label> (default /run/fsbench), so that other
#              tools' clean-up of "every listed container" cannot kill the benchmark's
#   RSS=0      skip the gofer memory measurement
# Examples:
#   sudo make bench-fs
#   ROUNDS=1 WORKLOADS=walk,readall RUNTIMES="runc,moat=bin/moat" PASSES=warm scripts/bench-fs.sh
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
GO=${GO:-go}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "bench-fs: must run as root" >&2
	exit 1
fi

build=$(mktemp -d "${TMPDIR:-/tmp}/bench-fs.XXXXXX")

# Safety net: fsbench removes its containers itself (also on SIGINT/SIGTERM). If it was
# killed hard, `fsbench sweep` removes what it left: containers named fsbench-* in the
# runtimes' private state roots ($ROOT_BASE/<label>, default /run/fsbench).
# shellcheck disable=SC2317 # invoked by the EXIT trap
sweep() {
	[[ -x $build/fsbench ]] && timeout 300 "$build/fsbench" sweep || true
	# The shared gofers the benchmark started (state roots under ROOT_BASE)
	# would otherwise outlive it by their idle time.
	pkill -TERM -f -- "--root=${ROOT_BASE:-/run/fsbench}/.* gofer --shared" || true
	rm -rf "$build"
}
trap sweep EXIT

CGO_ENABLED=0 GOFLAGS='' GOWORK=off "$GO" build -trimpath -o "$build/fsbench" ./test/bench/fsbench
"$build/fsbench" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true; wait "$child" || true; exit 130' INT TERM HUP
rc=0
wait "$child" || rc=$?
exit "$rc"
