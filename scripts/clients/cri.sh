# cri.sh: Kubernetes' view — crictl on containerd's CRI plugin, the runtime
# chosen by the RuntimeClass handler of docs/clients/runtimeclass.yaml
# (runc: containerd's default handler). A pod (pause container from the
# local pause image, CNI bridge address) with two app containers sharing its
# network and IPC namespaces. Sourced by scripts/clients.sh.

handler() {
	case $RT in
	runc) echo runc ;;
	moat) awk '$1 == "handler:" {print $2}' "$DOCS/runtimeclass.yaml" ;;
	esac
}

cdir() { echo "$S/cri/$RT"; }
podid() { cat "$(cdir)/pod.id" 2>/dev/null; }
ctrid() { cat "$(cdir)/$1.id" 2>/dev/null; }
cstate() { cric inspect -o go-template --template '{{.status.state}}' "$1" 2>/dev/null; }
cstate_is() { [ "$(cstate "$1")" = "$2" ]; }
clogs_have() { cric logs "$1" 2>/dev/null | grep -q "$2"; }
cpid() { cric inspect -o go-template --template '{{.info.pid}}' "$1" 2>/dev/null; }

# container_json NAME COMMAND [EXTRA-JQ]: a CRI container config.
container_json() {
	jq -n --arg name "$1" --arg img "$IMG" --arg cmd "$2" '{
		metadata: {name: $name}, image: {image: $img},
		command: ["sh", "-c", $cmd], log_path: ($name + ".log"), linux: {}
	} '"${3:-}"
}

cri_create() { # NAME COMMAND [EXTRA-JQ]: create and start; the id in NAME.id
	local d id
	d=$(cdir)
	container_json "$@" >"$d/$1.json"
	id=$(x cric create "$(podid)" "$d/$1.json" "$d/pod.json") || fail "create $1"
	echo "$id" >"$d/$1.id"
	x cric start "$id" >/dev/null || fail "start $1"
}

cr_runp() {
	local d id
	d=$(cdir)
	mkdir -p "$d/logs"
	jq -n --arg rt "$RT" --arg logs "$d/logs" '{
		metadata: {name: ("mcpod-" + $rt), namespace: "default", uid: ("uid-" + $rt), attempt: 0},
		hostname: ("pod-" + $rt), log_directory: $logs, linux: {}
	}' >"$d/pod.json"
	id=$(x cric runp --runtime "$(handler)" "$d/pod.json") || fail runp
	echo "$id" >"$d/pod.id"
	want_eq "pod state" "$(cric inspectp -o go-template --template '{{.status.state}}' "$id")" SANDBOX_READY
}

cr_start() {
	cri_create web 'echo started; mkdir -p /tmp/w && echo pod-ok >/tmp/w/index.html; exec httpd -f -p 8080 -h /tmp/w' \
		'| .envs = [{key: "FOO", value: "bar"}] | .working_dir = "/var/www"'
	cri_create client 'exec sleep 1000' '| .linux.security_context.run_as_user.value = 1000'
	poll 20 cstate_is "$(ctrid web)" CONTAINER_RUNNING || fail "web: $(cstate "$(ctrid web)")"
	poll 20 cstate_is "$(ctrid client)" CONTAINER_RUNNING || fail "client: $(cstate "$(ctrid client)")"
}

cr_logs() {
	poll 10 clogs_have "$(ctrid web)" started ||
		fail "logs: '$(x cric logs "$(ctrid web)" 2>&1)'"
}

# crictl exits 1 when the command fails, and names its exit code.
cr_exec() {
	local out rc err=$S/cri/$RT/exec.err
	out=$(x cric exec "$(ctrid client)" sh -c 'echo $((6*7)); exit 5' 2>"$err")
	rc=$?
	cat "$err" >&2
	want_eq output "$out" 42
	[ $rc -ne 0 ] || fail "exit code 0, want non-zero"
	want_has "crictl's error" "$(cat "$err")" "exit code 5"
}

cr_exec_tty() {
	want_has output "$(in_pty "crictl -c $S/crictl.yaml exec -it $(ctrid client) tty" | tr -d '\r')" /dev/pts/
}

# The container's env, working directory and user reach exec too.
cr_env_user_cwd() {
	want_eq "web: \$FOO, pwd" "$(x cric exec "$(ctrid web)" sh -c 'echo $FOO; pwd' | tr '\n' ' ')" "bar /var/www "
	want_eq "client: id -u" "$(x cric exec "$(ctrid client)" id -u)" 1000
}

# Issue 12: every container of the pod is in the pause container's network,
# IPC, UTS and (the CRI's default) pid namespaces, not the host's;
# inspect's pids are the containers' own processes.
cr_pod_ns() {
	local pause web client k
	pause=$(cric inspectp -o go-template --template '{{.info.pid}}' "$(podid)")
	web=$(cpid "$(ctrid web)")
	client=$(cpid "$(ctrid client)")
	echo "pids: pause $pause, web $web, client $client" >&2
	want_container_pid "client's pid" "$client" "sleep 1000"
	for k in net ipc uts pid; do
		[ "$(nsof "$pause" $k)" != "$(nsof 1 $k)" ] || fail "the pause container ($pause) is in the host's $k namespace"
		want_eq "web's $k namespace" "$(nsof "$web" $k)" "$(nsof "$pause" $k)"
		want_eq "client's $k namespace" "$(nsof "$client" $k)" "$(nsof "$pause" $k)"
	done
	want_eq "hostname in the pod" "$(x cric exec "$(ctrid client)" hostname)" "pod-$RT"
}

# eth0 inside has the pod's CNI address.
cr_pod_ip() {
	local ip
	ip=$(cric inspectp -o go-template --template '{{.status.network.ip}}' "$(podid)")
	case $ip in 10.89.0.*) ;; *) fail "pod ip '$ip', want one of 10.89.0.0/24" ;; esac
	want_has "eth0 in the client container" "$(x cric exec "$(ctrid client)" ip -4 addr show eth0)" "inet $ip/"
}

# The containers of a pod reach each other on localhost.
cr_pod_localhost() {
	want_eq "HTTP from client to web over 127.0.0.1" "$(x cric exec "$(ctrid client)" sh -c "$(nc_get 127.0.0.1 8080)")" pod-ok
}

cr_exit_code() {
	cri_create bye 'echo bye; exit 3'
	poll 20 cstate_is "$(ctrid bye)" CONTAINER_EXITED || fail "state $(cstate "$(ctrid bye)"), want CONTAINER_EXITED"
	want_eq "exit code" "$(cric inspect -o go-template --template '{{.status.exitCode}}' "$(ctrid bye)")" 3
	want_eq logs "$(x cric logs "$(ctrid bye)" 2>/dev/null)" bye
}

cr_mounts() {
	local d out
	d=$(DL=cri mkvol)
	cri_create vol 'cat /ro/in; echo written >/rw/out; echo x >/ro/out2 && echo WROTE; echo x >/root-file && echo WROTE-ROOT; echo done' \
		"| .mounts = [{container_path: \"/ro\", host_path: \"$d\", readonly: true}, {container_path: \"/rw\", host_path: \"$d\"}]
		 | .linux.security_context.readonly_rootfs = true"
	poll 20 cstate_is "$(ctrid vol)" CONTAINER_EXITED || fail "state $(cstate "$(ctrid vol)")"
	out=$(x cric logs "$(ctrid vol)" 2>/dev/null)
	want_eq output "$(echo "$out" | tr '\n' ' ')" "hostdata done "
	want_eq "host file" "$(cat "$d/out" 2>&1)" written
	[ ! -e "$d/out2" ] || fail "a read-only mount was written"
}

cr_memory() {
	cri_create mem 'head -c 100m /dev/zero | tail -n 1 | wc -c' '| .linux.resources.memory_limit_in_bytes = 33554432'
	poll 30 cstate_is "$(ctrid mem)" CONTAINER_EXITED || fail "state $(cstate "$(ctrid mem)")"
	local out rc
	out=$(x cric logs "$(ctrid mem)" 2>/dev/null | tail -n 1)
	rc=$(cric inspect -o go-template --template '{{.status.exitCode}}' "$(ctrid mem)")
	echo "output '$out', exit code $rc" >&2
	[ "$out" = 0 ] || [ "$rc" = 137 ] || fail "100 MiB held under a 32 MiB limit: output '$out', exit code $rc"
}

cr_stop() {
	local t0=$SECONDS took
	x cric stop -t 2 "$(ctrid client)" >/dev/null || fail stop
	took=$((SECONDS - t0))
	echo "stop took ${took}s, exit code $(cric inspect -o go-template --template '{{.status.exitCode}} {{.status.reason}}' "$(ctrid client)")" >&2
	[ $took -le 20 ] || fail "stop -t 2 took ${took}s"
	want_eq state "$(cstate "$(ctrid client)")" CONTAINER_EXITED
	# In the pod's pid namespace sleep is not init: TERM ends it.
	want_eq "exit code" "$(cric inspect -o go-template --template '{{.status.exitCode}}' "$(ctrid client)")" 143
}

# stopp and rmp leave no process of the pod behind.
cr_rmp() {
	local pid pids=() id
	pids+=("$(cpid "$(ctrid web)")" "$(cric inspectp -o go-template --template '{{.info.pid}}' "$(podid)")")
	x cric stopp "$(podid)" >/dev/null || fail stopp
	x cric rmp "$(podid)" >/dev/null || fail rmp
	want_lacks "pods" "$(x cric pods -q)" "$(podid)"
	sleep 1
	for pid in "${pids[@]}"; do
		[ -n "$pid" ] && [ "$pid" -gt 0 ] || continue
		[ ! -e "/proc/$pid" ] || fail "pid $pid ($(cmdof "$pid")) outlived rmp"
	done
	local left n
	for n in pod web client bye vol mem; do
		id=$(if [ $n = pod ]; then podid; else ctrid $n; fi)
		[ -n "$id" ] || continue
		left=$(pgrep -a -f "$id" || true)
		[ -z "$left" ] || fail "processes naming the $n ($id) outlived rmp: $left"
	done
}

run_cri() { # RUNTIMES...
	export DL=cri
	mkdir -p "$S/vols"
	local rt s
	for rt in "$@"; do mkdir -p "$S/cri/$rt"; done
	for s in runp start logs exec exec_tty env_user_cwd pod_ns pod_ip pod_localhost exit_code mounts \
		memory stop rmp; do
		if [ -n "${ONLY:-}" ] && ! echo ",$ONLY," | grep -q ",$s,"; then continue; fi
		scenario cri "$s" "cr_$s" "$@"
	done
}
