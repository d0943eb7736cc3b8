#!/usr/bin/env bash
# Set up, build, install and run the prismfs demo: a small tree mirrored at a
# mount point, then the same tree mounted over itself, with the op log on.
# On the way: a live mapping table, a copy-on-write layer, a memory cache
# written back to a mirror directory and to a WebDAV server (Apache, started
# unprivileged on 127.0.0.1 for the demo), and a history of every change
# with snapshots, browsing and restore.
# On a terminal it waits for Ctrl-C and unmounts; otherwise it unmounts at
# the end. DEMO_KEEP=1 leaves the mount up (unmount with: prismfs unmount MNT).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
./scripts/install.sh
command -v prismfs >/dev/null || { echo "prismfs is not in PATH after install" >&2; exit 1; }

demo=${DEMO_DIR:-/tmp/prismfs-demo}
src=$demo/src mnt=$demo/mnt log=$demo/ops.log cached=$demo/cached dav=$demo/dav
for m in "$cached" "$mnt" "$src"; do
	grep -q " $m fuse.prismfs " /proc/mounts && prismfs unmount "$m" || true
done
if [ -s "$dav/apache.pid" ]; then kill "$(cat "$dav/apache.pid")" 2>/dev/null || true; fi
rm -rf "$demo"
mkdir -p "$src/docs" "$src/bin" "$mnt"
printf 'Hello from the real directory.\n' > "$src/docs/hello.txt"
printf '#!/bin/sh\necho "run through prismfs"\n' > "$src/bin/tool" && chmod +x "$src/bin/tool"
ln -s docs/hello.txt "$src/link"

cleanup() {
	for m in "$cached" "$mnt" "$src"; do
		if grep -q " $m fuse.prismfs " /proc/mounts; then prismfs unmount "$m" || true; fi
	done
	if [ -s "$dav/apache.pid" ]; then kill "$(cat "$dav/apache.pid")" 2>/dev/null || true; fi
}
[ "${DEMO_KEEP:-0}" = 1 ] || trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; eval "$@"; }

echo "== prismfs $(prismfs --version | cut -d' ' -f2): a passthrough view of $src at $mnt"
step prismfs mount --log "$log" "$src" "$mnt"
step ls -l "$mnt" "$mnt/docs"
step cat "$mnt/link"
step "$mnt/bin/tool"
step "echo 'written through the mount' > $mnt/docs/new.txt"
step cat "$src/docs/new.txt"
step "stat -c '%i %n' $src/docs/hello.txt $mnt/docs/hello.txt   # same inode numbers"
step prismfs status "$mnt"
step "tail -n 6 $log   # the operation log"
step prismfs unmount "$mnt"

echo
echo "== a live mapping table: remap, graft, hide and narrow paths while mounted"
mkdir -p "$demo/shared/assets"
printf 'logo\n' > "$demo/shared/assets/logo.svg"
printf 'secret\n' > "$src/docs/private.txt"
cat > "$demo/map.json" <<JSON
{
  "/README": {"target": "docs/hello.txt", "mode": "0444"},
  "/assets": {"target": "$demo/shared/assets", "readonly": true},
  "/docs/private.txt": {}
}
JSON
step cat "$demo/map.json"
step prismfs mount --map "$demo/map.json" "$src" "$mnt"
step ls -l "$mnt" "$mnt/docs" "$mnt/assets"
step "touch $mnt/assets/new 2>&1 || true   # readonly: EROFS"
step "cat $mnt/docs/private.txt 2>&1 || true   # hidden"
step "echo '{\"/notes/today.txt\": {\"target\": \"docs/hello.txt\"}}' > $demo/map.json.new && mv $demo/map.json.new $demo/map.json && sleep 0.3"
step ls -l "$mnt" "$mnt/notes"
step "prismfs status $mnt | grep mapping"
step prismfs unmount "$mnt"

echo
echo "== copy-on-write: an upper directory takes every change; the source stays as it was"
up="$demo/upper"
rm -rf "$up" "$demo/.upper.prismfs-work"
mkdir -p "$up"
step prismfs mount --upper "$up" "$src" "$mnt"
step "echo 'changed in the layer' >> $mnt/docs/hello.txt && rm $mnt/link && mkdir $mnt/scratch"
step ls -l "$mnt" "$mnt/docs"
step "ls -lR $up   # the upper: copied-up file, a whiteout (c 0,0), a new directory"
step cat "$src/docs/hello.txt"
step prismfs unmount "$mnt" --action discard
step "ls -A $up; ls $src   # discarded: the upper is empty, the source untouched"

echo
echo "== a memory cache written back to a mirror: changes wait --write-back seconds"
mirror="$demo/mirror"
mkdir -p "$mirror/notes" "$cached"
printf 'kept on the mirror\n' > "$mirror/notes/plan.txt"
step prismfs mount --mirror "$mirror" --cache-size 64M --write-back 60 "$cached"
step "echo 'written into memory' > $cached/notes/today.txt && ls $mirror/notes   # not on the mirror yet"
step "prismfs status $cached | grep -E 'cache\.(pending|written|files_loaded)'"
step prismfs sync "$cached"
step "cat $mirror/notes/today.txt   # prismfs sync waited for it"
step "echo 'one more line' >> $cached/notes/plan.txt && prismfs status $cached | grep pending_ops"
step prismfs unmount "$cached"
step "cat $mirror/notes/plan.txt   # unmount wrote the rest back first"

echo
echo "== the same cache written back to a WebDAV server (Apache mod_dav on 127.0.0.1)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$dav/root" "$dav/logs" "$dav/var"
ln -s "$(dirname "$(dpkg -L apache2-bin | grep '/mod_dav\.so$')")" "$dav/modules"
cat > "$dav/apache.conf" <<EOF
Listen 127.0.0.1:$port
ServerName 127.0.0.1
PidFile apache.pid
ErrorLog logs/error.log
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule dav_module modules/mod_dav.so
LoadModule dav_fs_module modules/mod_dav_fs.so
DocumentRoot root
DavLockDB var/DavLock
<Location />
    Dav On
    Require all granted
</Location>
EOF
chown -R nobody:nogroup "$dav"
setpriv --reuid=nobody --regid=nogroup --clear-groups apache2 -d "$dav" -f apache.conf -k start
for _ in $(seq 100); do curl -fs -o /dev/null -X OPTIONS "http://127.0.0.1:$port/" && break; sleep 0.05; done
step prismfs mount --mirror "http://127.0.0.1:$port/" --write-back 0 "$cached"
step "mkdir $cached/reports && echo 'kept on the server' > $cached/reports/q4.txt && prismfs sync $cached"
step "curl -s http://127.0.0.1:$port/reports/q4.txt   # on the server, by plain HTTP"
step "prismfs status $cached | grep -E 'cache\.(mirror_kind|guarantees)'"
step "ln -s q4.txt $cached/reports/link 2>&1 || true   # a server keeps no symlinks: refused at once"
step prismfs unmount "$cached"

echo
echo "== history: every change journaled, snapshots, browsing and restore"
hist=$demo/history
step prismfs mount --history "$hist" "$src" "$mnt"
step prismfs snapshot "$mnt" --name before
step "echo 'a change to undo' >> $mnt/docs/hello.txt && rm $mnt/bin/tool"
step prismfs log "$mnt"
step prismfs diff "$mnt" before
step "cat $mnt/.history/before/docs/hello.txt   # the tree as it was, read-only"
step prismfs restore "$mnt" before docs bin
step "cat $mnt/docs/hello.txt && ls $mnt/bin"
step prismfs unmount "$mnt"

echo
echo "== the same tree mounted over itself (the daemon opened it before mounting)"
step prismfs mount "$src" "$src"
step "mv $src/docs/new.txt $src/docs/renamed.txt && ls $src/docs"
step "grep ' $src ' /proc/mounts"

if [ "${DEMO_KEEP:-0}" = 1 ]; then
	echo
	echo "The mount stays up at $src. End it with: prismfs unmount $src"
elif [ -t 0 ]; then
	echo
	echo "Mounted over $src. Try it in another shell; press Ctrl-C here to unmount."
	trap 'echo; cleanup; exit 0' INT TERM
	while :; do sleep 1; done
fi
