#!/usr/bin/env bash
# demo.sh: run sandboxed containers with moat, from a root filesystem built
# here out of the static probe binary (no image download). Needs root.
# Usage: scripts/demo.sh   (after `make build probe`; `make demo` does both)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
moat="$here/bin/moat"
bundle=$(mktemp -d /tmp/moat-demo.XXXXXX)
id="demo-$$"
trap '"$moat" delete --force "$id" 2>/dev/null || true; rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin"
cp "$here/bin/probe" "$bundle/rootfs/bin/probe"

# run TEXT ARGS...: a fresh spec whose process is `probe ARGS...`, then run
# it in the foreground (created, started, waited for, deleted).
run() {
	local what=$1
	shift
	rm -f "$bundle/config.json"
	"$moat" spec --bundle "$bundle" -- /bin/probe "$@"
	echo "+ moat run $id   ($what)"
	"$moat" "${globals[@]}" run --bundle "$bundle" "$id"
}
globals=()
run "probe hostname: the spec's hostname" hostname
run "probe id: root in the container" id
run "probe caps: the spec's three capabilities" caps
run "probe open: the root is read-only" open /bin/probe wronly
if [ -w /dev/net/tun ]; then
	globals=(--network=sandbox)
	run "--network=sandbox: tap0 and the gateway's DNS, from moat boot" cat /etc/resolv.conf
fi
left=$("$moat" list -q | grep -c "^$id\$" || true)
[ "$left" = 0 ] || { echo "demo: container $id was left behind" >&2; exit 1; }
echo "demo done: each container was deleted when its process exited (moat list shows none)"
