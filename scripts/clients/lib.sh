# lib.sh: scenario runner, assertions and the closing table of
# scripts/clients.sh. Sourced; needs S (state dir) and RESULTS.
#
# A scenario is a shell function run in a subshell, once per runtime, with
# RT set to the runtime's name. It passes when it returns 0; it reports why
# it failed with fail (exits the subshell). Its stdout and stderr go to
# $LOGS/CLIENT.SCENARIO.RT.log, and the log's tail is printed on FAIL.

T=${T:-60} # default bound, in seconds, of one client command

# x CMD...: CMD bounded by $T seconds (then SIGKILL, to its process group: a
# client that forwards TERM to a container that ignores it would hang); the command
# line goes to the scenario's log (fd 9), not into captured output.
# Shell functions (the client wrappers) run in a bash that inherits them:
# scripts/clients.sh exports them.
# A command that times out returns 124 (SIGKILL alone would look like an
# exit status of 137, which scenarios expect of a killed container).
x() {
	{ echo "+ $*" >&9; } 2>/dev/null || true
	local t0=$SECONDS rc
	if [ "$(type -t "$1")" = function ]; then
		timeout -s KILL "$T" bash -c '"$@"' x "$@"
	else
		timeout -s KILL "$T" "$@"
	fi
	rc=$?
	if [ $rc -eq 137 ] && [ $((SECONDS - t0)) -ge "$T" ]; then
		{ echo "TIMEOUT: $1 did not return within ${T}s" >&9; } 2>/dev/null || true
		return 124
	fi
	return $rc
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# want_eq WHAT GOT WANT
want_eq() {
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
	echo "ok: $1 = '$3'" >&2
}

# want_has WHAT GOT SUBSTRING
want_has() {
	case $2 in *"$3"*) echo "ok: $1 has '$3'" >&2 ;; *) fail "$1: '$2' lacks '$3'" ;; esac
}

# want_lacks WHAT GOT SUBSTRING
want_lacks() {
	case $2 in *"$3"*) fail "$1: '$2' has '$3'" ;; *) echo "ok: $1 lacks '$3'" >&2 ;; esac
}

# poll SECONDS CMD...: run CMD every 0.2 s until it succeeds; fails after
# SECONDS.
poll() {
	local end=$((SECONDS + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.2
	done
}

# nsof PID KIND: the namespace inode link of a process, or "gone".
nsof() { readlink "/proc/$1/ns/$2" 2>/dev/null || echo gone; }

# cmdof PID: a process's command line, arguments joined by spaces.
cmdof() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | sed 's/ $//'; }

# freezer_state PID: FROZEN or THAWED, from the process's cgroup v1
# freezer, else its cgroup v2 cgroup.freeze.
freezer_state() {
	local p
	p=$(awk -F: '$2 == "freezer" {print $3}' "/proc/$1/cgroup" 2>/dev/null)
	if [ -n "$p" ] && [ -e "/sys/fs/cgroup/freezer$p/freezer.state" ]; then
		cat "/sys/fs/cgroup/freezer$p/freezer.state"
		return
	fi
	p=$(awk -F: '$1 == "0" {print $3}' "/proc/$1/cgroup" 2>/dev/null)
	local f
	for f in "/sys/fs/cgroup$p/cgroup.freeze" "/sys/fs/cgroup/unified$p/cgroup.freeze"; do
		[ -e "$f" ] || continue
		[ "$(cat "$f")" = 1 ] && echo FROZEN || echo THAWED
		return
	done
	echo "unknown (no freezer for pid $1)"
}

# want_container_pid WHAT PID CMDLINE: PID is the container's own process
# (its command line is CMDLINE) in a pid namespace other than the host's.
want_container_pid() {
	[ -n "$2" ] && [ "$2" -gt 0 ] 2>/dev/null || fail "$1: no pid ('$2')"
	want_eq "$1 command line of pid $2" "$(cmdof "$2")" "$3"
	[ "$(nsof "$2" pid)" != "$(nsof 1 pid)" ] || fail "$1: pid $2 is in the host's pid namespace"
	echo "ok: $1 pid $2 is in pid namespace $(nsof "$2" pid), not the host's" >&2
}

# scenario CLIENT NAME FUNC RUNTIME...: run FUNC once per runtime, print
# one PASS/FAIL line each, record it in $RESULTS.
scenario() {
	local client=$1 name=$2 fn=$3 rt log rc
	shift 3
	for rt in "$@"; do
		log="$LOGS/$client.$name.$rt.log"
		(export RT=$rt; set +e; "$fn") >"$log" 2>&1 9>&2 </dev/null
		rc=$?
		if [ $rc -eq 0 ]; then
			printf 'PASS  %-10s %-22s %s\n' "$client" "$name" "$rt"
			printf '%s\t%s\t%s\tPASS\n' "$client" "$name" "$rt" >>"$RESULTS"
		else
			printf 'FAIL  %-10s %-22s %s   (log: %s)\n' "$client" "$name" "$rt" "$log"
			grep -E '^(\+ |FAIL: )' "$log" | tail -n 4 | sed 's/^/        /' | cut -c1-300
			printf '%s\t%s\t%s\tFAIL\n' "$client" "$name" "$rt" >>"$RESULTS"
		fi
	done
}

# table: the closing scenario x runtime table; returns 1 when moat fails a
# scenario that runc passes.
table() {
	local rts bad=0
	rts=$(cut -f3 "$RESULTS" | awk '!seen[$0]++' | tr '\n' ' ')
	echo
	printf '%-34s' "scenario"
	for rt in $rts; do printf ' %-6s' "$rt"; done
	echo
	awk -F'\t' '!seen[$1"/"$2]++ {print $1"/"$2}' "$RESULTS" | while read -r key; do
		printf '%-34s' "$key"
		for rt in $rts; do
			r=$(awk -F'\t' -v k="$key" -v rt="$rt" '$1"/"$2==k && $3==rt {print $4}' "$RESULTS")
			printf ' %-6s' "${r:--}"
		done
		echo
	done
	echo
	local regress
	regress=$(awk -F'\t' '$4=="PASS" && $3=="runc" {ok[$1"/"$2]=1}
		$4=="FAIL" && $3 ~ /^moat/ {f[$1"/"$2" ("$3")"]=$1"/"$2}
		END {for (k in f) if (ok[f[k]]) print k}' "$RESULTS" | sort)
	local both
	both=$(awk -F'\t' '$4=="FAIL" && $3=="runc" {print $1"/"$2}' "$RESULTS" | sort -u)
	echo "totals: $(awk -F'\t' '{n[$3" "$4]++} END {for (k in n) printf "%s=%d ", k, n[k]}' "$RESULTS")"
	if [ -n "$both" ]; then
		echo "runc fails too (reported, not fatal):"
		echo "$both" | sed 's/^/  /'
	fi
	if [ -n "$regress" ]; then
		echo "moat fails where runc passes:"
		echo "$regress" | sed 's/^/  /'
		bad=1
	fi
	return $bad
}

# report_md FILE: the table and, for every failure, its log's commands,
# errors and verdict (lines cut at 400 characters), as Markdown.
report_md() {
	{
		echo '```'
		table 2>&1 || true
		echo '```'
		awk -F'\t' '$4 == "FAIL" {print $1 "." $2 "." $3}' "$RESULTS" | while read -r k; do
			echo
			echo "### FAIL $k"
			echo '```'
			grep -vE '^ok: ' "$LOGS/$k.log" | head -n 30 | cut -c1-400
			echo '```'
		done
	} >"$1"
}
