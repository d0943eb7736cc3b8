#!/usr/bin/env bash
# Daemon memory per node: walk a tree of NODES entries through the mount,
# report the daemon's RSS per node the kernel holds, then make the kernel
# forget (drop_caches 2) and report RSS again. Run as root.
#   NODES=1000000 (default)  BENCH_DIR=/var/tmp/prismfs-mem  PRISMFS_OPTS=...
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
P=${PRISMFS_BIN:-$root/build/prismfs}
[ -x "$P" ] || { echo "bench: no prismfs binary at $P (build first)" >&2; exit 1; }
N=${NODES:-1000000}
D=${BENCH_DIR:-/var/tmp/prismfs-mem}
src=$D/src mnt=$D/mnt
per_dir=1000

cleanup() { grep -q " $mnt fuse.prismfs " /proc/mounts && "$P" unmount "$mnt" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM
cleanup
mkdir -p "$src" "$mnt"

have=$(cat "$D/.nodes" 2>/dev/null || echo 0)
if [ "$have" != "$N" ]; then
	echo "bench: creating a tree of $N entries in $src"
	rm -rf "$src" && mkdir -p "$src"
	ndirs=$(( (N + per_dir - 1) / per_dir ))
	/usr/bin/python3 - "$src" "$N" "$per_dir" <<'PY'
import os, sys
src, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
made = 0
d = 0
while made < n:
    dd = os.path.join(src, "d%05d" % d)
    os.mkdir(dd)
    made += 1
    for i in range(min(per - 1, n - made)):
        os.close(os.open(os.path.join(dd, "f%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
        made += 1
    d += 1
PY
	echo "$N" > "$D/.nodes"
fi

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
nodes() { "$P" status --json "$mnt" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"])'; }

# shellcheck disable=SC2086
"$P" mount ${PRISMFS_OPTS:-} "$src" "$mnt"
pid=$("$P" status --json "$mnt" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
sync; echo 2 > /proc/sys/vm/drop_caches
idle=$(rss_kb "$pid")
t0=$(date +%s.%N)
find "$mnt" -printf '%s\n' >/dev/null
t1=$(date +%s.%N)
held=$(nodes); full=$(rss_kb "$pid")
fds=$(ls "/proc/$pid/fd" | wc -l)
nfd=$("$P" status --json "$mnt" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin)["node_fds"]; print(d["budget"], d["open"], d["closed"])')
sync; echo 2 > /proc/sys/vm/drop_caches; sleep 2
after_nodes=$(nodes); after=$(rss_kb "$pid")
awk -v n="$N" -v idle="$idle" -v full="$full" -v held="$held" -v after="$after" \
    -v an="$after_nodes" -v t0="$t0" -v t1="$t1" -v fds="$fds" -v nfd="$nfd" 'BEGIN {
	split(nfd, b, " ")
	printf "entries in tree          %d\n", n
	printf "walk (find) seconds      %.1f\n", t1 - t0
	printf "daemon RSS idle          %.1f MiB\n", idle / 1024
	printf "nodes held by the kernel %d\n", held
	printf "daemon RSS walked        %.1f MiB\n", full / 1024
	printf "bytes per node held      %.0f   (target <= 300)\n", held ? (full - idle) * 1024 / held : 0
	printf "daemon fds walked        %d   (node fd budget %d: %d open, %d closed)\n", fds, b[1], b[2], b[3]
	printf "after drop_caches        %.1f MiB, %d nodes held\n", after / 1024, an
}'
