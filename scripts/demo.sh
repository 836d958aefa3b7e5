#!/usr/bin/env bash
# demo.sh: run a sandboxed container with moat, from a root filesystem built
# here out of the static probe binary. Needs root (rootless: see README).
# Usage: scripts/demo.sh   (after `make build probe`)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
moat="$here/bin/moat"
bundle=$(mktemp -d /tmp/moat-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin"
cp "$here/bin/probe" "$bundle/rootfs/bin/probe"
for c in true echo id hostname sleep cat ls env; do ln -s probe "$bundle/rootfs/bin/$c"; done
"$moat" spec --bundle "$bundle"
# A non-interactive process that shows where it runs.
python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/probe", "id"]
json.dump(c, open(p, "w"), indent=1)
PY
id="demo-$$"
echo "+ moat run $id   (process: probe id, hostname moat, read-only root)"
"$moat" run --bundle "$bundle" "$id"
sed -i 's|"/bin/probe",\s*"id"|"/bin/probe", "hostname"|' "$bundle/config.json" 2>/dev/null || true
python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/probe", "caps"]
json.dump(c, open(p, "w"), indent=1)
PY
echo "+ moat run $id   (process: probe caps)"
"$moat" run --bundle "$bundle" "$id"
if [ -w /dev/net/tun ]; then
	python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/probe", "cat", "/etc/resolv.conf", "/sys/class/net/tap0/address"]
json.dump(c, open(p, "w"), indent=1)
PY
	echo "+ moat --network=sandbox run $id   (user-mode network in moat boot: tap0 and the gateway's DNS)"
	"$moat" --network=sandbox run --bundle "$bundle" "$id"
fi
echo "demo done: containers ran and were deleted; nothing is left in $("$moat" list -q | wc -l) containers listed"
