#!/usr/bin/env bash
# readme-walkthrough.sh: README.md's commands, as a newcomer runs them, on a
# clean clone in a scratch directory, their output checked against README.
#
# README marks each block of commands with `<!-- walkthrough: NAME -->` and
# what they print with `<!-- output: NAME -->` (the indented block after the
# marker). The blocks run in order, each in a fresh bash (-euo pipefail)
# started in the clone, with PREFIX (make install's) in the scratch
# directory and PREFIX/bin first in PATH; every line of an output block must
# appear in that order in what the commands printed ("..." matches
# anything). Also checked: README names go.mod's Go version, and links no
# file outside the repository. Needs root (as README's commands do), git,
# Go and busybox (.ci/run installs them). Containers it made are deleted.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d /tmp/moat-walkthrough.XXXXXX)
clone=$scratch/moat
export PREFIX=$scratch/prefix
export PATH=$PREFIX/bin:$PATH
fail() { echo "readme-walkthrough: $*" >&2; exit 1; }

# Containers that exist before (default state root), kept at cleanup.
before=$("$here/bin/moat" list -q 2>/dev/null || moat list -q 2>/dev/null || true)
cleanup() {
	if [ -x "$PREFIX/bin/moat" ]; then
		for id in $("$PREFIX/bin/moat" list -q 2>/dev/null); do
			grep -qx -- "$id" <<<"$before" || "$PREFIX/bin/moat" delete --force "$id" || true
		done
	fi
	rm -rf "$scratch"
}
trap cleanup EXIT

git clone -q "$here" "$clone"
readme=$clone/README.md

# block KIND NAME: the indented lines after `<!-- KIND: NAME -->`, unindented.
block() {
	awk -v m="<!-- $1: $2 -->" '
		$0 == m { on = 1; next }
		on && /^    / { sub(/^    /, ""); print; seen = 1; next }
		on && /^$/ && !seen { next }
		on { exit }' "$readme"
}

# expect NAME OUT: each line of NAME's output block, in order, in OUT.
expect() {
	local name=$1 out=$2 line pat n=0
	local -a got
	mapfile -t got <"$out"
	while IFS= read -r line; do
		pat=$(printf '%s' "$line" | sed 's/[][\\*?]/\\&/g; s/\.\.\./*/g')
		until [ "$n" -ge "${#got[@]}" ]; do
			# shellcheck disable=SC2053
			[[ ${got[n]} == $pat ]] && break
			n=$((n + 1))
		done
		[ "$n" -lt "${#got[@]}" ] || fail "$name: README shows \"$line\", not printed (in order):
$(cat "$out")"
		n=$((n + 1))
	done < <(block output "$name")
}

need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$clone/go.mod")
grep -q "Go $need or later" "$readme" || fail "README does not say go.mod's Go version ($need)"
grep -q "go$need.linux" "$readme" || fail "README's Go download is not go$need"
if grep -nE '\]\((\.\./|/)|`\.\./' "$readme"; then
	fail "README links outside the repository (a clone has only the repository)"
fi

names=$(sed -n 's/^<!-- walkthrough: \(.*\) -->$/\1/p' "$readme")
[ -n "$names" ] || fail "README marks no walkthrough blocks"
for name in $names; do
	cmds=$(block walkthrough "$name")
	[ -n "$cmds" ] || fail "$name: empty walkthrough block"
	echo "== README walkthrough: $name"
	sed 's/^/    $ /' <<<"$cmds"
	out=$scratch/$name.out
	(cd "$clone" && bash -euo pipefail -c "$cmds") >"$out" 2>&1 || fail "$name failed:
$(cat "$out")"
	if grep -qx "<!-- output: $name -->" "$readme"; then
		expect "$name" "$out"
	fi
done
[ -x "$PREFIX/bin/moat" ] || fail "make install did not install \$PREFIX/bin/moat"
echo "readme-walkthrough: ok ($(wc -w <<<"$names") blocks)"
