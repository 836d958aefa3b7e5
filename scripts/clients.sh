#!/usr/bin/env bash
# clients.sh: drive moat and runc through real clients — rootful Podman,
# rootless Podman, Docker, ctr (containerd) and crictl (containerd's CRI) —
# with their everyday commands, one PASS/FAIL line per scenario and runtime
# and a closing table. Needs root (Debian 12). Installs what is missing,
# builds a busybox image locally (no registry), starts private daemons on
# their own sockets and state dirs under $S, and removes everything after.
#
#   scripts/clients.sh                      (make clients; after make build)
#   CLIENTS='podman docker' RUNTIMES=moat ONLY=run_exit,exec scripts/clients.sh
#   KEEP=1 scripts/clients.sh               keep $S (daemons are still stopped)
#   REPORT=FILE scripts/clients.sh          also write the table and each failure's log as Markdown
#
# Exit status 1 when moat fails a scenario that runc passes; a scenario
# that runc fails too is reported, not fatal.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
S=${S:-/var/tmp/moat-clients}
LOGS=${LOGS:-/var/tmp/moat-clients-logs}
RESULTS=$LOGS/results.tsv
CLIENTS=${CLIENTS:-podman podman-rl docker ctr cri}
RUNTIMES=${RUNTIMES:-runc moat}
MOAT_SRC=${MOAT_BIN:-$HERE/bin/moat}
MOAT=$S/bin/moat # a copy every user can run; its processes are found by path

. "$HERE/scripts/clients/lib.sh"
. "$HERE/scripts/clients/setup.sh"
. "$HERE/scripts/clients/dockerlike.sh"
. "$HERE/scripts/clients/ctr.sh"
. "$HERE/scripts/clients/cri.sh"

export S LOGS MOAT RL_USER IMG PAUSE_IMG
export -f cli pm pmu dk ctrc cric ctx

[ "$(id -u)" = 0 ] || { echo "clients.sh: needs root" >&2; exit 2; }
[ -x "$MOAT_SRC" ] || { echo "clients.sh: no $MOAT_SRC (make build)" >&2; exit 2; }
check_readme_snippets || exit 2
install_packages || exit 2

if [ -e "$S" ]; then
	echo "clients.sh: $S exists (another run, or KEEP=1 of an earlier one): remove it first" >&2
	exit 2
fi
mkdir -p "$S/bin" "$LOGS"
chmod 0755 "$S"
rm -f "$LOGS"/*.log "$RESULTS"
touch "$RESULTS"
cp "$MOAT_SRC" "$MOAT"
cd "$S" # conmon drops files (an "oom" marker) in its working directory
chmod 0755 "$S/bin" "$MOAT"
trap cleanup EXIT
trap 'echo "clients.sh: signalled" >&2; exit 130' INT TERM HUP
record_before
echo "== moat: $("$MOAT" --version | head -1); runc: $(runc --version | head -1)"

build_image
setup_podman || { echo "podman setup failed" >&2; exit 2; }
for c in $CLIENTS; do
	case $c in
	podman) echo "== rootful Podman $(podman --version | awk '{print $3}')"; run_dockerlike podman $RUNTIMES ;;
	podman-rl)
		echo "== rootless Podman as $RL_USER"
		if setup_podman_rootless; then run_dockerlike podman-rl $RUNTIMES; else echo "FAIL  podman-rl setup"; printf 'podman-rl\tsetup\trunc\tFAIL\n' >>"$RESULTS"; fi ;;
	docker | ctr | cri)
		[ -S "$S/containerd.sock" ] || start_containerd || { echo "containerd did not start" >&2; exit 2; }
		case $c in
		docker)
			echo "== Docker $(dockerd --version | awk '{print $3}' | tr -d ,)"
			[ -S "$S/docker.sock" ] || start_dockerd || { echo "dockerd did not start" >&2; exit 2; }
			run_dockerlike docker $RUNTIMES ;;
		ctr) echo "== ctr (containerd $(containerd --version | awk '{print $3}'))"; run_ctr $RUNTIMES ;;
		cri) echo "== crictl (containerd CRI)"; run_cri $RUNTIMES ;;
		esac ;;
	*) echo "clients.sh: unknown client $c" >&2; exit 2 ;;
	esac
done
[ -z "${REPORT:-}" ] || report_md "$REPORT"
table
