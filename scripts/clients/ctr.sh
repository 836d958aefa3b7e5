# ctr.sh: containerd's own client (ctr) on the private containerd, the
# runtime chosen per container with --runc-binary (the runc shim's
# BinaryName). Sourced by scripts/clients.sh. ctr has no user, port or
# network flags: those scenarios are the other clients'.

rtbin() { case $RT in runc) command -v runc ;; moat) echo "$MOAT" ;; esac; }
ctx() { ctrc -n mc "$@"; }
# cr ARGS: `ctr run` with the runtime under test; ARGS as ctr run's.
cr() { x ctrc -n mc run --runc-binary "$(rtbin)" "$@"; }
cid() { echo "mc-$RT-$1"; }
CL() { cid long; }

# task_field ID COLUMN: a task's PID (2) or STATUS (3) from `ctr task ls`.
task_field() { ctx task ls 2>/dev/null | awk -v id="$1" -v c="$2" '$1 == id {print $c}'; }
task_is() { [ "$(task_field "$1" 3)" = "$2" ]; }

# in_pty CMD: CMD with a pseudo-terminal on its stdin and stdout.
in_pty() { x script -qec "$*" /dev/null </dev/null; }
ctr_line() { echo "ctr -a $S/containerd.sock -n mc $*"; }

ct_run_exit() {
	local out rc
	out=$(cr --rm "$IMG" "$(cid x)" sh -c 'echo hello; exit 3')
	rc=$?
	want_eq "exit code" "$rc" 3
	want_eq output "$out" hello
}

ct_env() { want_eq output "$(cr --rm --env FOO=bar "$IMG" "$(cid env)" sh -c 'echo $FOO')" bar; }
ct_cwd() { want_eq output "$(cr --rm --cwd /var/www "$IMG" "$(cid cwd)" pwd)" /var/www; }
# (read, not cat: ctr run does not pass on the end of its stdin.)
ct_stdin() { want_eq output "$(echo piped-in | cr --rm "$IMG" "$(cid stdin)" sh -c 'read l; echo "$l"')" piped-in; }

ct_tty() {
	local out
	out=$(in_pty "$(ctr_line run --rm -t --runc-binary "$(rtbin)" "$IMG" "$(cid tty)" sh -c "'tty; echo tty-done'")" | tr -d '\r')
	want_has output "$out" /dev/pts/
	want_has output "$out" tty-done
}

ct_detached() {
	cr -d "$IMG" "$(CL)" sh -c 'exec sleep 1000' >/dev/null || fail "run -d"
	poll 20 task_is "$(CL)" RUNNING || fail "task status '$(task_field "$(CL)" 3)', want RUNNING"
}

# The pid `ctr task ls` gives is the container's process, and `ctr task ps`
# lists it.
ct_pid() {
	local pid ps
	pid=$(task_field "$(CL)" 2)
	ps=$(x ctx task ps "$(CL)")
	echo "$ps" >&2
	echo "$ps" | awk 'NR > 1 {print $1}' | grep -qx "$pid" || fail "task ps does not list task ls's pid $pid"
	want_container_pid "task ls's pid" "$pid" "sleep 1000"
}

ct_ps() {
	want_eq "processes listed by task ps" "$(x ctx task ps "$(CL)" | tail -n +2 | grep -c .)" 1
}

ct_exec() {
	local out rc
	out=$(x ctx task exec --exec-id e1 "$(CL)" sh -c 'echo $((6*7)); exit 5')
	rc=$?
	want_eq output "$out" 42
	want_eq "exit code" "$rc" 5
}

ct_exec_tty() {
	want_has output "$(in_pty "$(ctr_line task exec -t --exec-id e2 "$(CL)" tty)" | tr -d '\r')" /dev/pts/
}

ct_exec_opts() {
	want_eq output "$(x ctx task exec --exec-id e3 --user 1000 --cwd /tmp "$(CL)" sh -c 'id -u; pwd' | tr '\n' ' ')" "1000 /tmp "
}

ct_pause() {
	x ctx task pause "$(CL)" || fail pause
	want_eq status "$(task_field "$(CL)" 3)" PAUSED
	want_eq "freezer state of the container's process" "$(freezer_state "$(task_field "$(CL)" 2)")" FROZEN
	x ctx task resume "$(CL)" || fail resume
	want_eq status "$(task_field "$(CL)" 3)" RUNNING
	want_eq "exec after resume" "$(x ctx task exec --exec-id e4 "$(CL)" echo alive)" alive
}

# kill --all, delete, container rm: nothing is left.
ct_rm() {
	x ctx task kill -a -s SIGKILL "$(CL)" || fail "kill --all"
	poll 20 task_is "$(CL)" STOPPED || fail "status '$(task_field "$(CL)" 3)', want STOPPED"
	x ctx task rm "$(CL)" >/dev/null || fail "task rm"
	x ctx container rm "$(CL)" || fail "container rm"
	want_lacks "containers" "$(x ctx container ls -q)" "$(CL)"
}

# The shim reaps the container's process with its real status.
ct_kill() {
	local n=$(cid kill) bg rc
	cr --rm "$IMG" "$n" sleep 1000 >/dev/null &
	bg=$!
	poll 20 task_is "$n" RUNNING || { kill $bg; fail "status '$(task_field "$n" 3)', want RUNNING"; }
	x ctx task kill -s SIGKILL "$n" || fail kill
	wait $bg
	rc=$?
	want_eq "run's exit code" "$rc" 137
}

ct_bind_rw() {
	local d
	d=$(mkvol)
	want_eq output "$(cr --rm --mount "type=bind,src=$d,dst=/data,options=rbind:rw" "$IMG" "$(cid rw)" sh -c 'cat /data/in; echo written >/data/out')" hostdata
	want_eq "host file" "$(cat "$d/out" 2>&1)" written
}

ct_bind_ro() {
	local d out
	d=$(mkvol)
	out=$(cr --rm --mount "type=bind,src=$d,dst=/data,options=rbind:ro" "$IMG" "$(cid ro)" sh -c 'cat /data/in; echo x >/data/out && echo WROTE; echo done')
	want_eq output "$(echo "$out" | tr '\n' ' ')" "hostdata done "
	[ ! -e "$d/out" ] || fail "a read-only mount was written"
}

ct_read_only() {
	want_eq output "$(cr --rm --read-only "$IMG" "$(cid rootro)" sh -c 'echo x >/file && echo WROTE; echo done')" done
}

ct_memory() {
	local out rc
	out=$(cr --rm --memory-limit 33554432 "$IMG" "$(cid mem)" sh -c 'head -c 100m /dev/zero | tail -n 1 | wc -c')
	rc=$?
	echo "output '$out', exit code $rc" >&2
	[ "$out" = 0 ] || [ $rc -eq 137 ] || fail "100 MiB held under a 32 MiB limit: output '$out', exit code $rc"
}

run_ctr() { # RUNTIMES...
	export DL=ctr
	mkdir -p "$S/vols"
	local s
	for s in run_exit env cwd stdin tty detached pid ps exec exec_tty exec_opts pause rm kill \
		bind_rw bind_ro read_only memory; do
		if [ -n "${ONLY:-}" ] && ! echo ",$ONLY," | grep -q ",$s,"; then continue; fi
		scenario ctr "$s" "ct_$s" "$@"
	done
}
