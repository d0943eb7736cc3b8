#!/bin/bash
# Warm read of a cached file through a memory-cache mount (prismfs mount
# --mirror) against the same read on a tmpfs: dd bs=1M of one file, RUNS
# times each, alternating; prints each run and the medians' ratio.
# Usage: bench/cache-warm-read.sh [SIZE_MIB] [RUNS]   (root; PRISMFS=path)
set -euo pipefail
SIZE=${1:-256}
RUNS=${2:-7}
PRISMFS=${PRISMFS:-$(dirname "$0")/../build/prismfs}
[[ $EUID -eq 0 ]] || { echo "cache-warm-read: must run as root (mounting)" >&2; exit 1; }
W=$(mktemp -d /tmp/prismfs-cache-bench.XXXXXX)
cleanup() {
	"$PRISMFS" unmount "$W/mnt" >/dev/null 2>&1 || fusermount3 -uz "$W/mnt" 2>/dev/null || true
	umount "$W/tmpfs" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/mirror" "$W/mnt" "$W/tmpfs"
mount -t tmpfs -o size=$((SIZE + 16))M tmpfs "$W/tmpfs"
head -c $((SIZE << 20)) /dev/urandom >"$W/mirror/big"
cp "$W/mirror/big" "$W/tmpfs/big"
"$PRISMFS" mount --mirror "$W/mirror" --cache-size $((SIZE * 2))M "$W/mnt"
"$PRISMFS" status "$W/mnt" | grep '^data_path ' || true
cat "$W/mnt/big" >/dev/null # loaded into the cache: the runs are warm
rate() { # bytes per second of one dd
	dd if="$1" of=/dev/null bs=1M 2>&1 | awk '/copied/ {print $(NF-1) " " $NF}'
}
declare -a M T
for ((i = 0; i < RUNS; i++)); do
	M+=("$(rate "$W/mnt/big")")
	T+=("$(rate "$W/tmpfs/big")")
	echo "run $((i + 1)): mount ${M[-1]}  tmpfs ${T[-1]}"
done
median() { printf '%s\n' "$@" | awk '{v = $1; if ($2 ~ /^M/) v /= 1000; print v}' | sort -g |
	awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
m=$(median "${M[@]}")
t=$(median "${T[@]}")
echo "median GB/s: mount $m  tmpfs $t  ratio $(awk -v m="$m" -v t="$t" 'BEGIN {printf "%.2f", m / t}')"
