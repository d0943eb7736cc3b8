#!/bin/bash
# prismfs snapshot's time against the size of the tree (issue 17: "flat
# from 1,000 to 1,000,000 files"). For each N, a SOURCE of N empty files
# (made natively, in directories of 1,000) and a mount of it with
# --history; then RUNS rounds, each taking one snapshot on every mount in
# turn (so that load on a shared machine falls on all sizes alike), each
# snapshot followed by one change (so that each is a new position). Prints
# the median wall time of `prismfs snapshot` per N. A snapshot is one row
# in the journal's database, whatever the tree holds; this shows it.
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
	for n in "${SIZES[@]}"; do
		"$PRISMFS" unmount "$W/$n/mnt" >/dev/null 2>&1 || fusermount3 -uz "$W/$n/mnt" 2>/dev/null || true
	done
	rm -rf "$W"
}
trap cleanup EXIT
for n in "${SIZES[@]}"; do
	mkdir -p "$W/$n/src" "$W/$n/hist" "$W/$n/mnt"
	for ((d = 0; d * 1000 < n; d++)); do
		mkdir "$W/$n/src/d$d"
		left=$((n - d * 1000))
		(cd "$W/$n/src/d$d" && seq 1 $((left < 1000 ? left : 1000)) | xargs touch)
	done
	"$PRISMFS" mount --history "$W/$n/hist" "$W/$n/src" "$W/$n/mnt"
done
declare -A T
for ((i = 0; i < RUNS; i++)); do
	for n in "${SIZES[@]}"; do
		s=$(date +%s%N)
		"$PRISMFS" snapshot "$W/$n/mnt" --name "s$i" >/dev/null
		e=$(date +%s%N)
		T[$n]+="$(((e - s) / 1000)) "
		echo "change $i" >"$W/$n/mnt/d0/1"
	done
done
for n in "${SIZES[@]}"; do
	med=$(printf '%s\n' ${T[$n]} | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
	echo "files $n: snapshot median ${med} us (runs: ${T[$n]% })"
done
