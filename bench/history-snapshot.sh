#!/bin/bash
# prismfs snapshot's time against the size of the tree (issue 17: "flat
# from 1,000 to 1,000,000 files"): for each N, a SOURCE of N empty files
# (made natively, in directories of 1,000), a mount with --history, RUNS
# snapshots each followed by one change (so that each is a new position),
# the median wall time of `prismfs snapshot`. A snapshot is one row in the
# journal's database, whatever the tree holds; this shows it.
# Usage: bench/history-snapshot.sh [RUNS] [N...]   (root; PRISMFS=path)
set -euo pipefail
RUNS=${1:-9}
shift || true
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(1000 1000000)
PRISMFS=${PRISMFS:-$(dirname "$0")/../build/prismfs}
[[ $EUID -eq 0 ]] || { echo "history-snapshot: must run as root (mounting)" >&2; exit 1; }
W=$(mktemp -d /tmp/prismfs-hist-bench.XXXXXX)
cleanup() {
	"$PRISMFS" unmount "$W/mnt" >/dev/null 2>&1 || fusermount3 -uz "$W/mnt" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
for n in "${SIZES[@]}"; do
	rm -rf "$W/src" "$W/hist"
	mkdir -p "$W/src" "$W/hist" "$W/mnt"
	for ((d = 0; d * 1000 < n; d++)); do
		mkdir "$W/src/d$d"
		left=$((n - d * 1000))
		(cd "$W/src/d$d" && seq 1 $((left < 1000 ? left : 1000)) | xargs touch)
	done
	"$PRISMFS" mount --history "$W/hist" "$W/src" "$W/mnt"
	declare -a T=()
	for ((i = 0; i < RUNS; i++)); do
		s=$(date +%s%N)
		"$PRISMFS" snapshot "$W/mnt" --name "s$i" >/dev/null
		e=$(date +%s%N)
		T+=($(((e - s) / 1000)))
		echo "change $i" >"$W/mnt/d0/1"
	done
	"$PRISMFS" unmount "$W/mnt" >/dev/null
	med=$(printf '%s\n' "${T[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
	echo "files $n: snapshot median ${med} us (runs: ${T[*]})"
done
