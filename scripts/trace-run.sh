#!/usr/bin/env bash
# Usage: scripts/trace-run.sh [moat global flags...]
#
# Start-up timeline of `moat run` of /bin/true: runs it RUNS times (default 7)
# with MOAT_TRACE_FILE set (every moat process appends "usec role event"),
# and prints the run with the median total as a timeline: each event's offset
# from the CLI's start, the time since the event before, and that gap's share
# of the whole run. Needs root (or pass --root DIR and run as a user) and
# busybox-static. Example: scripts/trace-run.sh --file-access=direct
set -euo pipefail
cd "$(dirname "$0")/.."
moat=${MOAT:-bin/moat}
runs=${RUNS:-7}
work=$(mktemp -d "${TMPDIR:-/tmp}/trace-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
(cd "$work/bundle" && "$OLDPWD/$moat" spec -- /bin/busybox true >/dev/null)
root=()
[[ $(id -u) -eq 0 ]] || root=(--root "$work/state")
for i in $(seq 1 "$runs"); do
	MOAT_TRACE_FILE="$work/trace.$i" "$moat" "${root[@]}" "$@" run --bundle "$work/bundle" "trace-run-$$-$i" >/dev/null
done
best=$(for i in $(seq 1 "$runs"); do
	awk -v i="$i" 'NR==1{a=$1} {b=$1} END{print b-a, i}' "$work/trace.$i"
done | sort -n | awk -v n="$runs" 'NR==int((n+1)/2){print $2}')
echo "moat run /bin/true, the median of $runs runs (flags: ${*:-none}):"
awk '
	NR==1 { t0 = $1; prev = $1 }
	{ at[NR] = $1; line[NR] = $0 }
	END {
		total = at[NR] - t0
		printf "%9s %9s %6s  %s\n", "at ms", "gap ms", "share", "role event"
		for (i = 1; i <= NR; i++) {
			gap = at[i] - (i > 1 ? at[i-1] : t0)
			split(line[i], f, " ")
			ev = substr(line[i], length(f[1]) + 2)
			printf "%9.1f %9.1f %5.1f%%  %s\n", (at[i]-t0)/1000, gap/1000, total ? 100*gap/total : 0, substr(ev, 1, 90)
		}
		printf "total %.1f ms\n", total/1000
	}' "$work/trace.$best"
