# setup.sh: packages, the local image, private daemons and their cleanup for
# scripts/clients.sh and scripts/bench-clients.sh. Sourced; needs S, HERE,
# LOGS and MOAT.

CRICTL_VERSION=v1.37.0
DOCS=$HERE/docs/clients
RL_USER=${RL_USER:-moatci}
IMG=localhost/moat-busybox:latest
PAUSE_IMG=localhost/moat-pause:latest

# install_packages: Debian's clients, runtimes and helpers, if missing;
# crictl from the Go module proxy (bookworm has no cri-tools).
install_packages() {
	local need=() p
	for p in podman conmon containerd docker.io runc uidmap slirp4netns \
		containernetworking-plugins busybox-static jq util-linux iproute2 iptables curl catatonit ${EXTRA_PKGS:-}; do
		dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
	done
	if [ ${#need[@]} -gt 0 ]; then
		echo "== installing ${need[*]}"
		DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -qq
		DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	if ! command -v crictl >/dev/null; then
		echo "== go install sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
		GOBIN=/usr/local/bin timeout 900 go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	fi
}

# snippet FILE: a registration snippet of docs/clients (the text README.md
# shows), with moat's path replaced by the binary under test. The harness
# checks first that README.md holds each snippet verbatim.
snippet() { sed "s|/usr/local/bin/moat|$MOAT|g" "$DOCS/$1"; }

check_readme_snippets() {
	local f
	for f in containers.conf daemon.json containerd.toml runtimeclass.yaml; do
		# README indents code blocks by 4 spaces.
		awk 'NR == FNR {r = r $0 "\n"; next} {s = s ($0 == "" ? "" : "    " $0) "\n"}
			END {exit index(r, s) ? 0 : 1}' "$HERE/README.md" "$DOCS/$f" ||
			{ echo "README.md does not show docs/clients/$f verbatim" >&2; return 1; }
	done
}

# build_image: a busybox-static root filesystem as a tar, imported into
# every client: no registry is contacted.
build_image() {
	local r=$S/image/rootfs a
	mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,root,home,var/www}
	chmod 1777 "$r/tmp"
	cp /bin/busybox "$r/bin/busybox"
	for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	tar -C "$r" -cf "$S/image/rootfs.tar" .
}

# import_images: podman (rootful) makes the images; its docker archives feed
# docker, ctr and the CRI. Precondition: podman's private config is written.
import_images() {
	T=300 x pm import --change 'CMD ["sh"]' "$S/image/rootfs.tar" "$IMG" >/dev/null &&
		T=300 x pm import --change 'ENTRYPOINT ["/bin/sh", "-c", "trap \"exit 0\" TERM INT; sleep 2147483647 & wait"]' \
			"$S/image/rootfs.tar" "$PAUSE_IMG" >/dev/null &&
		T=300 x pm save --format docker-archive -o "$S/image/busybox.docker.tar" "$IMG" >/dev/null &&
		T=300 x pm save --format docker-archive -o "$S/image/pause.docker.tar" "$PAUSE_IMG" >/dev/null
}

write_podman_conf() { # DIR
	local d=$1
	mkdir -p "$d"/{root,run,tmp,net}
	cat >"$d/storage.conf" <<-EOF
		[storage]
		driver = "$2"
		graphroot = "$d/root"
		runroot = "$d/run"
	EOF
	# The registration text of README.md, plus this instance's private paths.
	snippet containers.conf | awk -v d="$d" '{print} /^\[engine\]$/ {
		print "tmp_dir = \"" d "/tmp\""
		print "cgroup_manager = \"cgroupfs\""
		print "events_logger = \"file\""
		print "events_logfile_path = \"" d "/events.log\""
		print "network_cmd_path = \"/usr/bin/slirp4netns\""
	}' >"$d/containers.conf"
	# Podman's default RLIMIT_NOFILE and RLIMIT_NPROC (1048576, 4194304)
	# exceed the hard limits where root lacks CAP_SYS_RESOURCE, and Podman
	# caps its own (so conmon's and the runtime's) RLIMIT_NPROC at 32768.
	local nofile nproc
	nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
	[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
	[ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
	cat >>"$d/containers.conf" <<-EOF

		[containers]
		default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

		[network]
		network_backend = "cni"
		network_config_dir = "$d/net"
		default_subnet = "10.88.0.0/16"
	EOF
}

# pm ARGS: rootful Podman on its private storage and config.
pm() {
	CONTAINERS_CONF=$S/podman/containers.conf CONTAINERS_STORAGE_CONF=$S/podman/storage.conf \
		podman "$@"
}

# pmu ARGS: rootless Podman as $RL_USER on its private storage and config.
pmu() {
	runuser -u "$RL_USER" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$S/rl/home" \
		XDG_RUNTIME_DIR="$S/rl/xdg" XDG_CONFIG_HOME="$S/rl/home/.config" \
		CONTAINERS_CONF="$S/rl/containers.conf" CONTAINERS_STORAGE_CONF="$S/rl/storage.conf" \
		podman "$@"
}

setup_podman() {
	write_podman_conf "$S/podman" overlay
	import_images
}

setup_podman_rootless() {
	id "$RL_USER" >/dev/null 2>&1 || { echo "no user $RL_USER (.ci/run creates it)" >&2; return 1; }
	grep -q "^$RL_USER:" /etc/subuid || { echo "$RL_USER has no /etc/subuid range" >&2; return 1; }
	mkdir -p "$S/rl/home" "$S/rl/xdg"
	write_podman_conf "$S/rl" vfs
	chown -R "$RL_USER:" "$S/rl"
	chmod 0700 "$S/rl/xdg"
	chmod a+r "$S/image/busybox.docker.tar"
	T=300 x pmu load -i "$S/image/busybox.docker.tar" >/dev/null
}

# containerd: its own config, root, state and sockets; the CRI plugin with
# README's moat runtime handler, a local pause image and a CNI bridge.
start_containerd() {
	local d=$S/containerd
	mkdir -p "$d"/{root,state,opt,cni/net.d,cni/ipam}
	cat >"$d/cni/net.d/10-moatcri.conflist" <<-EOF
		{"cniVersion": "0.4.0", "name": "moatcri", "plugins": [
		 {"type": "bridge", "bridge": "moatcri0", "isGateway": true, "ipMasq": false,
		  "ipam": {"type": "host-local", "dataDir": "$d/cni/ipam",
		           "ranges": [[{"subnet": "10.89.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
	EOF
	{
		cat <<-EOF
			version = 2
			root = "$d/root"
			state = "$d/state"
			[grpc]
			  address = "$S/containerd.sock"
			[ttrpc]
			  address = "$S/containerd.sock.ttrpc"
			[plugins."io.containerd.internal.v1.opt"]
			  path = "$d/opt"
			[plugins."io.containerd.grpc.v1.cri"]
			  # Not below containerd's own: lowering it needs CAP_SYS_RESOURCE.
			  restrict_oom_score_adj = true
			  sandbox_image = "$PAUSE_IMG"
			  stream_server_address = "127.0.0.1"
			  stream_server_port = "0"
			[plugins."io.containerd.grpc.v1.cri".cni]
			  bin_dir = "/usr/lib/cni"
			  conf_dir = "$d/cni/net.d"
			[plugins."io.containerd.grpc.v1.cri".containerd]
			  default_runtime_name = "runc"
			[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
			  runtime_type = "io.containerd.runc.v2"
		EOF
		snippet containerd.toml
	} >"$d/config.toml"
	printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$S/containerd.sock" "$S/containerd.sock" >"$S/crictl.yaml"
	containerd --config "$d/config.toml" >"$LOGS/containerd.log" 2>&1 &
	echo $! >"$d/pid"
	poll 30 ctr -a "$S/containerd.sock" version || { tail "$LOGS/containerd.log"; return 1; }
	T=300 x ctrc -n mc images import "$S/image/busybox.docker.tar" >/dev/null &&
		T=300 x ctrc -n k8s.io images import "$S/image/busybox.docker.tar" >/dev/null &&
		T=300 x ctrc -n k8s.io images import "$S/image/pause.docker.tar" >/dev/null
}

ctrc() { ctr -a "$S/containerd.sock" "$@"; }
cric() { crictl -c "$S/crictl.yaml" "$@"; }

# dockerd on the private containerd, with README's daemon.json; no
# iptables (ports go through docker-proxy), its own bridge address.
start_dockerd() {
	local d=$S/docker
	mkdir -p "$d"/{root,exec}
	if [ -x /usr/bin/runsc ]; then # for make bench-clients
		snippet daemon.json | jq '.runtimes.runsc = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}'
	else
		snippet daemon.json
	fi >"$d/daemon.json"
	dockerd --config-file "$d/daemon.json" --data-root "$d/root" --exec-root "$d/exec" \
		-H "unix://$S/docker.sock" --pidfile "$d/pid" --containerd "$S/containerd.sock" \
		--iptables=false --ip-masq=false --bip 10.87.0.1/24 >"$LOGS/dockerd.log" 2>&1 &
	poll 60 dk version || { tail "$LOGS/dockerd.log"; return 1; }
	T=300 x dk load -i "$S/image/busybox.docker.tar" >/dev/null
}

dk() { docker -H "unix://$S/docker.sock" "$@"; }

# owned_pids: processes this run started and that may outlive their
# daemon: those whose command line or executable names the state dir
# (shims, conmon, moat from $S/bin, slirp4netns, container processes of
# images stored under $S), and rootless Podman's pause process (catatonit:
# found by its environment).
owned_pids() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" != $$ ] && [ "$p" != "$BASHPID" ] || continue
		if tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "$S/" ||
			readlink "/proc/$p/exe" 2>/dev/null | grep -qF "$S/" ||
			tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qxF "XDG_RUNTIME_DIR=$S/rl/xdg"; then
			echo "$p"
		fi
	done
}

# stop_pidfile FILE: TERM the pid the file names, then KILL after 15 s.
stop_pidfile() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 0
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
	kill -9 "$pid" 2>/dev/null || true
}

cleanup() {
	local status=$?
	set +e
	echo "== cleanup (exit status $status)"
	if [ -S "$S/docker.sock" ]; then
		dk ps -aq | xargs -r timeout 60 docker -H "unix://$S/docker.sock" rm -f >/dev/null 2>&1
	fi
	[ -d "$S/podman" ] && T=60 x pm rm -af -t 0 >/dev/null 2>&1
	[ -d "$S/rl/xdg" ] && T=60 x pmu rm -af -t 0 >/dev/null 2>&1
	if [ -S "$S/containerd.sock" ]; then
		# ctr's containers: their processes outlive a killed shim.
		for p in $(timeout 30 ctr -a "$S/containerd.sock" -n mc containers ls -q 2>/dev/null); do
			timeout 30 ctr -a "$S/containerd.sock" -n mc task kill -a -s SIGKILL "$p" >/dev/null 2>&1
			timeout 30 ctr -a "$S/containerd.sock" -n mc task rm -f "$p" >/dev/null 2>&1
			timeout 30 ctr -a "$S/containerd.sock" -n mc containers rm "$p" >/dev/null 2>&1
		done
		for p in $(timeout 30 crictl -c "$S/crictl.yaml" pods -q 2>/dev/null); do timeout 30 crictl -c "$S/crictl.yaml" rmp -f "$p" >/dev/null 2>&1; done
	fi
	stop_pidfile "$S/docker/pid"
	stop_pidfile "$S/containerd/pid"
	stop_pidfile "$S/rl/tmp/pause.pid" # Podman's tmp_dir
	local left
	for _ in 1 2 3; do
		left=$(owned_pids)
		[ -z "$left" ] && break
		echo "killing leftover processes: $(for p in $left; do echo "$p:$(cmdof "$p" | cut -c1-60)"; done | tr '\n' ' ')"
		kill -9 $left 2>/dev/null
		sleep 1
	done
	# Mounts under the state dir (overlay snapshots, shm, netns), deepest first.
	awk -v s="$S/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
	for n in $(ip netns list 2>/dev/null | awk '$1 ~ /^(cni|netns)-/ {print $1}'); do
		grep -qx "$n" "$S/netns.before" 2>/dev/null || ip netns delete "$n" 2>/dev/null
	done
	for l in docker0 moatcri0 cni-podman0 cni-podman1; do
		grep -qx "$l" "$S/links.before" 2>/dev/null || ip link delete "$l" 2>/dev/null
	done
	ip link show 2>/dev/null | awk -F': ' '/^[0-9]+: br-/ {sub(/@.*/, "", $2); print $2}' | while read -r l; do
		grep -qx "$l" "$S/links.before" 2>/dev/null || ip link delete "$l" 2>/dev/null
	done
	# The runc shim keeps runc's (and moat's) state in /run/containerd/runc/NS
	# whatever containerd's state dir: what a failed run left there goes.
	for r in /run/containerd/runc/{mc,k8s.io,moby}/*; do
		[ -e "$r" ] || continue
		grep -qxF "$r" "$S/runc-state.before" 2>/dev/null || rm -rf "$r"
	done
	drop_cni_chains
	for r in /var/lib/cni/networks/podman /var/lib/cni/networks/mc-net; do # host-local leases
		grep -qxF "$r" "$S/cni-leases.before" 2>/dev/null || rm -rf "$r"
	done
	[ -n "${KEEP:-}" ] || rm -rf "$S"
}

# drop_cni_chains: the iptables chains Podman's CNI firewall, portmap and
# bridge plugins add (the last two per container, until the container's
# network is torn down) and never remove, unless CNI chains were there
# before the run.
drop_cni_chains() {
	command -v iptables >/dev/null || return 0
	grep -q CNI- "$S/iptables.before" 2>/dev/null && return 0
	local t c r
	for t in filter nat; do
		iptables -t $t -S | grep -E '^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) .*-j CNI-' |
			while read -r r; do eval "iptables -t $t -D ${r#-A }"; done
	done
	for t in filter nat; do
		for c in $(iptables -t $t -S | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do iptables -t $t -F "$c"; done
		for c in $(iptables -t $t -S | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do iptables -t $t -X "$c" 2>/dev/null; done
	done
}

record_before() {
	ls -d /var/lib/cni/networks/* 2>/dev/null >"$S/cni-leases.before"
	{ iptables -S; iptables -t nat -S; } >"$S/iptables.before" 2>/dev/null
	ls -d /run/containerd/runc/{mc,k8s.io,moby}/* 2>/dev/null >"$S/runc-state.before"
	ip netns list 2>/dev/null | awk '{print $1}' >"$S/netns.before"
	ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' >"$S/links.before"
}
