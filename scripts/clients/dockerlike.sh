# dockerlike.sh: the everyday commands of Docker and Podman (rootful and
# rootless), which share a command line. Sourced by scripts/clients.sh.
#
# DL selects the client: podman, podman-rl (rootless, as $RL_USER) or
# docker. RT is the runtime under test (runc or moat).

cli() {
	case $DL in
	podman) pm --runtime "$RT" "$@" ;;
	podman-rl) pmu --runtime "$RT" "$@" ;;
	docker) dk "$@" ;;
	esac
}

# crun ARGS: `run` with the runtime under test.
crun() {
	case $DL in
	docker) x dk run --runtime "$RT" "$@" ;;
	*) x cli run "$@" ;;
	esac
}

name() { echo "mc-$RT-$1"; }
L() { name long; } # the long-running container most scenarios use

state() { cli inspect -f '{{.State.Status}}' "$1" 2>/dev/null; }
state_is() { [ "$(state "$1")" = "$2" ]; }
logs_have() { cli logs "$1" 2>&1 | grep -q "$2"; }

# mkvol: a host directory for a volume, owned by the client's user.
mkvol() {
	local d
	d=$(mktemp -d "$S/vols/$DL-$RT.XXXXXX")
	echo hostdata >"$d/in"
	[ "$DL" != podman-rl ] || chown -R "$RL_USER:" "$d"
	chmod 0755 "$d"
	echo "$d"
}

hostport() { # a loopback port per client and runtime
	local base
	case $DL in podman) base=18100 ;; podman-rl) base=18200 ;; docker) base=18300 ;; esac
	case $RT in runc) echo $((base + 1)) ;; moat) echo $((base + 2)) ;; *) echo $((base + 3)) ;; esac
}

httpget() { curl -sf --max-time 2 "$1"; }

sc_run_exit() {
	local out rc
	out=$(crun --rm "$IMG" sh -c 'echo hello; exit 3')
	rc=$?
	want_eq "exit code" "$rc" 3
	want_eq output "$out" hello
}

sc_env() {
	want_eq output "$(crun --rm -e FOO=bar "$IMG" sh -c 'echo $FOO')" bar
}

sc_user() {
	want_eq output "$(crun --rm -u 1234:5678 "$IMG" sh -c 'id -u; id -g' | tr '\n' ' ')" "1234 5678 "
}

sc_cwd() {
	want_eq output "$(crun --rm -w /var/www "$IMG" pwd)" /var/www
}

sc_stdin() {
	want_eq output "$(echo piped-in | crun --rm -i "$IMG" cat)" piped-in
}

sc_tty() {
	local out
	out=$(crun --rm -t "$IMG" sh -c 'tty; echo tty-done' | tr -d '\r')
	want_has output "$out" /dev/pts/
	want_has output "$out" tty-done
}

sc_detached() {
	x cli rm -f "$(L)" >/dev/null 2>&1
	crun -d --name "$(L)" "$IMG" sh -c 'echo started; exec sleep 1000' >/dev/null || fail "run -d"
	poll 20 state_is "$(L)" running || fail "state $(state "$(L)"), want running"
}

sc_logs() {
	poll 10 logs_have "$(L)" started ||
		fail "logs: '$(x cli logs "$(L)" 2>&1)'"
}

sc_exec() {
	local out rc
	out=$(x cli exec "$(L)" sh -c 'echo $((6*7)); exit 5')
	rc=$?
	want_eq output "$out" 42
	want_eq "exit code" "$rc" 5
}

sc_exec_tty() {
	want_has output "$(x cli exec -t "$(L)" tty | tr -d '\r')" /dev/pts/
}

sc_exec_opts() {
	want_eq output "$(x cli exec -u 1000 -w /tmp -e X=y "$(L)" sh -c 'id -u; pwd; echo $X' | tr '\n' ' ')" "1000 /tmp y "
}

sc_top() {
	local out
	case $DL in
	docker) out=$(x cli top "$(L)") ;;
	*) out=$(x cli top "$(L)" pid args) ;;
	esac
	echo "$out" >&2
	want_eq "processes (lines after the header)" "$(echo "$out" | tail -n +2 | grep -c .)" 1
	want_has "process" "$out" "sleep 1000"
}

sc_pid() {
	local pid
	pid=$(x cli inspect -f '{{.State.Pid}}' "$(L)")
	want_container_pid "inspect .State.Pid" "$pid" "sleep 1000"
}

sc_pause() {
	x cli pause "$(L)" || fail pause
	want_eq state "$(state "$(L)")" paused
	want_eq "freezer state of the container's process" "$(freezer_state "$(cli inspect -f '{{.State.Pid}}' "$(L)")")" FROZEN
	x cli unpause "$(L)" || fail unpause
	want_eq state "$(state "$(L)")" running
	want_eq "exec after unpause" "$(x cli exec "$(L)" echo alive)" alive
}

sc_restart() {
	x cli restart -t 1 "$(L)" >/dev/null || fail restart
	poll 20 state_is "$(L)" running || fail "state $(state "$(L)"), want running"
	want_eq "'started' lines in logs" "$(x cli logs "$(L)" 2>&1 | grep -c started)" 2
}

sc_stop() {
	local t0=$SECONDS
	x cli stop -t 2 "$(L)" >/dev/null || fail stop
	local took=$((SECONDS - t0))
	echo "stop took ${took}s" >&2
	[ $took -ge 1 ] && [ $took -le 20 ] || fail "stop -t 2 took ${took}s (pid 1 ignores TERM: want about 2 s)"
	want_eq state "$(state "$(L)")" exited
	want_eq "exit code" "$(cli inspect -f '{{.State.ExitCode}}' "$(L)")" 137
}

sc_rm() {
	x cli rm "$(L)" >/dev/null || fail rm
	! cli inspect "$(L)" >/dev/null 2>&1 || fail "still inspectable after rm"
	want_lacks "ps -a" "$(x cli ps -a --format '{{.Names}}')" "$(L)"
}

# rm -f of a running container returns and leaves nothing (issue 12: Docker's
# hung for 25 minutes after a -t run).
sc_rm_force() {
	local n pid
	n=$(name rmf)
	x cli rm -f "$n" >/dev/null 2>&1
	crun -d -t --name "$n" "$IMG" sleep 1000 >/dev/null || fail "run -d -t"
	poll 20 state_is "$n" running || fail "state $(state "$n")"
	pid=$(cli inspect -f '{{.State.Pid}}' "$n")
	x cli rm -f "$n" >/dev/null || fail "rm -f"
	! cli inspect "$n" >/dev/null 2>&1 || fail "still inspectable after rm -f"
	poll 10 test ! -e "/proc/$pid" || fail "pid $pid ($(cmdof "$pid")) outlived rm -f"
}

sc_kill() {
	local n
	n=$(name kill)
	x cli rm -f "$n" >/dev/null 2>&1
	crun -d --name "$n" "$IMG" sleep 1000 >/dev/null || fail "run -d"
	poll 20 state_is "$n" running || fail "state $(state "$n")"
	x cli kill "$n" >/dev/null || fail kill
	want_eq "wait's exit code" "$(x cli wait "$n")" 137
	x cli rm -f "$n" >/dev/null
}

sc_wait() {
	local n
	n=$(name wait)
	x cli rm -f "$n" >/dev/null 2>&1
	crun -d --name "$n" "$IMG" sh -c 'sleep 1; exit 7' >/dev/null || fail "run -d"
	want_eq "wait's exit code" "$(x cli wait "$n")" 7
	x cli rm -f "$n" >/dev/null
}

sc_bind_rw() {
	local d
	d=$(mkvol)
	want_eq output "$(crun --rm -v "$d:/data" "$IMG" sh -c 'cat /data/in; echo written >/data/out')" hostdata
	want_eq "host file" "$(cat "$d/out" 2>&1)" written
}

sc_bind_ro() {
	local d out
	d=$(mkvol)
	out=$(crun --rm -v "$d:/data:ro" "$IMG" sh -c 'cat /data/in; echo x >/data/out && echo WROTE; echo done')
	want_eq output "$(echo "$out" | tr '\n' ' ')" "hostdata done "
	[ ! -e "$d/out" ] || fail "a read-only volume was written"
}

sc_read_only() {
	local out
	out=$(crun --rm --read-only "$IMG" sh -c 'echo x >/file && echo WROTE; echo done')
	want_eq output "$out" done
}

sc_port() {
	local n=$(name port) p=$(hostport)
	x cli rm -f "$n" >/dev/null 2>&1
	crun -d --stop-timeout 1 --name "$n" -p "127.0.0.1:$p:8080" "$IMG" \
		sh -c 'mkdir -p /tmp/w && echo port-ok >/tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w' >/dev/null || fail "run -d -p"
	poll 20 httpget "http://127.0.0.1:$p/" || { x cli rm -f "$n" >/dev/null; fail "nothing on 127.0.0.1:$p"; }
	want_eq "HTTP through the published port" "$(httpget "http://127.0.0.1:$p/")" port-ok
	x cli rm -f "$n" >/dev/null
}

sc_c2c() {
	local n=$(name srv) net=mc-net ip out
	cli network inspect "$net" >/dev/null 2>&1 || x cli network create --subnet "$(c2c_subnet)" "$net" >/dev/null || fail "network create"
	x cli rm -f "$n" >/dev/null 2>&1
	crun -d --stop-timeout 1 --name "$n" --network "$net" "$IMG" \
		sh -c 'mkdir -p /tmp/w && echo c2c-ok >/tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w' >/dev/null || fail "run -d"
	ip=$(cli inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$n")
	[ -n "$ip" ] || fail "server has no address on $net"
	out=$(crun --rm --network "$net" "$IMG" sh -c "$(nc_get "$ip" 8080)")
	x cli rm -f "$n" >/dev/null
	want_eq "HTTP from another container to $ip" "$out" c2c-ok
}

# nc_get IP PORT: a shell loop that prints the body of GET / (busybox's
# static wget crashes; its nc does not).
nc_get() {
	echo "for i in \$(seq 10); do r=\$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $1 $2 | tail -n 1) && [ -n \"\$r\" ] && echo \"\$r\" && exit 0; sleep 0.5; done; exit 1"
}

c2c_subnet() { case $DL in podman) echo 10.90.1.0/24 ;; podman-rl) echo 10.90.2.0/24 ;; docker) echo 10.90.3.0/24 ;; esac; }

# The memory limit is felt: tail holds a 100 MiB line in memory and is
# killed (wc then counts 0 bytes, or the OOM killer takes the shell too);
# without the limit wc counts 104857600.
sc_memory() {
	local out rc
	out=$(crun --rm --memory 32m "$IMG" sh -c 'head -c 100m /dev/zero | tail -n 1 | wc -c')
	rc=$?
	echo "output '$out', exit code $rc" >&2
	[ "$out" = 0 ] || [ $rc -eq 137 ] || fail "100 MiB held under --memory 32m: output '$out', exit code $rc"
}

# The pids limit is felt: of 20 background sleeps under --pids-limit 10,
# fewer than 10 start (the shell counts as one; a failed fork may end it).
sc_pids() {
	local out n
	out=$(crun --rm --pids-limit 10 "$IMG" sh -c 'for i in $(seq 20); do sleep 3 & echo "pid $!"; done')
	n=$(echo "$out" | grep '^pid [0-9]' | sort -u | grep -c .)
	echo "background processes started: $n" >&2
	[ "$n" -ge 1 ] && [ "$n" -lt 10 ] || fail "started $n background processes under --pids-limit 10"
}

run_dockerlike() { # CLIENT RUNTIMES...
	export DL=$1
	shift
	mkdir -p "$S/vols"
	local s
	for s in run_exit env user cwd stdin tty detached logs exec exec_tty exec_opts top pid pause \
		restart stop rm rm_force kill wait bind_rw bind_ro read_only port c2c memory pids; do
		if [ -n "${ONLY:-}" ] && ! echo ",$ONLY," | grep -q ",$s,"; then continue; fi
		scenario "$DL" "$s" "sc_$s" "$@"
	done
	RT=runc cli network rm -f mc-net >/dev/null 2>&1 || true
}
