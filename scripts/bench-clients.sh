#!/usr/bin/env bash
# bench-clients.sh: `run --rm IMAGE true` through Podman (rootful), Docker
# and ctr with moat (gofer, the default), moat --file-access=direct, runc and
# runsc; N runs each (default 20), interleaved, p50 in ms and the ratio to
# runc. Same private daemons and local image as scripts/clients.sh. Root.
#
#   scripts/bench-clients.sh            (make bench-clients; after make build)
#   N=5 CLIENTS='podman ctr' scripts/bench-clients.sh
#
# runsc gets --network=host (Docker, Podman: the namespace the client made)
# or none; a client whose run fails with runsc is reported as such.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
S=${S:-/var/tmp/moat-clients}
LOGS=${LOGS:-/var/tmp/moat-clients-logs}
RESULTS=$LOGS/bench.tsv
N=${N:-20}
CLIENTS=${CLIENTS:-podman docker ctr}
RUNTIMES=${RUNTIMES:-runc moat moat-direct runsc}
MOAT_SRC=${MOAT_BIN:-$HERE/bin/moat}
MOAT=$S/bin/moat
T=60

. "$HERE/scripts/clients/lib.sh"
. "$HERE/scripts/clients/setup.sh"
export S LOGS MOAT IMG
export -f pm dk ctrc

[ "$(id -u)" = 0 ] || { echo "bench-clients.sh: needs root" >&2; exit 2; }
[ -x "$MOAT_SRC" ] || { echo "bench-clients.sh: no $MOAT_SRC (make build)" >&2; exit 2; }
EXTRA_PKGS=runsc install_packages || exit 2
[ ! -e "$S" ] || { echo "bench-clients.sh: $S exists: another run?" >&2; exit 2; }
mkdir -p "$S/bin" "$LOGS"
chmod 0755 "$S"
cp "$MOAT_SRC" "$MOAT"
cd "$S" # conmon drops files (an "oom" marker) in its working directory
# ctr takes one binary per runtime: flags go through a wrapper (one exec of
# sh on top of each runtime call; runc's baseline has none).
printf '#!/bin/sh\nexec %s --file-access=direct "$@"\n' "$MOAT" >"$S/bin/moat-direct"
printf '#!/bin/sh\nexec /usr/bin/runsc --network=none "$@"\n' >"$S/bin/runsc-none"
chmod 0755 "$S/bin" "$S/bin"/*
trap cleanup EXIT
trap 'exit 130' INT TERM
record_before
: >"$RESULTS"

build_image
setup_podman >/dev/null || exit 2
case " $CLIENTS " in *" docker "* | *" ctr "*) start_containerd || exit 2 ;; esac
case " $CLIENTS " in *" docker "*) start_dockerd || exit 2 ;; esac

# cmd CLIENT RUNTIME: the command line of one run.
cmd() {
	local rt=$2
	case $1 in
	podman)
		case $rt in
		moat-direct) echo pm --runtime moat --runtime-flag file-access=direct run --rm "$IMG" true ;;
		runsc) echo pm --runtime /usr/bin/runsc --runtime-flag network=host run --rm "$IMG" true ;;
		*) echo pm --runtime "$rt" run --rm "$IMG" true ;;
		esac ;;
	docker) echo dk run --rm --runtime "$rt" "$IMG" true ;;
	ctr)
		local b
		case $rt in
		runc) b=$(command -v runc) ;; moat) b=$MOAT ;; moat-direct) b=$S/bin/moat-direct ;; runsc) b=$S/bin/runsc-none ;;
		esac
		echo ctrc -n mc run --rm --runc-binary "$b" "$IMG" "bench-$rt-$RANDOM" true ;;
	esac
}

# once CLIENT RUNTIME: one run's wall time in ms, or FAIL (the same bash
# start, which brings the exported client wrappers, in every figure).
once() {
	local t0 t1
	t0=$(date +%s%N)
	if timeout -s KILL "$T" bash -c "$(cmd "$1" "$2")" >>"$LOGS/bench.$1.$2.log" 2>&1; then
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000000))
	else
		echo FAIL
	fi
}

for c in $CLIENTS; do
	echo "== $c: $N interleaved runs per runtime of: $(cmd "$c" runc | sed "s|$S|\$S|g")"
	for rt in $RUNTIMES; do once "$c" "$rt" >/dev/null; done # warm-up
	for i in $(seq "$N"); do
		for rt in $RUNTIMES; do
			printf '%s\t%s\t%s\n' "$c" "$rt" "$(once "$c" "$rt")" >>"$RESULTS"
		done
	done
done

p50() { # CLIENT RUNTIME
	awk -F'\t' -v c="$1" -v r="$2" '$1==c && $2==r && $3!="FAIL" {print $3}' "$RESULTS" | sort -n |
		awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}
fails() { awk -F'\t' -v c="$1" -v r="$2" '$1==c && $2==r && $3=="FAIL"' "$RESULTS" | grep -c .; }

echo
echo "p50 of $N runs of \`run --rm IMAGE true\`, ms (ratio to runc)"
printf '%-8s' client
for rt in $RUNTIMES; do printf ' %-18s' "$rt"; done
echo
for c in $CLIENTS; do
	base=$(p50 "$c" runc)
	printf '%-8s' "$c"
	for rt in $RUNTIMES; do
		v=$(p50 "$c" "$rt") f=$(fails "$c" "$rt")
		if [ -z "$v" ]; then
			cell="fails (log: bench.$c.$rt.log)"
			[ "$rt" = runsc ] && cell="n/a: runsc fails"
		elif [ -n "$base" ]; then
			cell="$v ($(awk -v a="$v" -v b="$base" 'BEGIN {printf "%.2fx", a / b}'))"
		else
			cell=$v
		fi
		[ "$f" -eq 0 ] || [ -z "$v" ] || cell="$cell ${f}F"
		printf ' %-18s' "$cell"
	done
	echo
done
