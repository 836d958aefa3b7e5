#!/usr/bin/env bash
# Usage: scripts/conformance.sh [RUNTIME...]
#
# Runs the OCI runtime-tools v0.9.0 validation suite (validation/<name>/ TAP programs)
# against each RUNTIME in turn and prints per-program results plus a summary table.
#
#   RUNTIME   a binary name or path, optionally with global flags in the same word,
#             e.g. "runc", "bin/moat", "bin/moat --overlay=none", "runsc --network=none".
#             Default: runc, then bin/moat if it exists (relative to the repo root).
#
# Environment:
#   MOAT_CONFORMANCE_DIR   cache/work dir (default /var/tmp/moat-conformance); holds the
#                          patched runtime-tools tree (src/), built programs, results/<runtime>/
#   CONFORMANCE_TIMEOUT    per-program timeout in seconds (default 60)
#   CONFORMANCE_TESTS      space-separated subset of program names (default: all)
#   CONFORMANCE_BASELINE   runtime label whose passing tests others are compared with (default runc);
#                          if it is not in this run, its results from an earlier run are used
#   CONFORMANCE_REBUILD=1  rebuild the suite even if the cache is up to date
#   CONFORMANCE_STRICT=1   exit 1 if a runtime fails a test the baseline passes
#
# Must run as root (the suite creates cgroups, namespaces, mounts). Needs go, tar, timeout,
# unshare (util-linux). The first run downloads the module through the Go module proxy.
set -euo pipefail

RT_MODULE=github.com/opencontainers/runtime-tools
RT_VERSION=v0.9.0
RECIPE=1 # bump when the build recipe below changes, to invalidate the cache

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${MOAT_CONFORMANCE_DIR:-/var/tmp/moat-conformance}
TIMEOUT=${CONFORMANCE_TIMEOUT:-60}
BASELINE=${CONFORMANCE_BASELINE:-runc}
SRC=$DIR/src
BIN=$DIR/src/validation-bin
GO=${GO:-go}

export GOWORK=off GO111MODULE=on GOFLAGS=-mod=mod

log() { printf '%s\n' "$*" >&2; }
die() { log "conformance: $*"; exit 2; }

# ---------------------------------------------------------------------------
# Build: download the module, give it a go.mod (it predates modules: Godeps only, and
# the module zip has no vendor/), pin dependencies to versions that the proxy serves and
# that still compile against this code, patch runtimetest, build everything.
# ---------------------------------------------------------------------------
write_gomod() {
	# Pins, chosen against Godeps/Godeps.json; commit-pinned pseudo-versions other than a
	# module's latest are not served by the proxy here, so the nearest tags are used:
	#  runtime-spec v1.0.2 (Godeps: v1.0.1-57), selinux v1.8.2 (label.FileLabel removed later),
	#  satori/go.uuid v1.2.0 (NewV4 without error), urfave/cli v1.19.1, logrus v1.0.4.
	cat >"$SRC/go.mod" <<'EOF'
module github.com/opencontainers/runtime-tools

go 1.21

require (
	github.com/blang/semver v3.5.0+incompatible
	github.com/hashicorp/go-multierror v1.0.0
	github.com/mndrix/tap-go v0.0.0-20171203230836-629fa407e90b
	github.com/mrunalp/fileutils v0.5.0
	github.com/opencontainers/runtime-spec v1.0.2
	github.com/opencontainers/selinux v1.8.2
	github.com/satori/go.uuid v1.2.0
	github.com/sirupsen/logrus v1.0.4
	github.com/syndtr/gocapability v0.0.0-20200815063812-42c35b437635
	github.com/urfave/cli v1.19.1
	github.com/xeipuuv/gojsonschema v1.1.0
	github.com/hashicorp/errwrap v1.0.0
	github.com/xeipuuv/gojsonpointer v0.0.0-20190905194746-02993c407bfb
	github.com/xeipuuv/gojsonreference v0.0.0-20180127040603-bd5ef7bd5415
	github.com/pkg/errors v0.9.1
	github.com/bits-and-blooms/bitset v1.2.0
)
EOF
}

write_rlimit_patch() {
	# Go >= 1.19 raises its own soft RLIMIT_NOFILE at start-up (syscall package init), so the
	# runtimetest binary would see Max-1 instead of the limit the runtime set (process_rlimits
	# "has expected soft RLIMIT_NOFILE" fails for every runtime). Restore the saved original.
	cat >"$SRC/cmd/runtimetest/zz_moat_rlimit.go" <<'EOF'
package main

// Added by moat's scripts/conformance.sh, not upstream: undo Go's start-up raise of the soft
// RLIMIT_NOFILE so the checks see the limit the runtime under test applied.

import (
	"sync/atomic"
	"syscall"
	_ "unsafe" // for go:linkname
)

//go:linkname origRlimitNofile syscall.origRlimitNofile
var origRlimitNofile atomic.Pointer[syscall.Rlimit]

func init() {
	if lim := origRlimitNofile.Load(); lim != nil {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, lim)
	}
}
EOF
}

build_suite() {
	local stamp
	stamp="$RT_MODULE@$RT_VERSION recipe=$RECIPE go=$($GO env GOVERSION)"
	if [[ ${CONFORMANCE_REBUILD:-0} != 1 && -f $DIR/build.stamp && $(cat "$DIR/build.stamp") == "$stamp" &&
		-x $SRC/runtimetest ]]; then
		return 0
	fi
	log "conformance: building $RT_MODULE@$RT_VERSION in $SRC"
	mkdir -p "$DIR"
	local json moddir
	json=$(cd "$DIR" && GOFLAGS='' $GO mod download -json "$RT_MODULE@$RT_VERSION") ||
		die "go mod download failed: $json"
	moddir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[[ -d $moddir ]] || die "no module dir in: $json"
	rm -rf "$SRC" "$DIR/build.stamp"
	cp -r "$moddir" "$SRC"
	chmod -R u+w "$SRC"
	tar -tzf "$SRC/rootfs-amd64.tar.gz" ./bin/busybox >/dev/null ||
		die "$SRC/rootfs-amd64.tar.gz is not the expected rootfs tarball"
	write_gomod
	(cd "$SRC" && $GO mod tidy -e >"$DIR/build.log" 2>&1) || { cat "$DIR/build.log" >&2; die "go mod tidy failed"; }

	write_rlimit_patch
	: >"$DIR/build-notes.txt"
	if ! (cd "$SRC" && CGO_ENABLED=0 $GO build -ldflags=-checklinkname=0 -o runtimetest ./cmd/runtimetest) \
		>>"$DIR/build.log" 2>&1; then
		echo "runtimetest: RLIMIT_NOFILE patch did not build with $($GO env GOVERSION); built unpatched" \
			"(process_rlimits soft RLIMIT_NOFILE check will fail for every runtime)" >>"$DIR/build-notes.txt"
		rm -f "$SRC/cmd/runtimetest/zz_moat_rlimit.go"
		(cd "$SRC" && CGO_ENABLED=0 $GO build -o runtimetest ./cmd/runtimetest) >>"$DIR/build.log" 2>&1 ||
			{ cat "$DIR/build.log" >&2; die "runtimetest does not build"; }
	fi

	rm -rf "$BIN" && mkdir -p "$BIN"
	# One go build for all programs (fast); then each missing one alone to record why.
	(cd "$SRC" && $GO build -o "$BIN/" ./validation/...) >>"$DIR/build.log" 2>&1 || true
	local d name
	for d in "$SRC"/validation/*/; do
		name=$(basename "$d")
		[[ $name == util ]] && continue
		if [[ -x $BIN/$name ]]; then
			mv "$BIN/$name" "$BIN/$name.t"
		else
			local err
			err=$(cd "$SRC" && $GO build -o "$BIN/$name.t" "./validation/$name" 2>&1) ||
				printf '%s: does not build: %s\n' "$name" "$(printf '%s' "$err" | head -3 | tr '\n' ' ')" \
					>>"$DIR/build-notes.txt"
		fi
	done
	printf '%s\n' "$stamp" >"$DIR/build.stamp"
}

# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------
# label_of SPEC: file-name-safe label, e.g. "runc", "moat_--overlay=none".
label_of() {
	local first rest
	read -r first rest <<<"$1"
	printf '%s' "$(basename "$first")${rest:+ $rest}" | tr -c 'A-Za-z0-9._=-' '_'
}

# resolve_runtime SPEC -> prints the absolute command path (a wrapper script when SPEC has flags):
# the suite does exec.LookPath($RUNTIME) and passes no global flags of its own.
resolve_runtime() {
	local spec=$1 first rest path
	read -r first rest <<<"$spec"
	if [[ $first == */* ]]; then
		[[ $first == /* ]] || first=$PWD/$first
		[[ -x $first ]] || return 1
		path=$(cd "$(dirname "$first")" && pwd)/$(basename "$first")
	else
		path=$(command -v "$first") || return 1
	fi
	if [[ -z $rest ]]; then
		printf '%s\n' "$path"
		return 0
	fi
	local w
	w=$DIR/wrappers/$(label_of "$spec")
	mkdir -p "$DIR/wrappers"
	printf '#!/bin/sh\nexec %q %s "$@"\n' "$path" "$rest" >"$w"
	chmod +x "$w"
	printf '%s\n' "$w"
}

# Containers the runtime lists (best effort; runsc only knows --quiet, not -q).
list_ids() { { "$1" list --quiet 2>/dev/null || "$1" list -q 2>/dev/null || true; } | sort; }

# kill_strays DIR MARKER: SIGKILL processes a program left behind: those still carrying its
# MARKER environment entry (e.g. linux_ns_path's `unshare ... sleep 10000` helpers, which
# escape the timeout's process group) or working in DIR (cwd or command line; e.g. a
# sandbox the runtime forgot after `delete`). Prints how many it killed.
kill_strays() {
	local d=$1 marker=$2 pid n=0
	while read -r pid; do
		[[ $pid -ne $$ && $pid -ne $BASHPID ]] || continue
		kill -KILL "$pid" 2>/dev/null && n=$((n + 1))
	done < <({
		grep -lzxF "$marker" /proc/[0-9]*/environ
		grep -lzF "$d/" /proc/[0-9]*/cmdline
		find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$d/*"
	} 2>/dev/null | cut -d/ -f3 | sort -un)
	echo "$n"
}

cleanup_leftovers() { # rtcmd before-file
	local id
	while read -r id; do
		[[ -n $id ]] || continue
		"$1" kill "$id" KILL >/dev/null 2>&1 || true
		"$1" delete --force "$id" >/dev/null 2>&1 || "$1" delete "$id" >/dev/null 2>&1 || true
	done < <(comm -13 "$2" <(list_ids "$1"))
}

# clean_tmpdir DIR: detach mounts a program left under DIR in the host mount namespace (e.g.
# linux_ns_itype runs a container without a mount namespace, so runc mounts proc/sys/dev into
# the bundle on the host), then remove DIR without ever crossing a mount point.
# Prints the number of mounts it had to detach.
clean_tmpdir() {
	local d=$1 m n=0
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
		n=$((n + 1))
	done < <(awk -v d="$d/" 'index($5, d) == 1 || $5 == substr(d, 1, length(d) - 1) { print $5 }' \
		/proc/self/mountinfo | sort -r)
	rm -rf --one-file-system "$d" 2>/dev/null || true
	echo "$n"
}

# classify TAPFILE RC -> "STATUS ok notok skip"
classify() {
	awk -v rc="$2" '
		/^ok / && /#[ \t]*[Ss][Kk][Ii][Pp]/ { skip++; next }
		/^ok /      { ok++; next }
		/^not ok /  { nok++; next }
		/^1\.\.[0-9]+/ { plan += substr($0, 4) + 0; hasplan = 1 }   # some programs print 2 TAP streams
		/^[ \t]+---[ \t]*$/ { diag++ }
		END {
			n = ok + nok + skip
			if (rc == 124 || rc == 137) st = "TIMEOUT"
			else if (rc != 0) st = "FAIL"
			else if (nok > 0) st = "FAIL"
			# No test lines: the hook/*_fail programs report success as silence or a bare
			# "1..0" and failure as a YAML diagnostic (or a non-zero exit, handled above).
			else if (n == 0) st = (diag == 0 ? "PASS" : "FAIL")
			else if (hasplan && plan != n) st = "FAIL"
			else if (ok == 0) st = "SKIP"
			else st = "PASS"
			printf "%s %d %d %d\n", st, ok, nok, skip
		}' "$1"
}

# tests_of PROG TAPFILE -> "prog<TAB>description#occurrence<TAB>ok|not ok|skip" per TAP line
tests_of() {
	awk -v prog="$1" '
		/^(not )?ok / {
			st = ($0 ~ /^not ok/) ? "not ok" : "ok"
			if (st == "ok" && $0 ~ /#[ \t]*[Ss][Kk][Ii][Pp]/) st = "skip"
			d = $0
			sub(/^(not )?ok [0-9]*[ \t]*(- )?/, "", d)
			k = d "#" (++seen[d])
			printf "%s\t%s\t%s\n", prog, k, st
		}' "$2"
}

run_suite() { # spec
	local spec=$1 label rt res
	label=$(label_of "$spec")
	if ! rt=$(resolve_runtime "$spec"); then
		log "conformance: runtime '$spec' not found, skipped"
		return 1
	fi
	res=$DIR/results/$label
	rm -rf "$res" && mkdir -p "$res"
	local tmp=$DIR/tmp/$label
	clean_tmpdir "$tmp" >/dev/null
	mkdir -p "$tmp"
	list_ids "$rt" >"$res/.before"
	printf 'program\tstatus\trc\tok\tnot_ok\tskip\tseconds\n' >"$res/summary.tsv"
	: >"$res/tests.tsv"

	echo "== $spec ($rt), timeout ${TIMEOUT}s per program; logs in $res"
	local p t0 t1 rc verdict st ok nok sk secs marker
	for p in "${PROGRAMS[@]}"; do
		t0=$(date +%s%N)
		rc=0
		mkdir -p "$tmp/$p"
		marker="MOAT_CONFORMANCE_RUN=$$.$label.$p"
		(cd "$SRC" && env "$marker" RUNTIME="$rt" TMPDIR="$tmp/$p" timeout -k 10 "$TIMEOUT" "$BIN/$p.t") \
			>"$res/$p.tap" 2>"$res/$p.err" </dev/null || rc=$?
		t1=$(date +%s%N)
		secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
		verdict=$(classify "$res/$p.tap" "$rc")
		read -r st ok nok sk <<<"$verdict"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$st" "$rc" "$ok" "$nok" "$sk" "$secs" >>"$res/summary.tsv"
		tests_of "$p" "$res/$p.tap" >>"$res/tests.tsv"
		printf '%s\t(program)#1\t%s\n' "$p" "$([[ $st == PASS || $st == SKIP ]] && echo ok || echo "not ok")" \
			>>"$res/tests.tsv"
		local why=""
		if [[ $st != PASS && $st != SKIP ]]; then
			why=$(grep -v '^[[:space:]]*$' "$res/$p.err" | grep -v '^failed to \(create\|start\) the container$' |
				head -1 | cut -c1-150 || true)
			[[ -n $why ]] || why=$(grep -m1 '^not ok' "$res/$p.tap" | cut -c1-150 || true)
			[[ -n $why ]] || why=$(grep -m1 '"error":' "$res/$p.tap" | sed 's/^[[:space:]]*//' | cut -c1-150 || true)
		fi
		printf '  %-7s %-34s ok=%-4s not_ok=%-3s skip=%-3s rc=%-3s %5ss  %s\n' \
			"$st" "$p" "$ok" "$nok" "$sk" "$rc" "$secs" "$why"
		cleanup_leftovers "$rt" "$res/.before"
		local leaked
		leaked=$(kill_strays "$tmp/$p" "$marker")
		[[ $leaked -eq 0 ]] || echo "          ($p left $leaked process(es) behind; killed)"
		leaked=$(clean_tmpdir "$tmp/$p")
		[[ $leaked -eq 0 ]] || echo "          ($p left $leaked mount(s) in the host mount namespace under its bundle; detached)"
	done
	clean_tmpdir "$tmp" >/dev/null
	RAN+=("$spec")
}

summary_row() { # spec
	local res
	res=$DIR/results/$(label_of "$1")
	awk -F'\t' -v rt="$1" 'NR > 1 {
			n++; if ($2 == "PASS" || $2 == "SKIP") pass++
			if ($2 == "TIMEOUT") to++
			ok += $4; nok += $5; sk += $6
		}
		END { printf "%-28s %5d/%-5d %7d %7d %7d %8d\n", rt, pass, n, ok, nok, sk, to }' "$res/summary.tsv"
}

# regressions SPEC: tests the baseline passes ("ok") that SPEC does not, in programs that do not
# pass with SPEC; one line per program.
regressions() {
	local base res n
	base=$DIR/results/$(label_of "$BASELINE")/tests.tsv
	res=$DIR/results/$(label_of "$1")
	awk -F'\t' 'NR == FNR { if ($3 == "ok") want[$1 "\t" $2] = 1; order[$1 "\t" $2] = FNR; next }
		{ got[$1 "\t" $2] = $3; ran[$1] = 1; if ($2 == "(program)#1" && $3 == "ok") passed[$1] = 1 }
		END { for (k in want) {
			split(k, kp, "\t")
			if (!(kp[1] in ran)) continue # not run this time (CONFORMANCE_TESTS)
			if (kp[1] in passed) continue # e.g. *_fail programs: the expected error means no TAP lines
			if (!(k in got) || got[k] != "ok") print order[k] "\t" k "\t" ((k in got) ? got[k] : "missing")
		} }' \
		"$base" "$res/tests.tsv" | sort -n | cut -f2- >"$res/regressions.tsv"
	[[ -s $res/regressions.tsv ]] || { echo "-- $1: passes everything $BASELINE passes"; return 0; }
	n=$(grep -vc $'\t(program)#1\t' "$res/regressions.tsv" || true)
	echo "-- $1: $n TAP test(s) that $BASELINE passes are not ok here (list: $res/regressions.tsv);"
	echo "   per program: count, +program = the program itself fails here but passes with $BASELINE"
	awk -F'\t' '
		$2 == "(program)#1" { progfail[$1] = 1; if (!($1 in c)) { c[$1] = 0; ord[++np] = $1 }; next }
		{ if (!($1 in c)) { c[$1] = 0; ord[++np] = $1 }
		  if (c[$1]++ == 0) { d = $2; sub(/#[0-9]+$/, "", d); first[$1] = $3 ": " d } }
		END { for (i = 1; i <= np; i++) { p = ord[i]
			printf "   %-32s %4d%s%s\n", p, c[p], (p in progfail) ? " +program" : "",
				(c[p] ? "  first: " substr(first[p], 1, 90) : "") } }' "$res/regressions.tsv"
	return 1
}

main() {
	[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; }
	[[ $(id -u) -eq 0 ]] || log "conformance: warning: not root; most programs need root"
	local specs=("$@")
	if [[ ${#specs[@]} -eq 0 ]]; then
		specs=(runc)
		[[ -x $repo_root/bin/moat ]] && specs+=("$repo_root/bin/moat")
	fi

	build_suite
	if [[ -s $DIR/build-notes.txt ]]; then
		log "conformance: build notes:"
		sed 's/^/  /' "$DIR/build-notes.txt" >&2
	fi
	PROGRAMS=()
	local f
	if [[ -n ${CONFORMANCE_TESTS:-} ]]; then
		for f in $CONFORMANCE_TESTS; do
			[[ -x $BIN/$f.t ]] || die "no such program: $f"
			PROGRAMS+=("$f")
		done
	else
		for f in "$BIN"/*.t; do PROGRAMS+=("$(basename "$f" .t)"); done
	fi

	RAN=()
	local s
	for s in "${specs[@]}"; do run_suite "$s" || true; done
	[[ ${#RAN[@]} -gt 0 ]] || die "no runtime could be run"

	echo
	echo "== summary (programs: PASS or all-SKIP count as passed; TAP counts are top-level ok/not ok lines)"
	printf '%-28s %11s %7s %7s %7s %8s\n' runtime programs tap_ok not_ok skipped timeouts
	for s in "${RAN[@]}"; do summary_row "$s"; done

	local rc=0
	if [[ -f $DIR/results/$(label_of "$BASELINE")/tests.tsv ]]; then
		for s in "${RAN[@]}"; do
			[[ $(label_of "$s") == "$(label_of "$BASELINE")" ]] && continue
			echo
			regressions "$s" || rc=1
		done
	fi
	[[ ${CONFORMANCE_STRICT:-0} == 1 ]] || rc=0
	return "$rc"
}

main "$@"
