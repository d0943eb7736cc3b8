#!/usr/bin/env bash
# bench/run.sh - compare prismfs, and the filesystems like it, against the
# native filesystem they pass through.
#
# For every system (prismfs with and without kernel passthrough and in
# overlay mode over an upper directory, the FUSE floor, overlayfs,
# fuse-overlayfs, bindfs, mergerfs) every workload runs twice back to back:
# natively first, then through the system, on the same underlying filesystem.
# Each figure is
#     ratio = native time / system time   (1.00 = native speed, <1 = slower)
# of that pair; over ROUNDS rounds the median ratio is reported.
# The floor (fuse-floor, bench/fuse-floor.c) is a FUSE filesystem in memory:
# prismfs's ratio over the floor's says how much of the gap is prismfs's own.
# A last pass counts the FUSE requests per file of every workload.
# A/B: with PRISMFS_BASE_BIN set, prismfs-X@base runs prismfs-X with that
# binary, in the same rounds; a last table gives after/before per workload.
# The memory cache (prismfs-cache: prismfs mount --mirror src) runs next to
# tmpfs and rclone's VFS cache (rclone-vfs); a table gives each one's ratio
# over tmpfs's in the same round, and the write-back row times writes plus
# "prismfs sync" against a plain cp -a.
# Remote mirrors (prismfs-dav: prismfs mount --mirror http://, and its peer
# rclone-dav: rclone mount of the same server) run against an Apache WebDAV
# server the bench starts on 127.0.0.1; their "native" side is curl (GET,
# PUT, PROPFIND) against that server.
# See bench/README.md for the workloads, the systems and the settings.
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)

die()  { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
say()  { printf 'bench: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- settings --
ALL_SYSTEMS="prismfs-pt prismfs-hist prismfs-nopt prismfs-ovl prismfs-cache prismfs-dav fuse-floor tmpfs rclone-vfs rclone-dav overlayfs fuse-overlayfs bindfs mergerfs"
# prismfs-s3 (an S3 mirror on a Ceph RGW) is opt-in: BENCH_S3=1 adds it.
KNOWN_SYSTEMS="$ALL_SYSTEMS bind prismfs-s3"
BENCH_SELFTEST=${BENCH_SELFTEST:-0}
if [[ $BENCH_SELFTEST == 1 ]]; then
    # Checks the script, not the speed: tiny sizes, one round, every system
    # plus "bind" (a kernel bind mount, whose ratios should be about 1.00).
    BENCH_QUICK=1
    _size=16M; _nfiles=200; _rrtime=1; _rounds=1; _tar=/usr/include/linux; _reps=2
    _systems="bind $ALL_SYSTEMS"
else
    BENCH_QUICK=${BENCH_QUICK:-0}
    if [[ $BENCH_QUICK == 1 ]]; then
        _size=64M; _nfiles=1000; _rrtime=3
    else
        _size=1G;  _nfiles=10000; _rrtime=10
    fi
    _rounds=3; _tar=/usr/include; _systems=$ALL_SYSTEMS; _reps=20
fi
BENCH_SIZE=${BENCH_SIZE:-$_size}
NFILES=${NFILES:-$_nfiles}
RANDREAD_TIME=${RANDREAD_TIME:-$_rrtime}
# A warm git status takes about 20 ms: one run is below the noise of
# starting a process on these VMs, so the timed run is this many in a row.
WARM_REPS=${WARM_REPS:-$_reps}
ROUNDS=${ROUNDS:-$_rounds}
BENCH_DIR=${BENCH_DIR:-/var/tmp/prismfs-bench}
RESULTS_DIR=${RESULTS_DIR:-$SCRIPT_DIR/results}
PRISMFS_BIN=${PRISMFS_BIN:-$REPO_ROOT/build/prismfs}
PRISMFS_OPTS=${PRISMFS_OPTS:-}
# ... and for prismfs-ovl (and its @base) only, after those: e.g.
# --lower-passthrough, which a plain mount refuses.
PRISMFS_OVL_OPTS=${PRISMFS_OVL_OPTS:-}
# A/B: another prismfs binary (the "before"). prismfs-X@base mounts like
# prismfs-X, with this binary; it is named automatically after each prismfs
# system in BENCH_SYSTEMS unless BENCH_SYSTEMS names an @base system itself.
PRISMFS_BASE_BIN=${PRISMFS_BASE_BIN:-}
# mergerfs 2.33: its "BASIC SETUP" (man mergerfs) plus the knobs its
# PERFORMANCE section lists: page caching kept across opens while a file is
# unchanged (auto-full), kernel writeback caching, long attribute/entry
# caches, statfs/readdir/symlink caching, security.capability answered
# without a lookup. Not dropcacheonclose: it is there to save memory, and it
# would evict from the page cache the backing files that the native runs read.
MERGERFS_OPTS=${MERGERFS_OPTS:-use_ino,cache.files=auto-full,cache.writeback=true,cache.attr=3600,cache.entry=3600,cache.negative_entry=3600,cache.statfs=10,cache.readdir=true,cache.symlinks=true,security_capability=false,category.create=mfs}
BINDFS_OPTS=${BINDFS_OPTS:-}
FUSE_OVERLAYFS_OPTS=${FUSE_OVERLAYFS_OPTS:-}
# prismfs-cache: the size of its memory filesystem. It holds the data file
# (loaded), what the write workloads write and the trees; past it writes
# fail with ENOSPC (eviction is not there yet), hence 3 x BENCH_SIZE + 1 GiB.
CACHE_SIZE=${CACHE_SIZE:-}
# rclone-vfs: Debian's rclone, "rclone mount src mnt" with its VFS cache in
# full mode, the cache on the same filesystem as src, write-back after 1 s
# like prismfs's default --write-back (rclone's own default is 5 s).
RCLONE_OPTS=${RCLONE_OPTS:---vfs-cache-mode full --vfs-write-back 1s}
# rclone-dav: the same options, over the bench's WebDAV server (a webdav
# remote in a temporary config, removed after each mount).
RCLONE_DAV_OPTS=${RCLONE_DAV_OPTS:-$RCLONE_OPTS}
# The remote group writes back this many files (BENCH_SIZE in all).
REMOTE_WB_FILES=${REMOTE_WB_FILES:-16}
# 1: also the S3 row and its system, prismfs-s3 (a Ceph RGW started by
# tests/servers/ceph-rgw.sh, ~17 s, root). Opt-in; without it the run says
# that the row was not run and why.
BENCH_S3=${BENCH_S3:-0}
S3_PART_MIB=${S3_PART_MIB:-8}      # curl's multipart upload: part size (S3: >= 5 MiB)
S3_PORT=${S3_PORT:-7480}           # the first port tried for the gateway
# The floor is built by this script from bench/fuse-floor.c, into
# FLOOR_BUILD_DIR (git-ignored), with prismfs's session loop when found.
FLOOR_BUILD_DIR=${FLOOR_BUILD_DIR:-$SCRIPT_DIR/build}
FLOOR_BIN=
FLOOR_LOOP=
# 1: after the timed rounds, count the requests of each workload on prismfs
# (its op log) and on the floor (its counters), untimed.
BENCH_REQUESTS=${BENCH_REQUESTS:-1}
TAR_SOURCE=${TAR_SOURCE:-$_tar}
BENCH_ONLY=${BENCH_ONLY:-seqread randread seqwrite bufwrite files untar writeback git remote s3}
BENCH_SYSTEMS=${BENCH_SYSTEMS:-$_systems}
BENCH_NO_INSTALL=${BENCH_NO_INSTALL:-0}
BENCH_PRIME=${BENCH_PRIME:-1}
BENCH_FSTRIM=${BENCH_FSTRIM:-1}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-120}
# How prismfs takes requests: "on" = over io_uring (the kernel's enable_uring
# is set to Y for the run and put back after), "off" = from /dev/fuse.
URING_PARAM=/sys/module/fuse/parameters/enable_uring
if [[ -e $URING_PARAM ]]; then _uring=on; else _uring=off; fi
BENCH_URING=${BENCH_URING:-$_uring}
[[ $BENCH_REQUESTS == 0 || $BENCH_REQUESTS == 1 ]] || die "BENCH_REQUESTS must be 0 or 1 (got '$BENCH_REQUESTS')"
[[ $BENCH_URING == on || $BENCH_URING == off ]] || die "BENCH_URING must be on or off (got '$BENCH_URING')"
[[ $BENCH_URING == off || -e $URING_PARAM ]] || die "BENCH_URING=on: this kernel has no FUSE over io_uring ($URING_PARAM is missing)"
URING_OLD=

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && (( 10#$1 > 0 )); }
is_uint "$ROUNDS"        || die "ROUNDS must be a positive integer (got '$ROUNDS')"
is_uint "$NFILES"        || die "NFILES must be a positive integer (got '$NFILES')"
is_uint "$RANDREAD_TIME" || die "RANDREAD_TIME must be a positive integer of seconds (got '$RANDREAD_TIME')"
is_uint "$REMOTE_WB_FILES" || die "REMOTE_WB_FILES must be a positive integer (got '$REMOTE_WB_FILES')"
[[ $BENCH_S3 == 0 || $BENCH_S3 == 1 ]] || die "BENCH_S3 must be 0 or 1 (got '$BENCH_S3')"
is_uint "$S3_PART_MIB" && (( 10#$S3_PART_MIB >= 5 )) || die "S3_PART_MIB must be an integer >= 5 (got '$S3_PART_MIB')"
is_uint "$S3_PORT" || die "S3_PORT must be a port number (got '$S3_PORT')"
is_uint "$MOUNT_TIMEOUT" || die "MOUNT_TIMEOUT must be a positive integer of seconds"
ROUNDS=$((10#$ROUNDS)); NFILES=$((10#$NFILES)); RANDREAD_TIME=$((10#$RANDREAD_TIME))
SIZE_BYTES=$(numfmt --from=iec -- "$BENCH_SIZE" 2>/dev/null) \
    || die "BENCH_SIZE must be a size like 64M or 1G (got '$BENCH_SIZE')"
SIZE_MIB=$(( (SIZE_BYTES + 1048575) / 1048576 ))
(( SIZE_MIB >= 1 )) || die "BENCH_SIZE must be at least 1M"
SIZE_BYTES=$(( SIZE_MIB * 1048576 ))     # whole MiB, so dd bs=1M covers it exactly
if (( SIZE_MIB % 1024 == 0 )); then SIZE_H="$(( SIZE_MIB / 1024 )) GiB"; else SIZE_H="$SIZE_MIB MiB"; fi
NFILES_H=$(printf '%d' "$NFILES" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')
if [[ -z $CACHE_SIZE ]]; then CACHE_SIZE="$(( 3 * SIZE_MIB + 1024 ))M"; fi
numfmt --from=iec -- "$CACHE_SIZE" >/dev/null 2>&1 || die "CACHE_SIZE must be a size like 4G (got '$CACHE_SIZE')"

read -r -a PRISMFS_OPTS_ARR <<<"--uring $BENCH_URING $PRISMFS_OPTS"
read -r -a PRISMFS_OVL_OPTS_ARR <<<"$PRISMFS_OVL_OPTS"
read -r -a BINDFS_OPTS_ARR <<<"$BINDFS_OPTS"
read -r -a RCLONE_OPTS_ARR <<<"$RCLONE_OPTS"
read -r -a RCLONE_DAV_OPTS_ARR <<<"$RCLONE_DAV_OPTS"
PRISMFS_LOG_ARR=()      # --log FILE --log-format json in the requests pass

declare -A WANT=()
for g in $BENCH_ONLY; do
    case $g in
        seqread|randread|seqwrite|bufwrite|files|untar|writeback|git|remote|s3) WANT[$g]=1 ;;
        *) die "unknown BENCH_ONLY group '$g' (groups: seqread randread seqwrite bufwrite files untar writeback git remote s3)" ;;
    esac
done
want() { [[ -n ${WANT[$1]:-} ]]; }

# prismfs-X@base: prismfs-X run with PRISMFS_BASE_BIN (A/B). Without an
# @base system named, each prismfs system gets its @base right after it, so
# that the two run next to each other in every round.
if [[ $BENCH_S3 == 1 ]] && want s3 && [[ " $BENCH_SYSTEMS " != *" prismfs-s3 "* ]]; then
    BENCH_SYSTEMS+=" prismfs-s3"
fi
SYSTEMS=()
_auto_base=0
if [[ -n $PRISMFS_BASE_BIN && " $BENCH_SYSTEMS " != *"@base "* ]]; then _auto_base=1; fi
for s in $BENCH_SYSTEMS; do
    if [[ $s == prismfs-*@base ]]; then
        [[ " $KNOWN_SYSTEMS " == *" ${s%@base} "* ]] || die "unknown system '$s' in BENCH_SYSTEMS (@base goes with prismfs-pt, prismfs-hist, prismfs-nopt, prismfs-ovl, prismfs-cache or prismfs-dav)"
        [[ -n $PRISMFS_BASE_BIN ]] || die "$s in BENCH_SYSTEMS needs PRISMFS_BASE_BIN=/path/to/the/other/prismfs"
    else
        [[ " $KNOWN_SYSTEMS " == *" $s "* ]] || die "unknown system '$s' in BENCH_SYSTEMS (systems: $KNOWN_SYSTEMS, prismfs-X@base)"
    fi
    [[ " ${SYSTEMS[*]} " == *" $s "* ]] || SYSTEMS+=("$s")
    if (( _auto_base )) && [[ $s == prismfs-* && " ${SYSTEMS[*]} " != *" $s@base "* ]]; then
        SYSTEMS+=("$s@base")
    fi
done
(( ${#SYSTEMS[@]} )) || die "BENCH_SYSTEMS is empty"
variant() { printf '%s\n' "${1%@base}"; }     # prismfs-pt@base -> prismfs-pt
is_dav_system() { [[ $(variant "$1") == prismfs-dav || $1 == rclone-dav ]]; }
is_remote_cache() { [[ $(variant "$1") == prismfs-cache || $(variant "$1") == prismfs-dav || $(variant "$1") == prismfs-s3 ]]; }
prismfs_bin() {   # prismfs_bin SYSTEM: the binary that mounts it
    if [[ $1 == *@base ]]; then printf '%s\n' "$PRISMFS_BASE_BIN"; else printf '%s\n' "$PRISMFS_BIN"; fi
}

# ------------------------------------------------------------ prerequisites --
[[ $EUID -eq 0 ]] || die "must run as root (mounting, drop_caches)"

APT_UPDATED=0
apt_install() {   # apt_install PKG...: 0 if all installed
    command -v apt-get >/dev/null 2>&1 || { warn "apt-get not available; cannot install $*"; return 1; }
    if (( ! APT_UPDATED )); then
        apt-get update -qq >&2 || { warn "apt-get update failed"; return 1; }
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v git >/dev/null 2>&1 || missing+=(git)
if (( ${#missing[@]} )); then
    [[ $BENCH_NO_INSTALL == 1 ]] && die "missing ${missing[*]} (BENCH_NO_INSTALL=1: not installing)"
    say "installing ${missing[*]} with apt-get"
    apt_install "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
for t in fio git dd tar find du xargs stat awk sort sed numfmt seq sync timeout df cp flock ps mount umount join; do
    command -v "$t" >/dev/null 2>&1 || die "required tool '$t' not found"
done

# build_floor: compile bench/fuse-floor.c; 0 if FLOOR_BIN is ready. It is
# rebuilt on every run (a second): the loop it links is prismfs's own.
build_floor() {
    local out=$FLOOR_BUILD_DIR/fuse-floor loop_c loop_h
    local -a base=(-std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE) fcflags flibs
    local blog=$BENCH_DIR/floor-build.log
    command -v cc >/dev/null 2>&1 || { warn "no C compiler (cc): cannot build the floor"; return 1; }
    pkg-config --exists fuse3 2>/dev/null || { warn "pkg-config finds no fuse3 (libfuse3-dev): cannot build the floor"; return 1; }
    read -r -a fcflags <<<"$(pkg-config --cflags fuse3)"
    read -r -a flibs <<<"$(pkg-config --libs fuse3)"
    mkdir -p -- "$FLOOR_BUILD_DIR" || return 1
    loop_c=$(find "$REPO_ROOT/src" -name loop.c -print -quit 2>/dev/null || true)
    loop_h=$(find "$REPO_ROOT/src" "$REPO_ROOT/include" -name loop.h -print -quit 2>/dev/null || true)
    if [[ -n $loop_c && -n $loop_h ]] && grep -q pfs_loop_run "$loop_h" \
        && cc "${base[@]}" -DFLOOR_PFS_LOOP -I"$(dirname -- "$(dirname -- "$loop_h")")" "${fcflags[@]}" \
              "$SCRIPT_DIR/fuse-floor.c" "$loop_c" -o "$out.tmp" "${flibs[@]}" -pthread >>"$blog" 2>&1; then
        FLOOR_LOOP="prismfs's session loop, ${loop_c#"$REPO_ROOT"/}"
    elif cc "${base[@]}" "${fcflags[@]}" "$SCRIPT_DIR/fuse-floor.c" -o "$out.tmp" \
              "${flibs[@]}" -pthread >>"$blog" 2>&1; then
        FLOOR_LOOP="libfuse's multi-threaded loop"
        [[ -z $loop_c ]] || warn "the floor did not build with $loop_c; it uses libfuse's loop (see $blog)"
    else
        warn "building the floor failed (see $blog)"
        return 1
    fi
    mv -f -- "$out.tmp" "$out" && FLOOR_BIN=$out
}

# What each system needs; STATUS[s] = ok | why it cannot run (a table column).
declare -A STATUS=()
for s in "${SYSTEMS[@]}"; do
    case $s in
        prismfs-*@base)
            [[ -x $PRISMFS_BASE_BIN && ! -d $PRISMFS_BASE_BIN ]] || die "PRISMFS_BASE_BIN is not an executable file: $PRISMFS_BASE_BIN"
            PRISMFS_BASE_BIN=$(cd -- "$(dirname -- "$PRISMFS_BASE_BIN")" && pwd -P)/$(basename -- "$PRISMFS_BASE_BIN")
            STATUS[$s]=ok ;;
        prismfs-*)
            [[ -x $PRISMFS_BIN ]] || die "prismfs binary not found or not executable: $PRISMFS_BIN
  build it first (./scripts/build.sh) or set PRISMFS_BIN=/path/to/prismfs,
  or leave prismfs out with BENCH_SYSTEMS"
            PRISMFS_BIN=$(cd -- "$(dirname -- "$PRISMFS_BIN")" && pwd -P)/$(basename -- "$PRISMFS_BIN")
            STATUS[$s]=ok ;;
        overlayfs)
            grep -qw overlay /proc/filesystems || modprobe overlay >/dev/null 2>&1 || true
            if grep -qw overlay /proc/filesystems; then STATUS[$s]=ok; else STATUS[$s]="not available"; fi ;;
        fuse-overlayfs|bindfs|mergerfs|rclone-vfs|rclone-dav)
            pkg=${s%-vfs}; pkg=${pkg%-dav}     # rclone-vfs, rclone-dav: the rclone command and package
            if ! command -v "$pkg" >/dev/null 2>&1; then
                if [[ $BENCH_NO_INSTALL == 1 ]]; then
                    say "$pkg is not installed (BENCH_NO_INSTALL=1: not installing)"
                else
                    say "installing $pkg with apt-get"
                    apt_install "$pkg" || warn "could not install $pkg"
                fi
            fi
            if command -v "$pkg" >/dev/null 2>&1; then STATUS[$s]=ok; else STATUS[$s]="not installed"; fi ;;
        tmpfs)
            if grep -qw tmpfs /proc/filesystems; then STATUS[$s]=ok; else STATUS[$s]="not available"; fi ;;
        bind) STATUS[$s]=ok ;;
        fuse-floor)
            mkdir -p -- "$BENCH_DIR" && : >"$BENCH_DIR/floor-build.log"
            if build_floor; then STATUS[$s]=ok; else STATUS[$s]="not built"; fi ;;
    esac
done
if [[ " ${SYSTEMS[*]} " == *" fuse-overlayfs "* || " ${SYSTEMS[*]} " == *" bindfs "* || " ${SYSTEMS[*]} " == *" mergerfs "* || " ${SYSTEMS[*]} " == *" fuse-floor "* || " ${SYSTEMS[*]} " == *" rclone-vfs "* ]]; then
    command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 \
        || warn "neither fusermount3 nor fusermount found; FUSE mounts are removed with umount"
fi
# The remote systems need the WebDAV server (Apache mod_dav, started by
# bench/davserver.py) and curl for their native side.
for s in "${SYSTEMS[@]}"; do
    is_dav_system "$s" && [[ ${STATUS[$s]} == ok ]] || continue
    for t in apache2 curl /usr/bin/python3; do
        command -v "$t" >/dev/null 2>&1 || { STATUS[$s]="no $t"; break; }
    done
done
for s in "${SYSTEMS[@]}"; do
    [[ $(variant "$s") == prismfs-s3 && ${STATUS[$s]} == ok ]] || continue
    if [[ $BENCH_S3 != 1 ]]; then STATUS[$s]="not run: opt-in, BENCH_S3=1"; continue; fi
    for t in curl ceph-mon ceph-osd radosgw radosgw-admin; do
        command -v "$t" >/dev/null 2>&1 || { STATUS[$s]="not run: no $t (tests/servers/ceph-rgw.sh installs Ceph)"; break; }
    done
done
RUNNABLE=()
for s in "${SYSTEMS[@]}"; do [[ ${STATUS[$s]} == ok ]] && RUNNABLE+=("$s"); done

# ------------------------------------------------------------------ layout --
mkdir -p -- "$BENCH_DIR"
BENCH_DIR=$(cd -- "$BENCH_DIR" && pwd -P)
[[ $BENCH_DIR != / ]] || die "BENCH_DIR must not be /"
[[ $BENCH_DIR != *[,:\ ]* ]] || die "BENCH_DIR must not contain ',' ':' or spaces (overlay mount options)"
# BENCH_FS=image (default): the runs happen on a new ext4 made with mkfs's
# defaults (journal included) in a sparse image file, loop-mounted at
# $BENCH_DIR/fs for this run. A filesystem that has been in use carries its
# history into the figures: ext4 without a journal (as the root filesystem
# of these VMs) skips every inode freed in the last minutes when it
# allocates one, reading its inode table block each time, so a create run
# right after a delete run pays for it. BENCH_FS=host runs in $BENCH_DIR as is.
BENCH_FS=${BENCH_FS:-image}
BENCH_FS_SIZE=${BENCH_FS_SIZE:-16G}
case $BENCH_FS in
    image) FS_ROOT=$BENCH_DIR/fs; FS_IMG=$BENCH_DIR/fs.img
           numfmt --from=iec -- "$BENCH_FS_SIZE" >/dev/null 2>&1 \
               || die "BENCH_FS_SIZE must be a size like 16G (got '$BENCH_FS_SIZE')"
           command -v mkfs.ext4 >/dev/null 2>&1 || die "BENCH_FS=image needs mkfs.ext4 (e2fsprogs)" ;;
    host)  FS_ROOT=$BENCH_DIR; FS_IMG= ;;
    *)     die "BENCH_FS must be image or host (got '$BENCH_FS')" ;;
esac
SRC=$FS_ROOT/src            # the native directory; every system shows it at $MNT
MNT=$FS_ROOT/mnt            # mount point of the system under test
OVL=$FS_ROOT/ovl            # overlay upper and work dirs (same filesystem as $SRC)
CACHE=$FS_ROOT/cache        # prepared inputs, always read natively
RCLONE_CACHE=$FS_ROOT/rclone-cache   # rclone-vfs's VFS cache (same filesystem as src)
HIST=$FS_ROOT/history       # prismfs-hist's --history DIR (same filesystem as src, new per mount)
DAV_BASE=$FS_ROOT/dav       # the WebDAV server's directory (TMPDIR of bench/davserver.py)
DAV_INFO=$BENCH_DIR/davserver.info   # "URL ROOT" of the running server
DAV_URL=; DAV_ROOT=; DAV_PID=; RWB_SIG=; S3_NOTE=
S3_DIR=/tmp/pfs-rgw-bench-$$         # the gateway's directory (short: socket paths)
S3_ENDPOINT=; S3_ACCESS_KEY=; S3_SECRET_KEY=; S3_REGION=; S3_BUCKET=; S3_STARTED=0
LOG=$BENCH_DIR/bench.log
PIDFILE=$BENCH_DIR/daemon.pid
BINFILE=$BENCH_DIR/daemon.bin          # the prismfs binary that mounted $MNT (A/B)
FLOOR_COUNTS=$BENCH_DIR/floor-counts   # the floor's request counters (SIGUSR1)
command -v fstrim >/dev/null 2>&1 || BENCH_FSTRIM=0

# One run per BENCH_DIR at a time. The lock fd is closed for every mount
# command, so a daemon never inherits it.
exec {LOCKFD}>"$BENCH_DIR/.lock"
flock -n "$LOCKFD" || die "another bench run is using $BENCH_DIR"

STAMP=$(date '+%Y%m%d-%H%M%S')
mkdir -p -- "$RESULTS_DIR"
RESULTS_DIR=$(cd -- "$RESULTS_DIR" && pwd -P)
CSV=$RESULTS_DIR/bench-$STAMP.csv
MD=$RESULTS_DIR/bench-$STAMP.md

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
GIT=(git -c safe.directory='*' -c user.name=prismfs-bench -c user.email=bench@localhost
     -c commit.gpgsign=false -c init.defaultBranch=main -c core.fsmonitor=false)

# ------------------------------------------------------------ mount helpers --
# Read /proc/self/mounts so that a dead FUSE daemon (ENOTCONN on stat) is
# still seen as a mount.
unescape_mnt() { printf '%b' "${1//\\/\\0}"; }
mount_field() {   # mount_field PATH FIELD -> prints field of the last mount on PATH
    local esc=${1//\\/\\134}
    esc=${esc// /\\040}; esc=${esc//$'\t'/\\011}
    P=$esc F=$2 awk 'BEGIN { p = ENVIRON["P"]; f = ENVIRON["F"] }
                     $2 == p { v = $f; n = 1 } END { if (n) print v; exit !n }' /proc/self/mounts
}
is_mounted() { mount_field "$1" 2 >/dev/null; }
mounts_under() {  # every mount point at or below $1, deepest first
    P=$1 awk 'BEGIN { p = ENVIRON["P"] } $2 == p || index($2, p "/") == 1 { print $2 }' /proc/self/mounts \
        | sort -r | uniq | while IFS= read -r m; do unescape_mnt "$m"; echo; done
}

unmount_once() {  # one attempt, strongest-correct first; lazy only as last resort
    local m=$1 fstype bin=$PRISMFS_BIN
    fstype=$(mount_field "$m" 3 || true)
    # $MNT is unmounted by the binary that mounted it (A/B: maybe the base)
    if [[ $m == "$MNT" && -s $BINFILE ]]; then bin=$(cat "$BINFILE" 2>/dev/null || echo "$PRISMFS_BIN"); fi
    if [[ $fstype == fuse.prismfs && -x $bin ]]; then
        timeout --foreground 120 "$bin" unmount "$m" >>"$LOG" 2>&1 && return 0
        warn "prismfs unmount $m failed; trying fusermount3/umount"
    fi
    if [[ $fstype == fuse* ]]; then
        local fm
        for fm in fusermount3 fusermount; do
            command -v "$fm" >/dev/null 2>&1 || continue
            "$fm" -u "$m" >>"$LOG" 2>&1 && return 0
            break
        done
    fi
    umount "$m" >>"$LOG" 2>&1 && return 0
    warn "umount $m failed (busy?); doing a lazy unmount"
    umount -l "$m" >>"$LOG" 2>&1
}
unmount_path() {
    local _i
    for _i in 1 2 3 4 5; do
        is_mounted "$1" || return 0
        unmount_once "$1" || sleep 1
    done
    ! is_mounted "$1"
}
# Wait for a FUSE daemon to exit after its unmount, so that its last work
# does not overlap the next system's runs. The daemon is ours: if it does
# not exit, end it by its pid.
wait_daemon_gone() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    for (( i = 0; i < 300; i++ )); do
        [[ -d /proc/$pid ]] || return 0
        [[ $(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) == Z ]] && return 0
        sleep 0.1
    done
    warn "daemon pid $pid still running 30 s after unmount; sending TERM"
    kill -TERM "$pid" 2>/dev/null || true
}
unmount_mnt() {   # unmount $MNT and wait for the daemon of the last mount
    local pid=""
    [[ -f $PIDFILE ]] && pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if is_mounted "$MNT"; then
        unmount_path "$MNT" || { printf 'bench: error: %s is STILL MOUNTED; unmount it by hand\n' "$MNT" >&2; return 1; }
    fi
    wait_daemon_gone "$pid"
    rm -f -- "$PIDFILE" "$BINFILE"
}

# The daemon of a FUSE system: the process named like the system whose
# command line has $MNT as one of its arguments.
find_daemon_pid() {   # find_daemon_pid SYSTEM
    local comm pid="" p out bin=""
    case $1 in
        prismfs-*) bin=$(prismfs_bin "$1"); comm=$(basename -- "$bin" | cut -c1-15) ;;
        fuse-overlayfs|bindfs|mergerfs|fuse-floor) comm=$1 ;;
        rclone-vfs|rclone-dav) comm=rclone ;;
        *) return 1 ;;
    esac
    if [[ -n $bin ]] && out=$("$bin" status --json "$MNT" 2>>"$LOG"); then
        pid=$(printf '%s\n' "$out" | grep -o '"pid"[[:space:]]*:[[:space:]]*[0-9][0-9]*' | head -n1 | grep -o '[0-9]*$' || true)
    fi
    if [[ -z $pid ]]; then
        for p in /proc/[0-9]*; do
            p=${p#/proc/}
            [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$comm" ]] || continue
            [[ $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1) != Z ]] || continue
            tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -Fxq -- "$MNT" || continue
            pid=$p
        done
    fi
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    printf '%s\n' "$pid"
}
is_fuse_system() { [[ $1 != overlayfs && $1 != bind && $1 != tmpfs ]]; }
DAEMON_PID=
cpu_ticks() {     # utime stime of the daemon (whole thread group), in clock ticks
    [[ -n $DAEMON_PID && -r /proc/$DAEMON_PID/stat ]] || { echo "- -"; return; }
    sed 's/^.*) //' "/proc/$DAEMON_PID/stat" | awk '{ print $12, $13 }'
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# Per-system layout. Every system shows $SRC; the overlays use it as their
# lower layer and write into $OVL/upper on the same filesystem. While an
# overlay is mounted the native runs write into $SRC/rw/native and
# $SRC/rw/prime, which the overlay never looks up.
mount_system() {  # mount_system SYSTEM (stdout/stderr to the log)
    local s=$1 bin=$PRISMFS_BIN
    [[ $s == *@base ]] && bin=$PRISMFS_BASE_BIN     # A/B: same options, the base binary
    case ${s%@base} in
        prismfs-pt)   "$bin" mount --passthrough on  "${PRISMFS_OPTS_ARR[@]}" "${PRISMFS_LOG_ARR[@]}" "$SRC" "$MNT" ;;
        prismfs-hist) "$bin" mount --passthrough on --history "$HIST" "${PRISMFS_OPTS_ARR[@]}" "${PRISMFS_LOG_ARR[@]}" "$SRC" "$MNT" ;;
        prismfs-nopt) "$bin" mount --passthrough off "${PRISMFS_OPTS_ARR[@]}" "${PRISMFS_LOG_ARR[@]}" "$SRC" "$MNT" ;;
        prismfs-ovl)  "$bin" mount --passthrough on --upper "$OVL/upper" --work "$OVL/work" "${PRISMFS_OPTS_ARR[@]}" "${PRISMFS_OVL_OPTS_ARR[@]}" "${PRISMFS_LOG_ARR[@]}" "$SRC" "$MNT" ;;
        prismfs-cache) "$bin" mount --mirror "$SRC" --cache-size "$CACHE_SIZE" "${PRISMFS_OPTS_ARR[@]}" "${PRISMFS_LOG_ARR[@]}" "$MNT" ;;
        tmpfs)        mount -t tmpfs -o mode=0755 tmpfs "$MNT" ;;
        rclone-vfs)   RCLONE_CONFIG=$RCLONE_CACHE/rclone.conf rclone mount "$SRC" "$MNT" --cache-dir "$RCLONE_CACHE" "${RCLONE_OPTS_ARR[@]}" --daemon ;;
        prismfs-s3)   AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
                      "$bin" mount --mirror "s3://$S3_BUCKET/pfx" --s3-endpoint "$S3_ENDPOINT" --s3-region "$S3_REGION" \
                      --cache-size "$CACHE_SIZE" "${PRISMFS_OPTS_ARR[@]}" "${PRISMFS_LOG_ARR[@]}" "$MNT" ;;
        prismfs-dav)  "$bin" mount --mirror "$DAV_URL/" --cache-size "$CACHE_SIZE" "${PRISMFS_OPTS_ARR[@]}" "${PRISMFS_LOG_ARR[@]}" "$MNT" ;;
        rclone-dav)   printf '[dav]\ntype = webdav\nurl = %s/\nvendor = other\n' "$DAV_URL" >"$RCLONE_CACHE/rclone.conf" &&
                      RCLONE_CONFIG=$RCLONE_CACHE/rclone.conf rclone mount dav: "$MNT" --cache-dir "$RCLONE_CACHE/vfs" "${RCLONE_DAV_OPTS_ARR[@]}" --daemon ;;
        fuse-floor)   "$FLOOR_BIN" --counts "$FLOOR_COUNTS" "$MNT" ;;
        overlayfs)    mount -t overlay overlay -o "lowerdir=$SRC,upperdir=$OVL/upper,workdir=$OVL/work" "$MNT" ;;
        fuse-overlayfs) fuse-overlayfs -o "lowerdir=$SRC,upperdir=$OVL/upper,workdir=$OVL/work${FUSE_OVERLAYFS_OPTS:+,$FUSE_OVERLAYFS_OPTS}" "$MNT" ;;
        bindfs)       bindfs "${BINDFS_OPTS_ARR[@]}" "$SRC" "$MNT" ;;
        mergerfs)     mergerfs -o "$MERGERFS_OPTS" "$SRC" "$MNT" ;;
        bind)         mount --bind "$SRC" "$MNT" ;;
    esac
}
expected_fstype() {
    case $1 in
        overlayfs) echo overlay ;;
        tmpfs) echo tmpfs ;;
        bind) echo "$FSTYPE_MNT" ;;
        *) echo 'fuse*' ;;
    esac
}

system_version() {
    local bin
    case $1 in
        prismfs-*)      bin=$(prismfs_bin "$1")
                        echo "$("$bin" --version 2>/dev/null | head -n1), $bin$(bin_tree "$bin")" ;;
        overlayfs|bind) echo "kernel $(uname -r)" ;;
        fuse-overlayfs) fuse-overlayfs --version 2>&1 | grep -m1 '^fuse-overlayfs' ;;
        bindfs)         bindfs --version 2>&1 | head -n1 ;;
        mergerfs)       mergerfs -V 2>&1 | head -n1 ;;
        fuse-floor)     echo "bench/fuse-floor.c on libfuse $(pkg-config --modversion fuse3 2>/dev/null || echo '?'), $FLOOR_LOOP" ;;
        tmpfs)          echo "kernel $(uname -r)" ;;
        rclone-vfs|rclone-dav) rclone version 2>/dev/null | head -n1 ;;
    esac
}
bin_tree() {      # bin_tree BIN: " (tree at REV)" if BIN sits in a git work tree
    local rev
    rev=$("${GIT[@]}" -C "$(dirname -- "$1")" describe --always --dirty 2>/dev/null) || return 0
    printf ' (its tree at %s)' "$rev"
}
system_options() {
    case $(variant "$1") in
        prismfs-pt)     echo "--passthrough on --uring $BENCH_URING${PRISMFS_OPTS:+ $PRISMFS_OPTS}" ;;
        prismfs-hist)   echo "--passthrough on --history history --uring $BENCH_URING${PRISMFS_OPTS:+ $PRISMFS_OPTS} (history: a new directory beside src at each mount)" ;;
        prismfs-nopt)   echo "--passthrough off --uring $BENCH_URING${PRISMFS_OPTS:+ $PRISMFS_OPTS}" ;;
        prismfs-ovl)    echo "--passthrough on --uring $BENCH_URING --upper ovl/upper --work ovl/work${PRISMFS_OPTS:+ $PRISMFS_OPTS}${PRISMFS_OVL_OPTS:+ $PRISMFS_OVL_OPTS}" ;;
        prismfs-cache)  echo "--mirror src --cache-size $CACHE_SIZE --uring $BENCH_URING${PRISMFS_OPTS:+ $PRISMFS_OPTS}" ;;
        tmpfs)          echo "mount -t tmpfs (filled like the floor, untimed)" ;;
        rclone-vfs)     echo "rclone mount src mnt --cache-dir rclone-cache $RCLONE_OPTS (untar: --no-same-owner --no-same-permissions, trees without their symlinks: see README)" ;;
        prismfs-s3)     echo "--mirror s3://$S3_BUCKET/pfx --s3-endpoint $S3_ENDPOINT (Ceph RGW) --s3-region $S3_REGION --cache-size $CACHE_SIZE --uring $BENCH_URING${PRISMFS_OPTS:+ $PRISMFS_OPTS}" ;;
        prismfs-dav)    echo "--mirror $DAV_URL/ (Apache mod_dav) --cache-size $CACHE_SIZE --uring $BENCH_URING${PRISMFS_OPTS:+ $PRISMFS_OPTS}" ;;
        rclone-dav)     echo "rclone mount dav: mnt, a webdav remote (vendor other) at $DAV_URL/ in a temporary config, --cache-dir rclone-cache/vfs $RCLONE_DAV_OPTS" ;;
        overlayfs)      echo "lowerdir=src,upperdir=ovl/upper,workdir=ovl/work" ;;
        fuse-overlayfs) echo "lowerdir=src,upperdir=ovl/upper,workdir=ovl/work${FUSE_OVERLAYFS_OPTS:+,$FUSE_OVERLAYFS_OPTS}" ;;
        bindfs)         echo "${BINDFS_OPTS:-(defaults)}" ;;
        mergerfs)       echo "-o $MERGERFS_OPTS" ;;
        bind)           echo "mount --bind" ;;
        fuse-floor)     echo "in memory; default_permissions, entry/attr timeout 86400 s, page and readdir caches kept, requests from /dev/fuse" ;;
    esac
}

# ------------------------------------------------------------------ cleanup --
CHILD_PID=
descendants() {   # pids below $1, children first listed before their own
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$c"; descendants "$c"
    done
}
stop_child() {    # end the running system round (ours, by pid) and what it started
    [[ -n $CHILD_PID ]] || return 0
    local pids dpid="" p i
    [[ -f $PIDFILE ]] && dpid=$(cat "$PIDFILE" 2>/dev/null || true)
    pids="$CHILD_PID $(descendants "$CHILD_PID" | tr '\n' ' ')"
    for p in $pids; do [[ $p == "$dpid" ]] || kill -TERM "$p" 2>/dev/null || true; done
    for (( i = 0; i < 50; i++ )); do
        kill -0 "$CHILD_PID" 2>/dev/null || break
        sleep 0.1
    done
    for p in $pids; do [[ $p == "$dpid" ]] || kill -KILL "$p" 2>/dev/null || true; done
    wait "$CHILD_PID" 2>/dev/null || true
    CHILD_PID=
}
# The WebDAV server of the remote rows: bench/davserver.py, ours by its pid;
# it stops the server and removes its directory on TERM.
stop_dav_server() {
    [[ -n $DAV_PID ]] || return 0
    local i
    kill -TERM "$DAV_PID" 2>/dev/null || true
    for (( i = 0; i < 200; i++ )); do kill -0 "$DAV_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DAV_PID" 2>/dev/null; then
        warn "the WebDAV server helper (pid $DAV_PID) did not stop in 20 s; killing it"
        kill -KILL "$DAV_PID" 2>/dev/null || true
    fi
    wait "$DAV_PID" 2>/dev/null || true
    DAV_PID=
    rm -f -- "$DAV_INFO"
}
CLEANED=0
cleanup() {
    local rc=$? m
    (( CLEANED )) && return 0
    CLEANED=1
    set +e
    trap '' INT TERM HUP PIPE
    exec 2>&"$ERRFD"
    cd /
    stop_child
    if is_mounted "$MNT"; then say "unmounting $MNT"; fi
    unmount_mnt || rc=1
    stop_dav_server         # after the mount that writes to it, before its filesystem
    if (( S3_STARTED )); then
        say "stopping the Ceph RGW"
        "$REPO_ROOT/tests/servers/ceph-rgw.sh" stop "$S3_DIR" >>"$LOG" 2>&1 || { warn "stopping the Ceph RGW in $S3_DIR failed (see $LOG)"; rc=1; }
        S3_STARTED=0
    fi
    while IFS= read -r m; do
        [[ -n $m ]] || continue
        say "unmounting $m"
        unmount_path "$m" || { printf 'bench: error: %s is STILL MOUNTED; unmount it by hand\n' "$m" >&2; rc=1; }
    done < <(mounts_under "$BENCH_DIR")
    if ! is_mounted "$MNT"; then
        rm -rf -- "$SRC/rw" "$OVL" "$RCLONE_CACHE"
    fi
    [[ -n $(mounts_under "$FS_ROOT/wbsync" 2>/dev/null) ]] || rm -rf -- "$FS_ROOT/wbsync"
    if [[ -n ${FS_IMG:-} ]] && ! is_mounted "$FS_ROOT"; then rm -f -- "$FS_IMG"; fi
    [[ -n ${MD:-} ]] && rm -f -- "$MD.head"
    [[ -n $URING_OLD ]] && echo "$URING_OLD" >"$URING_PARAM"
    exit "$rc"
}
# A signal can arrive while a workload runs with stdout/stderr sent to the log;
# keep the original stderr so that cleanup messages reach the user.
exec {ERRFD}>&2
on_signal() { trap '' PIPE; exec 2>&"$ERRFD"; say "interrupted by SIG$1"; exit "$2"; }
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP
trap 'on_signal PIPE 141' PIPE     # e.g. "run.sh | head": still unmount
# Written only when it has to change (and put back at exit). With
# BENCH_URING=off the mounts say "--uring off" themselves, so the parameter
# is left alone: another run on this machine may be using it.
if [[ -e $URING_PARAM && $BENCH_URING == on ]]; then
    _cur=$(cat "$URING_PARAM")
    _want=Y
    if [[ $_cur != "$_want" ]]; then
        URING_OLD=$_cur
        echo "$_want" >"$URING_PARAM" || die "cannot set $URING_PARAM (BENCH_URING=$BENCH_URING needs root)"
    fi
fi

# ----------------------------------------------------------------- timing --
now() { printf '%s\n' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
T_LAST=; C_LAST=
FAILED_WL=
# measure SIDE CMD... : run CMD (output to the log), set T_LAST (wall seconds)
# and C_LAST (daemon CPU seconds during CMD; system side of a FUSE system only).
measure() {
    local side=$1; shift
    local t0 t1 c0 c1
    sync
    # sync(2) does not reach a FUSE daemon: a cached mount still writing back
    # the previous run's changes is waited for here, untimed, on both sides.
    if is_remote_cache "$CUR_SYS"; then
        "$(prismfs_bin "$CUR_SYS")" sync "$MNT" >>"$LOG" 2>&1 || die "prismfs sync $MNT failed before a timed run (see $LOG)"
    fi
    [[ -n $REQ_SYS && $side != native ]] && req_before
    c0=$(cpu_ticks)
    t0=$(now)
    if ! "$@" >>"$LOG" 2>&1; then
        die "workload command failed on the $side side: $* (see $LOG)"
    fi
    t1=$(now)
    c1=$(cpu_ticks)
    [[ -n $REQ_SYS && $side != native ]] && req_after
    T_LAST=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
    C_LAST=
    if [[ $side != native && $c0 != "- -" && $c1 != "- -" ]]; then
        C_LAST=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN {
            split(a, x, " "); split(b, y, " ");
            printf "%.2f", ((y[1] + y[2]) - (x[1] + x[2])) / hz }')
    fi
}
unmeasured() { "$@" >>"$LOG" 2>&1 || die "preparation step failed: $* (see $LOG)"; }
# Untimed checks that a workload did what it should (on every side: a system
# that gets a workload wrong gets "failed", not a ratio).
check_count() {   # check_count SIDE DIR N WHAT [-R]: DIR holds N names (-R: the whole tree)
    local n
    if [[ ${5:-} == -R ]]; then
        n=$(find "$2" -mindepth 1 | wc -l)
    else
        n=$(find "$2" -mindepth 1 -maxdepth 1 | wc -l)
    fi
    (( n == $3 )) || die "$1: $4: $n names in $2, expected $3"
}
check_git_clean() {   # check_git_clean SIDE REPO: git sees the committed tree unchanged
    local out
    out=$("${GIT[@]}" -C "$2" status --porcelain 2>>"$LOG") || die "$1: git status failed in $2"
    [[ -z $out ]] || die "$1: git status in $2 shows changes: $(printf '%s' "$out" | head -n3 | tr '\n' ' ')"
}

# ------------------------------------------------------- request counting --
# In the requests pass (REQ_SYS set, in its subshell) measure() takes the
# daemon's request totals before and after the timed command and writes the
# difference to REQ_CSV: system,workload,op,count. Totals: prismfs's op log
# (one JSON object per request, "op":"name"), or the floor's counters
# (written to FLOOR_COUNTS on SIGUSR1). A total is taken only once it stops
# moving, so that requests the kernel sends after the command returns (a
# RELEASE, FORGETs) count for the workload that caused them.
REQ_SYS=; REQ_ID=; REQ_LOG=; REQ_T0=
REQ_CSV=
req_totals() {    # "op count" lines, sorted, of everything so far
    if [[ $REQ_SYS == fuse-floor ]]; then
        local i
        rm -f -- "$FLOOR_COUNTS"
        kill -USR1 "$DAEMON_PID" 2>/dev/null || die "the floor daemon (pid $DAEMON_PID) is gone"
        for (( i = 0; i < 100; i++ )); do [[ -f $FLOOR_COUNTS ]] && break; sleep 0.05; done
        [[ -f $FLOOR_COUNTS ]] || die "the floor did not write $FLOOR_COUNTS"
        grep -v '^#' "$FLOOR_COUNTS" | awk '$2 > 0' | sort
    else
        grep -o '"op":"[a-z_]*"' "$REQ_LOG" 2>/dev/null | cut -d'"' -f4 | sort | uniq -c | awk '{ print $2, $1 }'
    fi
}
req_settled() {   # req_totals once two readings 0.3 s apart agree (at most ~15 s)
    local a b i
    a=$(req_totals)
    for (( i = 0; i < 50; i++ )); do
        sleep 0.3
        b=$(req_totals)
        [[ $a == "$b" ]] && break
        a=$b
    done
    printf '%s\n' "$a"
}
req_before() { REQ_T0=$(req_settled); }
req_after() {
    local t1
    t1=$(req_settled)
    join -a 2 -e 0 -o 0,1.2,2.2 <(printf '%s\n' "$REQ_T0" | sed '/^$/d') <(printf '%s\n' "$t1" | sed '/^$/d') \
        | awk -v s="$REQ_SYS" -v w="$REQ_ID" '$3 - $2 > 0 { printf "%s,%s,%s,%d\n", s, w, $1, $3 - $2 }' >>"$REQ_CSV"
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# After a phase that deleted a lot: write back, and with BENCH_FSTRIM=1 have
# the discards done now rather than during the next timed run. Done at the same
# points of every system's run, so every system gets the same treatment.
settle() {
    sync
    if [[ $BENCH_FSTRIM == 1 ]]; then fstrim -- "$BENCH_DIR" >>"$LOG" 2>&1 || true; fi
}

# ------------------------------------------------------------- operations --
op_read()     { dd if="$1" of=/dev/null bs=1M status=none; }
op_write()    { dd if=/dev/zero of="$1" bs=1M count="$SIZE_MIB" conv=fsync status=none; }
op_randread() {
    fio --name=randread --filename="$1" --rw=randread --bs=4k --ioengine=psync \
        --size="$SIZE_BYTES" --time_based --runtime="$RANDREAD_TIME" \
        --invalidate=0 --randrepeat=1 --norandommap \
        --output-format=terse --terse-version=3 --output="$2"
}
op_create()   { (cd -- "$1" && xargs touch -- <"$CACHE/names.txt"); }
op_stat()     { (cd -- "$1" && xargs stat -c %s -- <"$CACHE/names.txt" >/dev/null); }
op_delete()   { (cd -- "$1" && xargs rm -f -- <"$CACHE/names.txt"); }
op_untar()    { tar "${TAR_FLAGS[@]}" -xf "$TREE_TAR" -C "$1"; }
op_bufwrite() { dd if=/dev/zero of="$1" bs=1M count="$SIZE_MIB" status=none; }
# op_writeback SIDE DEST: copy the tree to DEST (a new name), then wait until
# what was written is on the system's backing store: "prismfs sync" for the
# memory cache, the remote holding the whole tree for rclone.
op_writeback() {
    cp "${CP_FLAGS[@]}" -- "$TREE_SRC" "$2" || return
    case $(variant "$1") in
        prismfs-cache) "$(prismfs_bin "$1")" sync "$MNT" ;;
        rclone-vfs)    wait_uploaded "$SRC/rw/$1/wb" ;;
    esac
}
# tree_sig DIR: names, kinds and sizes of everything below DIR
tree_sig() {
    (cd -- "$1" 2>/dev/null && find . -mindepth 1 \( -type d -printf '%y %P\n' -o -printf '%y %P %s\n' \)) \
        | sort | cksum
}
wait_uploaded() { # wait_uploaded DIR: until DIR holds TREE_SRC's tree (at most 10 min)
    local i
    for (( i = 0; i < 6000; i++ )); do
        [[ $(tree_sig "$1") == "$TREE_SIG" ]] && return 0
        sleep 0.1
    done
    printf 'bench: %s did not get the whole tree in 10 minutes\n' "$1"
    return 1
}
# The tree the tree workloads use with SYSTEM (and on the native side of
# its pairs). rclone's VFS answers chmod and symlink with EIO (rclone 1.60),
# so with rclone-vfs the tree has no symlinks and keeps no owner or mode bits.
TAR_FLAGS=(); CP_FLAGS=(-a); TREE_TAR=; TREE_SRC=; TREE_N=; TREE_SIG=; CUR_SYS=
use_tree() {      # use_tree SYSTEM
    CUR_SYS=$1
    TAR_FLAGS=(); CP_FLAGS=(-a)
    TREE_TAR=$CACHE/tree.tar; TREE_SRC=$CACHE/wbtree; TREE_N=$TREE_FILES
    if [[ $1 == rclone-vfs ]]; then
        TAR_FLAGS=(--no-same-owner --no-same-permissions); CP_FLAGS=(-r --preserve=timestamps)
        TREE_TAR=$CACHE/tree-nolinks.tar; TREE_SRC=$CACHE/wbtree-nolinks; TREE_N=$TREE_FILES_NOLINKS
        if want writeback; then TREE_SIG=$(tree_sig "$TREE_SRC"); fi
    fi
}
op_find()     { find "$1" >/dev/null; }
op_du()       { du -s "$1" >/dev/null; }
op_rmtree()   { rm -rf -- "$1"; }
op_gitstatus(){ "${GIT[@]}" -C "$1" status >/dev/null; }
op_gitstatus_reps() {
    local i
    for ((i = 0; i < WARM_REPS; i++)); do op_gitstatus "$1" || return; done
}
# The remote rows (group "remote", on prismfs-dav and rclone-dav): their
# native side is curl against the bench's WebDAV server ($DAV_URL, whose
# files are in $DAV_ROOT); the system side goes through the mount of it.
op_curl_get()  { curl -sS -f -o /dev/null -- "$1"; }
op_propfind()  { curl -sS -f -X PROPFIND -H 'Depth: 1' -o "$2" -- "$1"; }
# One curl process for every file (one upload-file/url pair each in the
# config), so the connection is reused, as a mount would.
op_curl_put()  { curl -sS -f -K "$1"; }
op_ls_l()      { ls -l -- "$1" >/dev/null; }
op_remote_wb() {  # op_remote_wb SYSTEM DEST: copy the files in, until the server holds them
    cp -- "$CACHE"/rwb/* "$2"/ || return
    case $(variant "$1") in
        prismfs-dav) "$(prismfs_bin "$1")" sync "$MNT" ;;
        rclone-dav)  wait_files "$DAV_ROOT/rw/$1/rwb" ;;
    esac
}
# S3 (group "s3", on prismfs-s3): requests signed by curl --aws-sigv4.
s3curl() {
    curl -sS -f --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
         -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}
# op_s3_multipart KEY: upload $CACHE/s3.dat as KEY the way a script would:
# CreateMultipartUpload ("?uploads=": curl 7.88 signs a bare "?uploads"
# wrongly, 403), one UploadPart per S3_PART_MIB piece (made untimed
# in $CACHE/s3parts), CompleteMultipartUpload with the parts' ETags.
op_s3_multipart() {
    local url=$S3_ENDPOINT/$S3_BUCKET/$1 id etag n=0 p body='<CompleteMultipartUpload>'
    id=$(s3curl -X POST "$url?uploads=" | sed -n 's:.*<UploadId>\([^<]*\)</UploadId>.*:\1:p') || return
    [[ -n $id ]] || { echo "no UploadId from CreateMultipartUpload"; return 1; }
    for p in "$CACHE"/s3parts/p*; do
        n=$((n + 1))
        etag=$(s3curl -T "$p" -D - -o /dev/null "$url?partNumber=$n&uploadId=$id" | tr -d '\r' \
               | sed -n 's/^[Ee][Tt][Aa][Gg]:[[:space:]]*//p') || return
        [[ -n $etag ]] || { echo "no ETag for part $n"; return 1; }
        body+="<Part><PartNumber>$n</PartNumber><ETag>$etag</ETag></Part>"
    done
    body+='</CompleteMultipartUpload>'
    s3curl -X POST --data-binary "$body" -o /dev/null "$url?uploadId=$id"
}
op_s3_wb() {      # op_s3_wb SYSTEM FILE: copy the file in, until the bucket holds it
    cp -- "$CACHE/s3.dat" "$2" || return
    "$(prismfs_bin "$1")" sync "$MNT"
}
s3_size() { s3curl -I -- "$S3_ENDPOINT/$S3_BUCKET/$1" | tr -d '\r' | sed -n 's/^[Cc]ontent-[Ll]ength:[[:space:]]*//p'; }
# files_sig DIR: names, kinds and sizes below DIR, without what mod_dav_fs
# keeps next to them (.DAV/, its dead properties).
files_sig() { (cd -- "$1" 2>/dev/null && find . -mindepth 1 -name .DAV -prune -o -printf '%y %P %s\n') | sort | cksum; }
wait_files() {    # wait_files DIR: until DIR holds the write-back files, sizes included (at most 10 min)
    local i
    for (( i = 0; i < 6000; i++ )); do
        [[ $(files_sig "$1") == "$RWB_SIG" ]] && return 0
        sleep 0.1
    done
    printf 'bench: %s did not get the files in 10 minutes\n' "$1"
    return 1
}

# ---------------------------------------------------------------- workloads --
# wl_ID SIDE BASE : prepare (unmeasured), then measure. BASE is $SRC for the
# native side and $MNT for the system. Read-only inputs are shared
# (BASE/ro/...); anything written goes to BASE/rw/SIDE/... so both sides start
# from the same state. Nothing is deleted between the measured runs of a group
# (see cleanup_group): on filesystems mounted with "discard" the first writer
# after a big delete pays for the discards, and that would always be native.
wl_seqread()  { unmeasured op_read "$2/ro/seq.dat"; measure "$1" op_read "$2/ro/seq.dat"; }
wl_randread() {
    local out=$CACHE/fio-randread.$1.terse
    unmeasured op_read "$2/ro/seq.dat"
    rm -f -- "$out"
    measure "$1" op_randread "$2/ro/seq.dat" "$out"
    # time_based run: report the time per 100k reads (from fio's own counters)
    T_LAST=$(awk -F';' 'NR == 1 && $6 > 0 { printf "%.6f", 100000 * ($9 / 1000) / ($6 / 4); ok = 1 }
                        END { exit !ok }' "$out") || die "could not parse fio output $out"
}
wl_seqwrite() {
    local f=$2/rw/$1/write.dat
    unmeasured rm -f -- "$f"
    measure "$1" op_write "$f"
}
wl_bufwrite() {
    local f=$2/rw/$1/buf.dat
    unmeasured rm -f -- "$f"
    measure "$1" op_bufwrite "$f"
}
wl_writeback() {
    local d=$2/rw/$1/wb
    unmeasured rm -rf -- "$d"
    measure "$1" op_writeback "$1" "$d"
    check_count "$1" "$d" "$TREE_N" "entries after the copy" -R
    case $(variant "$1") in
        prismfs-cache|rclone-vfs) check_count "$1" "$SRC/rw/$1/wb" "$TREE_N" "entries in the mirror after the write-back" -R ;;
    esac
}
# wl_wbsync SIDE BASE: the write-back alone (prismfs-cache only). The
# system side is a second cached mount of its own mirror with a write-back
# delay longer than the run, so nothing moves while the tree is copied in
# (untimed); the time is `prismfs sync` alone: every file written to the
# mirror and syncfs. The native side copies the same tree to the mirror's
# filesystem and syncs it (sync -f: syncfs), as the write-back does: from
# the warm copy on that filesystem (in-kernel copy_file_range), not from a
# tmpfs, which cp -a copied 2-5x slower here (read/write through a buffer
# it maps and unmaps per file): the stricter of the two.
# (Its own directory on the mirror's filesystem, beside src: the main
# mount's mirror is not written behind its back.)
wl_wbsync() {
    local w=$FS_ROOT/wbsync bin pid
    unmeasured rm -rf -- "$w/$1"
    if [[ $1 == native ]]; then
        unmeasured mkdir -p -- "$w"
        measure native op_wbsync_native "$TREE_SRC" "$w/native"
        check_count native "$w/native" "$TREE_N" "entries after the copy" -R
        unmeasured rm -rf -- "$w/native"
        return
    fi
    bin=$(prismfs_bin "$1")
    unmeasured mkdir -p -- "$w/$1/mirror" "$w/$1/mnt"
    unmeasured "$bin" mount --mirror "$w/$1/mirror" --cache-size "$CACHE_SIZE" --write-back 86400 \
        "${PRISMFS_OPTS_ARR[@]}" "$w/$1/mnt"
    unmeasured cp "${CP_FLAGS[@]}" -- "$TREE_SRC" "$w/$1/mnt/tree"
    pid=$("$bin" status --json "$w/$1/mnt" 2>>"$LOG" | grep -o '"pid"[[:space:]]*:[[:space:]]*[0-9][0-9]*' | head -n1 | grep -o '[0-9]*$' || true)
    # its daemon's CPU, not the main mount's (measure reads DAEMON_PID)
    DAEMON_PID=$pid measure "$1" "$bin" sync "$w/$1/mnt"
    check_count "$1" "$w/$1/mirror/tree" "$TREE_N" "entries in the mirror after the write-back" -R
    unmeasured "$bin" unmount "$w/$1/mnt"
    unmeasured rm -rf -- "$w/$1"
}
# (The split between the copy and syncfs goes to the log: what the row's
# native time would be without the sync.)
op_wbsync_native() {
    local t0 t1
    t0=$(now)
    cp "${CP_FLAGS[@]}" -- "$1" "$2" || return
    t1=$(now)
    sync -f -- "$2" || return
    awk -v a="$t0" -v b="$t1" -v c="$(now)" 'BEGIN { printf "wbsync native: cp -a %.3f s, sync -f %.3f s\n", b - a, c - b }'
}
# wbsync_applies SYSTEM: the write-back alone is the memory cache's row
wbsync_applies() { [[ $(variant "$1") == prismfs-cache ]]; }
wl_create()   {
    unmeasured mkdir -p -- "$2/rw/$1/small"
    measure "$1" op_create "$2/rw/$1/small"
    check_count "$1" "$2/rw/$1/small" "$NFILES" "files after create"
}
wl_stat()     { measure "$1" op_stat "$2/rw/$1/small"; }
wl_delete()   { measure "$1" op_delete "$2/rw/$1/small"; check_count "$1" "$2/rw/$1/small" 0 "files after delete"; }
wl_untar()    {
    unmeasured rm -rf -- "$2/rw/$1/tree"
    unmeasured mkdir -p -- "$2/rw/$1/tree"
    measure "$1" op_untar "$2/rw/$1/tree"
    check_count "$1" "$2/rw/$1/tree" "$TREE_N" "entries after untar" -R
}
wl_find()     { unmeasured op_find "$2/rw/$1/tree"; measure "$1" op_find "$2/rw/$1/tree"; }
wl_du()       { unmeasured op_du "$2/rw/$1/tree";   measure "$1" op_du "$2/rw/$1/tree"; }
wl_rmtree()   {
    measure "$1" op_rmtree "$2/rw/$1/tree"
    [[ ! -e $2/rw/$1/tree ]] || die "$1: $2/rw/$1/tree is still there after rm -rf"
}
wl_gitwarm()  {
    unmeasured op_gitstatus "$2/ro/git-$1"
    measure "$1" op_gitstatus_reps "$2/ro/git-$1"
    check_git_clean "$1" "$2/ro/git-$1"
}
# Cold: the server's page cache is dropped before each side (the native
# run would otherwise warm it for the system's).
wl_rlist() {
    if [[ $1 == native ]]; then
        local out=$CACHE/propfind.xml n
        drop_caches
        measure "$1" op_propfind "$DAV_URL/ro/list/" "$out"
        n=$(grep -o '<[A-Za-z0-9]*:response[ >]' "$out" | wc -l)
        (( n == NFILES + 1 )) || die "native: PROPFIND of ro/list/ gave $n responses, expected $((NFILES + 1))"
    else
        drop_caches
        measure "$1" op_ls_l "$2/ro/list"
        check_count "$1" "$2/ro/list" "$NFILES" "entries listed"
    fi
}
wl_rcold() {
    drop_caches
    if [[ $1 == native ]]; then
        measure "$1" op_curl_get "$DAV_URL/ro/cold.dat"
    else
        measure "$1" op_read "$2/ro/cold.dat"
        [[ $(stat -c %s -- "$2/ro/cold.dat") == "$SIZE_BYTES" ]] || die "$1: ro/cold.dat has the wrong size"
    fi
}
wl_rwb() {
    if [[ $1 == native ]]; then
        unmeasured rm -rf -- "$DAV_ROOT/rw/native/rwb"
        unmeasured curl -sS -f -X MKCOL -o /dev/null -- "$DAV_URL/rw/native/rwb/"
        measure "$1" op_curl_put "$CACHE/rwb.curl"
        [[ $(files_sig "$DAV_ROOT/rw/native/rwb") == "$RWB_SIG" ]] || die "native: the server does not hold the files after curl PUT"
    else
        unmeasured rm -rf -- "$2/rw/$1/rwb"
        unmeasured mkdir -p -- "$2/rw/$1/rwb"
        measure "$1" op_remote_wb "$1" "$2/rw/$1/rwb"
        [[ $(files_sig "$DAV_ROOT/rw/$1/rwb") == "$RWB_SIG" ]] || die "$1: the server does not hold the files after the write-back"
    fi
}
wl_s3wb() {
    if [[ $1 == native ]]; then
        unmeasured s3curl -X DELETE -o /dev/null -- "$S3_ENDPOINT/$S3_BUCKET/pfx/rw/native/s3.dat"
        measure "$1" op_s3_multipart pfx/rw/native/s3.dat
        [[ $(s3_size pfx/rw/native/s3.dat) == "$SIZE_BYTES" ]] || die "native: the bucket does not hold the whole file after the multipart upload"
    else
        unmeasured rm -f -- "$2/rw/$1/s3.dat"
        unmeasured mkdir -p -- "$2/rw/$1"
        measure "$1" op_s3_wb "$1" "$2/rw/$1/s3.dat"
        [[ $(s3_size "pfx/rw/$1/s3.dat") == "$SIZE_BYTES" ]] || die "$1: the bucket does not hold the whole file after the write-back"
    fi
}
wl_gitcold()  { drop_caches; measure "$1" op_gitstatus "$2/ro/git-$1"; check_git_clean "$1" "$2/ro/git-$1"; }

label() {
    case $1 in
        seqread)  echo "warm sequential read, $SIZE_H" ;;
        randread) echo "4 KiB random read (warm)" ;;
        seqwrite) echo "sequential write + fsync, $SIZE_H" ;;
        bufwrite) echo "sequential write, no fsync, $SIZE_H" ;;
        writeback) echo "write-back: cp -a of the tree (+ sync)" ;;
        wbsync)   echo "write-back alone: prismfs sync of the tree" ;;
        create)   echo "create $NFILES_H files" ;;
        stat)     echo "stat $NFILES_H files" ;;
        delete)   echo "delete $NFILES_H files" ;;
        untar)    echo "untar a $TAR_SOURCE tarball" ;;
        find)     echo "find over the tree (warm)" ;;
        du)       echo "du -s over the tree (warm)" ;;
        rmtree)   echo "rm -rf the tree" ;;
        gitwarm)  echo "git status warm" ;;
        gitcold)  echo "git status cold" ;;
        rlist)    echo "remote: ls -l of $NFILES_H entries (native: PROPFIND)" ;;
        rcold)    echo "remote: cold read, $SIZE_H (native: curl GET)" ;;
        rwb)      echo "remote: write-back, $REMOTE_WB_FILES files, $SIZE_H (native: curl PUT)" ;;
        s3wb)     echo "S3: write-back, $SIZE_H file (native: curl multipart upload)" ;;
    esac
}
target() {        # the targets for prismfs with passthrough
    case $1 in
        seqread|seqwrite) echo 0.95 ;;
        randread|gitwarm) echo 0.90 ;;
        create|delete)    echo 0.60 ;;
        untar)            echo 0.50 ;;
        *) echo "" ;;
    esac
}
target_cache() {  # prismfs-cache's targets: over tmpfs, and write-back over native
    case $1 in
        seqread|randread) echo 0.95 ;;
        bufwrite)         echo 0.90 ;;
        writeback|wbsync) echo 0.80 ;;
        *) echo "" ;;
    esac
}

# Priming: right before a writing group's measured pairs, run its first
# workload once, unmeasured, natively in rw/prime. It absorbs what the first
# writer after a pause or after the previous group's cleanup pays (deferred
# discards; VMs that hand idle guest memory back to the host make the first
# big write after a pause ~3x slower), which would otherwise always hit the
# native side. Its output is removed with the group's.
prime_group() {
    [[ $BENCH_PRIME == 1 ]] || return 0
    case $1 in
        seqwrite) wl_seqwrite prime "$SRC" ;;
        bufwrite) wl_bufwrite prime "$SRC" ;;
        files)    wl_create prime "$SRC" ;;
        writeback) wl_writeback prime "$SRC" ;;
        untar)    wl_untar prime "$SRC" ;;
    esac
}
cleanup_group() {   # cleanup_group GROUP SYSTEM: each side's files go through the path that made them
    case $1 in
        seqwrite) unmeasured rm -f -- "$SRC/rw/prime/write.dat" "$SRC/rw/native/write.dat" "$MNT/rw/$2/write.dat" ;;
        bufwrite) unmeasured rm -f -- "$SRC/rw/prime/buf.dat" "$SRC/rw/native/buf.dat" "$MNT/rw/$2/buf.dat" ;;
        writeback) unmeasured rm -rf -- "$SRC/rw/prime/wb" "$SRC/rw/native/wb" "$MNT/rw/$2/wb" ;;
        files)    unmeasured rm -rf -- "$SRC/rw/prime/small" "$SRC/rw/native/small" "$MNT/rw/$2/small" ;;
        untar)    unmeasured rm -rf -- "$SRC/rw/prime/tree" "$SRC/rw/native/tree" "$MNT/rw/$2/tree" ;;
        remote)   unmeasured rm -rf -- "$DAV_ROOT/rw/native/rwb" "$MNT/rw/$2/rwb" ;;
        s3)       unmeasured rm -f -- "$MNT/rw/$2/s3.dat"
                  unmeasured s3curl -X DELETE -o /dev/null -- "$S3_ENDPOINT/$S3_BUCKET/pfx/rw/native/s3.dat" ;;
        *) return 0 ;;
    esac
    settle
}

group_ids() {
    case $1 in
        seqread)  echo seqread ;;
        randread) echo randread ;;
        seqwrite) echo seqwrite ;;
        bufwrite) echo bufwrite ;;
        files)    echo create stat delete ;;
        untar)    echo untar find du rmtree ;;
        writeback) echo writeback wbsync ;;
        git)      echo gitwarm gitcold ;;
        remote)   echo rlist rcold rwb ;;
        s3)       echo s3wb ;;
    esac
}
# group_applies GROUP SYSTEM: 0 if GROUP runs on SYSTEM; if not, prints why
# (its cells are "-").
group_applies() {
    if [[ $(variant "$2") == prismfs-s3 ]]; then
        [[ $1 == s3 ]] && return 0
        echo "prismfs-s3 runs the S3 row only"
        return 1
    fi
    if [[ $1 == s3 ]]; then echo "its native side is a multipart upload to the Ceph RGW: prismfs-s3 only"; return 1; fi
    if is_dav_system "$2"; then
        case $1 in
            remote|seqread|randread|seqwrite|bufwrite) return 0 ;;
        esac
        echo "not for a WebDAV mirror (it keeps no symlinks or owners; see bench/README.md)"
        return 1
    fi
    [[ $1 == remote ]] || return 0
    echo "its native side is curl against the WebDAV server: prismfs-dav and rclone-dav only"
    return 1
}
GROUPS_RUN=(); ORDER=()
for g in seqread randread seqwrite bufwrite files untar writeback git remote s3; do
    want "$g" || continue
    GROUPS_RUN+=("$g")
    read -r -a _ids <<<"$(group_ids "$g")"
    ORDER+=("${_ids[@]}")
done
(( ${#ORDER[@]} )) || die "nothing to run (BENCH_ONLY='$BENCH_ONLY')"

# CSV: one line per round, system and workload; daemon_total lines hold the
# daemon's CPU over the whole mount, read just before unmounting.
csv_row() { local IFS=,; printf '%s\n' "$*" >>"$CSV"; }

# The floor and tmpfs start empty: they are given, untimed and through the
# mount, what the workloads read (the marker, the data file, their own git
# repository).
populate_floor() {   # populate_floor SYSTEM
    mkdir -p -- "$MNT/ro" "$MNT/rw/$1"
    : >"$MNT/ro/.bench-src"
    if want seqread || want randread; then cp -- "$SRC/ro/seq.dat" "$MNT/ro/seq.dat"; fi
    if want git; then cp -a -- "$SRC/ro/git-$1" "$MNT/ro/git-$1"; fi
}

# ------------------------------------------------------------ system round --
# mount_checked SYSTEM ROUND: mount SYSTEM at $MNT, check it is what it
# should be, set DAEMON_PID (and the pid file the parent unmounts with).
mount_checked() {
    local s=$1 r=$2 bin
    [[ $s == prismfs-* ]] && prismfs_bin "$s" >"$BINFILE"     # status and unmount go through it
    timeout --foreground "$MOUNT_TIMEOUT" bash -c "$(declare -f mount_system); $(declare -p PRISMFS_BIN PRISMFS_BASE_BIN PRISMFS_OPTS_ARR PRISMFS_OVL_OPTS_ARR PRISMFS_LOG_ARR BINDFS_OPTS_ARR SRC MNT OVL MERGERFS_OPTS FUSE_OVERLAYFS_OPTS FLOOR_BIN FLOOR_COUNTS CACHE_SIZE RCLONE_OPTS_ARR RCLONE_CACHE HIST DAV_URL RCLONE_DAV_OPTS_ARR S3_ACCESS_KEY S3_SECRET_KEY S3_BUCKET S3_ENDPOINT S3_REGION); mount_system $s" \
        >>"$LOG" 2>&1 {LOCKFD}>&- {ERRFD}>&- \
        || die "mounting $s failed (see $LOG)"
    is_mounted "$MNT" || die "mounting $s returned success but $MNT is not a mount point"
    local fstype want_t
    fstype=$(mount_field "$MNT" 3); want_t=$(expected_fstype "$s")
    # shellcheck disable=SC2053
    [[ $fstype == $want_t ]] || die "$MNT is mounted as '$fstype', expected '$want_t' for $s"
    if [[ $s == fuse-floor ]]; then
        # pid first: the parent waits for this daemon even if filling it fails
        find_daemon_pid "$s" >"$PIDFILE" 2>/dev/null || true
        unmeasured populate_floor "$s"
    fi
    [[ $s == tmpfs ]] && unmeasured populate_floor "$s"
    [[ -f $MNT/ro/.bench-src ]] || die "$MNT/ro/.bench-src is not visible through $s"
    DAEMON_PID=
    if is_fuse_system "$s"; then
        DAEMON_PID=$(find_daemon_pid "$s" || true)
        [[ -n $DAEMON_PID ]] || warn "could not find the $s daemon's pid; no CPU figures"
        printf '%s\n' "$DAEMON_PID" >"$PIDFILE"
    fi
    if [[ $s == prismfs-* ]]; then
        local dp
        bin=$(prismfs_bin "$s")
        dp=$("$bin" status --json "$MNT" 2>>"$LOG" | sed -n 's/.*"data_path"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' || true)
        say "$([[ $r == requests ]] && echo requests || echo "round $r/$ROUNDS"): $s data path: ${dp:-unknown}"
        if [[ ( $(variant "$s") == prismfs-pt || $(variant "$s") == prismfs-hist ) && $dp != *passthrough* ]]; then die "$s is not using kernel passthrough (data path: ${dp:-unknown})"; fi
        if [[ $(variant "$s") == prismfs-nopt && $dp == *"kernel passthrough"* ]]; then die "$s is using kernel passthrough"; fi
        local rq
        rq=$("$bin" status --json "$MNT" 2>>"$LOG" | sed -n 's/.*"requests"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' || true)
        if [[ $BENCH_URING == on && $rq != io_uring ]]; then die "$s is not taking requests over io_uring (requests: ${rq:-unknown})"; fi
    fi
}
# run_system SYSTEM ROUND, in a subshell: mount, every workload pair, the
# daemon's CPU total. The parent unmounts. Exits non-zero if anything fails.
run_system() {
    local s=$1 r=$2 g id tn ts ratio cpu why
    local -a ids
    exec 2>&"$ERRFD"
    use_tree "$s"
    mount_checked "$s" "$r"
    for g in "${GROUPS_RUN[@]}"; do
        if ! why=$(group_applies "$g" "$s"); then say "r$r/$ROUNDS $s: $g not run: $why"; continue; fi
        read -r -a ids <<<"$(group_ids "$g")"
        prime_group "$g"
        for id in "${ids[@]}"; do
            [[ $id != wbsync ]] || wbsync_applies "$s" || continue
            FAILED_WL=$id
            "wl_$id" native "$SRC"; tn=$T_LAST
            "wl_$id" "$s" "$MNT";   ts=$T_LAST; cpu=$C_LAST
            FAILED_WL=
            ratio=$(awk -v n="$tn" -v p="$ts" 'BEGIN { if (p > 0) printf "%.4f", n / p; else print "" }')
            csv_row "$r" "$s" "$id" ok "$tn" "$ts" "$ratio" "$cpu" "" ""
            say "$(printf 'r%d/%d %-14s %-34s native %9.4f s  %9.4f s  ratio %s%s' \
                "$r" "$ROUNDS" "$s" "$(label "$id")" "$tn" "$ts" "${ratio:-?}" "${cpu:+  daemon cpu ${cpu}s}")"
        done
        cleanup_group "$g" "$s"
    done
    if [[ -n $DAEMON_PID ]]; then
        local ticks
        ticks=$(cpu_ticks)
        if [[ $ticks != "- -" ]]; then
            read -r -a tk <<<"$ticks"
            local u sy
            u=$(awk -v t="${tk[0]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
            sy=$(awk -v t="${tk[1]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
            csv_row "$r" "$s" daemon_total ok "" "" "" "$(awk -v a="$u" -v b="$sy" 'BEGIN { printf "%.2f", a + b }')" "$u" "$sy"
            say "round $r/$ROUNDS: $s daemon cpu over the whole mount: user ${u}s sys ${sy}s"
        else
            warn "$s daemon (pid $DAEMON_PID) is gone before unmount; no CPU total"
        fi
    fi
}
# die inside run_system: note which workload failed before leaving.
# (The trap runs at exit, where $1 and $2 are no longer this function's.)
run_system_guarded() {
    GUARD_S=$1 GUARD_R=$2
    trap 'rc=$?; if (( rc )) && [[ -n $FAILED_WL ]]; then csv_row "$GUARD_R" "$GUARD_S" "$FAILED_WL" failed "" "" "" "" "" ""; fi' EXIT
    run_system "$@"
}

# run_requests SYSTEM, in a subshell: mount with request counting on (the
# op log for prismfs), run every workload once on the system side only.
run_requests() {
    local s=$1 g id
    local -a ids
    exec 2>&"$ERRFD"
    use_tree "$s"
    if [[ $s == prismfs-* ]]; then
        REQ_LOG=$BENCH_DIR/oplog-$s.json
        rm -f -- "$REQ_LOG"
        PRISMFS_LOG_ARR=(--log "$REQ_LOG" --log-format json)
    fi
    mount_checked "$s" requests
    REQ_SYS=$s
    for g in "${GROUPS_RUN[@]}"; do
        group_applies "$g" "$s" >/dev/null || continue
        read -r -a ids <<<"$(group_ids "$g")"
        for id in "${ids[@]}"; do
            [[ $id != wbsync ]] || continue    # a second mount's: not in this one's op log
            FAILED_WL=$id; REQ_ID=$id
            "wl_$id" "$s" "$MNT"
            say "requests: $s $(label "$id"): $(awk -F, -v s="$s" -v w="$id" '$1 == s && $2 == w { n += $4 } END { print n + 0 }' "$REQ_CSV") requests"
        done
        FAILED_WL=
        cleanup_group "$g" "$s"
    done
}

prepare_system() {   # fresh write areas for SYSTEM (nothing mounted)
    rm -rf -- "$SRC/rw/$1" "$OVL" "$RCLONE_CACHE" "$HIST"
    mkdir -p -- "$SRC/rw/$1"
    [[ $1 == rclone-vfs || $1 == rclone-dav ]] && mkdir -p -- "$RCLONE_CACHE"
    if is_dav_system "$1"; then   # its area on the server, where the server (nobody) can write
        rm -rf -- "$DAV_ROOT/rw/$1"
        mkdir -p -- "$DAV_ROOT/rw/$1"
        chown nobody:nogroup -- "$DAV_ROOT/rw/$1"
    fi
    if [[ $1 == overlayfs || $1 == fuse-overlayfs || $(variant "$1") == prismfs-ovl ]]; then mkdir -p -- "$OVL/upper" "$OVL/work"; fi
    settle
}

# ---------------------------------------------------------------- set up --
: >"$LOG"
while IFS= read -r m; do
    [[ -n $m ]] || continue
    warn "found a stale mount on $m (left by an earlier run); unmounting it"
    unmount_path "$m" || die "could not unmount stale mount on $m"
done < <(mounts_under "$BENCH_DIR")
if [[ $BENCH_FS == image ]]; then
    say "making a new ext4 ($BENCH_FS_SIZE sparse image) for this run at $FS_ROOT"
    rm -f -- "$FS_IMG"
    mkdir -p -- "$FS_ROOT"
    truncate -s "$BENCH_FS_SIZE" -- "$FS_IMG" || die "cannot create $FS_IMG"
    mkfs.ext4 -q -F -- "$FS_IMG" >>"$LOG" 2>&1 || die "mkfs.ext4 $FS_IMG failed (see $LOG)"
    mount -o loop -- "$FS_IMG" "$FS_ROOT" >>"$LOG" 2>&1 || die "cannot loop-mount $FS_IMG (see $LOG)"
fi
FSTYPE=$(stat -f -c %T -- "$FS_ROOT")
FSDEV=$(findmnt -n -o SOURCE -T "$FS_ROOT" 2>/dev/null || echo '?')
FSTYPE_MNT=$(findmnt -n -o FSTYPE -T "$FS_ROOT" 2>/dev/null || echo '*')
case $FSTYPE in
    tmpfs|ramfs) warn "$FS_ROOT is on $FSTYPE; results will not reflect a disk" ;;
esac
mkdir -p -- "$SRC" "$MNT" "$CACHE"
rm -f -- "$PIDFILE"
if [[ -n $(ls -A -- "$MNT") ]]; then
    die "mount point $MNT is not empty while unmounted; clean it by hand"
fi
rm -rf -- "$SRC/rw" "$OVL"
mkdir -p -- "$SRC/ro" "$SRC/rw/native" "$SRC/rw/prime"
: >"$SRC/ro/.bench-src"
for s in "${RUNNABLE[@]}"; do mkdir -p -- "$SRC/rw/$s"; done

if want seqread || want randread; then
    if [[ ! -f $SRC/ro/seq.dat || $(stat -c %s -- "$SRC/ro/seq.dat") != "$SIZE_BYTES" ]]; then
        say "creating $SIZE_H data file"
        rm -f -- "$SRC/ro/seq.dat"
        dd if=/dev/urandom of="$SRC/ro/seq.dat.tmp" bs=1M count="$SIZE_MIB" status=none
        mv -- "$SRC/ro/seq.dat.tmp" "$SRC/ro/seq.dat"
    fi
fi

if want files; then
    seq -f 'f%08.0f' 1 "$NFILES" >"$CACHE/names.txt"
fi

TREE_NAME=$(basename -- "$TAR_SOURCE")
if want untar || want git || want writeback; then
    [[ -d $TAR_SOURCE ]] || die "TAR_SOURCE $TAR_SOURCE is not a directory"
    src_sig="$TAR_SOURCE $(find "$TAR_SOURCE" -printf '%s %T@\n' 2>/dev/null | cksum)"
    if [[ ! -f $CACHE/tree.tar || $(cat "$CACHE/tree.sig" 2>/dev/null) != "$src_sig" ]]; then
        say "making $CACHE/tree.tar from $TAR_SOURCE"
        rm -f -- "$CACHE/tree.sig" "$CACHE/git.stamp"
        tar -cf "$CACHE/tree.tar.tmp" -C "$(dirname -- "$TAR_SOURCE")" "$TREE_NAME"
        mv -- "$CACHE/tree.tar.tmp" "$CACHE/tree.tar"
        printf '%s\n' "$src_sig" >"$CACHE/tree.sig"
    fi
fi
TREE_FILES=-
[[ -f $CACHE/tree.tar ]] && TREE_FILES=$(tar -tf "$CACHE/tree.tar" | wc -l)
# The write-back workload copies the tree from here (same filesystem); rclone
# gets the tree without its symlinks (see use_tree).
TREE_FILES_NOLINKS=-
if [[ -f $CACHE/tree.tar ]] && { want writeback || [[ " ${RUNNABLE[*]} " == *" rclone-vfs "* ]]; }; then
    rm -rf -- "$CACHE/wbtree" "$CACHE/wbtree-nolinks"
    mkdir -p -- "$CACHE/wbtree"
    tar -xf "$CACHE/tree.tar" -C "$CACHE/wbtree"
    cp -a -- "$CACHE/wbtree" "$CACHE/wbtree-nolinks"
    find "$CACHE/wbtree-nolinks" -type l -delete
    tar -cf "$CACHE/tree-nolinks.tar" -C "$CACHE/wbtree-nolinks" "$TREE_NAME"
    TREE_FILES_NOLINKS=$(tar -tf "$CACHE/tree-nolinks.tar" | wc -l)
fi

# One git repository per side (git status refreshes its index; a side must
# not find the index the other one just refreshed).
if want git; then
    if [[ ! -f $CACHE/git.stamp || ! -d $SRC/ro/git-native/.git ]]; then
        say "making a git repository of the tree"
        rm -rf -- "$SRC"/ro/git-*
        mkdir -p -- "$SRC/ro/git-native"
        tar -xf "$CACHE/tree.tar" -C "$SRC/ro/git-native"
        unmeasured "${GIT[@]}" -C "$SRC/ro/git-native" init -q
        unmeasured "${GIT[@]}" -C "$SRC/ro/git-native" add -A
        unmeasured "${GIT[@]}" -C "$SRC/ro/git-native" commit -q -m "prismfs bench tree"
        date >"$CACHE/git.stamp"
    fi
    for s in "${RUNNABLE[@]}"; do
        if [[ ! -d $SRC/ro/git-$s/.git ]]; then
            say "copying the git repository for $s"
            cp -a -- "$SRC/ro/git-native" "$SRC/ro/git-$s.tmp"
            if [[ $s == rclone-vfs ]]; then   # rclone shows no symlinks: commit their removal
                find "$SRC/ro/git-$s.tmp" -path "$SRC/ro/git-$s.tmp/.git" -prune -o -type l -exec rm -f -- {} +
                unmeasured "${GIT[@]}" -C "$SRC/ro/git-$s.tmp" add -A
                unmeasured "${GIT[@]}" -C "$SRC/ro/git-$s.tmp" commit -q --allow-empty -m "without symlinks (rclone)"
            fi
            mv -- "$SRC/ro/git-$s.tmp" "$SRC/ro/git-$s"
        fi
    done
fi

# The remote systems' WebDAV server, on the same filesystem as src, for the
# whole run (stopped by cleanup, whatever happens). What they read is put
# into its directory directly, owned by the server's user.
DAV_RUN=0
for s in "${RUNNABLE[@]}"; do is_dav_system "$s" && DAV_RUN=1; done
if (( DAV_RUN )); then
    say "starting the WebDAV server (Apache mod_dav, bench/davserver.py)"
    rm -rf -- "$DAV_BASE" "$DAV_INFO"
    mkdir -p -- "$DAV_BASE"
    TMPDIR=$DAV_BASE /usr/bin/python3 "$SCRIPT_DIR/davserver.py" apache "$DAV_INFO" \
        </dev/null >>"$LOG" 2>&1 {LOCKFD}>&- {ERRFD}>&- &
    DAV_PID=$!
    for (( _i = 0; _i < 300; _i++ )); do
        [[ -s $DAV_INFO ]] && break
        kill -0 "$DAV_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -s $DAV_INFO ]] || die "the WebDAV server did not start (see $LOG)"
    read -r DAV_URL DAV_ROOT <"$DAV_INFO"
    say "WebDAV server at $DAV_URL serving $DAV_ROOT"
    mkdir -p -- "$DAV_ROOT/ro" "$DAV_ROOT/rw/native"
    : >"$DAV_ROOT/ro/.bench-src"
    if want seqread || want randread; then cp -- "$SRC/ro/seq.dat" "$DAV_ROOT/ro/seq.dat"; fi
    if want remote; then
        dd if=/dev/urandom of="$DAV_ROOT/ro/cold.dat" bs=1M count="$SIZE_MIB" status=none
        mkdir -p -- "$DAV_ROOT/ro/list"
        (cd -- "$DAV_ROOT/ro/list" && seq -f 'f%08.0f' 1 "$NFILES" | xargs touch --)
        # The write-back's files (REMOTE_WB_FILES, BENCH_SIZE in all) and the
        # curl config that PUTs them to rw/native/rwb/.
        rm -rf -- "$CACHE/rwb"; mkdir -p -- "$CACHE/rwb"; : >"$CACHE/rwb.curl"
        _per=$(( SIZE_BYTES / REMOTE_WB_FILES ))
        (( _per > 0 )) || die "REMOTE_WB_FILES is larger than BENCH_SIZE in bytes"
        for (( _i = 1; _i <= REMOTE_WB_FILES; _i++ )); do
            _f=$(printf 'f%04d.dat' "$_i")
            head -c "$_per" /dev/urandom >"$CACHE/rwb/$_f"
            printf 'upload-file = "%s"\nurl = "%s/rw/native/rwb/%s"\noutput = "/dev/null"\n' "$CACHE/rwb/$_f" "$DAV_URL" "$_f" >>"$CACHE/rwb.curl"
        done
        RWB_SIG=$(files_sig "$CACHE/rwb")
    fi
    chown -R nobody:nogroup -- "$DAV_ROOT"
fi
# prismfs-s3's Ceph RGW (opt-in), for the whole run; stopped by cleanup.
S3_RUN=0
for s in "${RUNNABLE[@]}"; do [[ $(variant "$s") == prismfs-s3 ]] && S3_RUN=1; done
if (( S3_RUN )); then
    _port=$S3_PORT
    while (exec 3<>"/dev/tcp/127.0.0.1/$_port") 2>/dev/null; do _port=$((_port + 7)); done
    say "starting the Ceph RGW on 127.0.0.1:$_port in $S3_DIR (tests/servers/ceph-rgw.sh, ~17 s)"
    rm -rf -- "$S3_DIR"; mkdir -p -- "$S3_DIR"
    S3_STARTED=1
    _env=$("$REPO_ROOT/tests/servers/ceph-rgw.sh" start "$S3_DIR" "$_port" 2>>"$LOG") \
        || die "the Ceph RGW did not start (see $LOG)"
    S3_ENDPOINT=$(sed -n 's/^S3_ENDPOINT=//p' <<<"$_env"); S3_ACCESS_KEY=$(sed -n 's/^S3_ACCESS_KEY=//p' <<<"$_env")
    S3_SECRET_KEY=$(sed -n 's/^S3_SECRET_KEY=//p' <<<"$_env"); S3_REGION=$(sed -n 's/^S3_REGION=//p' <<<"$_env")
    [[ -n $S3_ENDPOINT && -n $S3_ACCESS_KEY && -n $S3_SECRET_KEY && -n $S3_REGION ]] || die "ceph-rgw.sh start printed no endpoint or keys (see $LOG)"
    S3_BUCKET=bench-$$
    unmeasured s3curl -X PUT -o /dev/null -- "$S3_ENDPOINT/$S3_BUCKET"
    : >"$CACHE/empty"
    unmeasured s3curl -T "$CACHE/empty" -o /dev/null -- "$S3_ENDPOINT/$S3_BUCKET/pfx/ro/.bench-src"
    rm -rf -- "$CACHE/s3parts" "$CACHE/s3.dat"; mkdir -p -- "$CACHE/s3parts"
    dd if=/dev/urandom of="$CACHE/s3.dat" bs=1M count="$SIZE_MIB" status=none
    split -a 4 -d -b "${S3_PART_MIB}M" -- "$CACHE/s3.dat" "$CACHE/s3parts/p"
fi
if want remote || want s3; then
    if (( S3_RUN )); then
        S3_NOTE="S3 row (BENCH_S3=1, prismfs-s3, Ceph RGW at $S3_ENDPOINT): native, one curl --aws-sigv4 multipart upload of the file (CreateMultipartUpload, an UploadPart per ${S3_PART_MIB} MiB, CompleteMultipartUpload); system, cp of it into the mount until prismfs sync returns."
    elif [[ $BENCH_S3 != 1 ]]; then
        S3_NOTE="S3 row (write-back against a curl --aws-sigv4 multipart upload, Ceph RGW): not run: it is opt-in (BENCH_S3=1; the gateway takes ~17 s to start, root)."
    else
        S3_NOTE="S3 row: not run: ${STATUS[prismfs-s3]:-prismfs-s3 is not in BENCH_SYSTEMS}, or the group s3 is not in BENCH_ONLY."
    fi
    say "$S3_NOTE"
fi

avail=$(df -B1 --output=avail -- "$BENCH_DIR" | tail -n1 | tr -d ' ')
tarb=$(stat -c %s -- "$CACHE/tree.tar" 2>/dev/null || echo 0)
need=$(( 4 * SIZE_BYTES + 4 * tarb + 1024 * 1048576 ))   # written copies + trees + slack
(( avail > need )) || die "not enough space in $BENCH_DIR: need ~$(numfmt --to=iec $need), have $(numfmt --to=iec "$avail")"
settle

printf 'round,system,workload,status,native_s,system_s,ratio,daemon_cpu_s,daemon_user_s,daemon_sys_s\n' >"$CSV"
for s in "${SYSTEMS[@]}"; do
    [[ ${STATUS[$s]} == ok ]] || csv_row 0 "$s" "" "${STATUS[$s]// /-}" "" "" "" "" "" ""
done

REV=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "no commit")
{
    echo "prismfs benchmark: ratio = native time / system time (1.00 = native speed, higher is better)"
    echo
    [[ $BENCH_SELFTEST == 1 ]] && echo "- **SELFTEST** (checks the script; sizes are tiny, the figures mean nothing)"
    [[ $BENCH_QUICK == 1 && $BENCH_SELFTEST != 1 ]] && echo "- **QUICK** run (small sizes; noisy)"
    echo "- date: $(date '+%Y-%m-%d %H:%M:%S %z'); kernel $(uname -r); $(nproc) cpus; $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
    if [[ $BENCH_FS == image ]]; then
        echo "- native side: a new ext4 (mkfs.ext4 defaults, $BENCH_FS_SIZE sparse image $FS_IMG on a loop device) at $FS_ROOT; overlay upper/work in $OVL"
    else
        echo "- native side: $FS_ROOT as is ($FSTYPE_MNT on $FSDEV); overlay upper/work in $OVL"
    fi
    echo "- prismfs requests: $([[ $BENCH_URING == on ]] && echo "over io_uring (enable_uring set to Y for the run)" || echo "from /dev/fuse") (BENCH_URING=$BENCH_URING)"
    echo "- repo $REV; rounds $ROUNDS (median of the per-round ratios); priming $([[ $BENCH_PRIME == 1 ]] && echo on || echo off); fstrim after deletes $([[ $BENCH_FSTRIM == 1 ]] && echo on || echo off)"
    echo "- sizes: file $SIZE_H; $NFILES_H small files; tree $TAR_SOURCE ($TREE_FILES entries); random read ${RANDREAD_TIME} s per run; warm git status ${WARM_REPS} runs in a row"
    for s in "${SYSTEMS[@]}"; do
        if [[ ${STATUS[$s]} == ok ]]; then
            echo "- $s: $(system_version "$s") ($(system_options "$s"))"
        else
            echo "- $s: ${STATUS[$s]}"
        fi
    done
} >"$MD.head"
cat "$MD.head" >&2

# ------------------------------------------------------------------- run --
# Each round runs every system once, in a rotated order (round 2 starts with
# the second system, ...), so that no system always runs first or last.
FAILURES=()
n=${#RUNNABLE[@]}
for (( r = 1; r <= ROUNDS; r++ )); do
    for (( k = 0; k < n; k++ )); do
        s=${RUNNABLE[$(( (k + r - 1) % n ))]}
        say "round $r/$ROUNDS: $s"
        prepare_system "$s"
        run_system_guarded "$s" "$r" &
        CHILD_PID=$!
        rc=0; wait "$CHILD_PID" || rc=$?
        CHILD_PID=
        if (( rc )); then
            warn "$s failed in round $r (exit $rc); last lines of $LOG:"
            tail -n 5 "$LOG" >&2 || true
            FAILURES+=("$s/r$r")
            grep -q "^$r,$s,[^,]*,failed," "$CSV" || csv_row "$r" "$s" "" failed "" "" "" "" "" ""
        fi
        unmount_mnt || die "could not unmount $s"
        rm -rf -- "$SRC/rw/$s" "$OVL" "$RCLONE_CACHE"
        mkdir -p -- "$SRC/rw/$s"
    done
done
settle

# ------------------------------------------------------ requests per file --
REQ_SYSTEMS=()
if [[ $BENCH_REQUESTS == 1 ]]; then
    for s in "${RUNNABLE[@]}"; do
        case $s in prismfs-*|fuse-floor) REQ_SYSTEMS+=("$s") ;; esac
    done
fi
REQ_DROPPED=()
if (( ${#REQ_SYSTEMS[@]} )); then
    REQ_CSV=$RESULTS_DIR/bench-$STAMP-requests.csv
    printf 'system,workload,op,count\n' >"$REQ_CSV"
    for s in "${REQ_SYSTEMS[@]}"; do
        say "requests: $s (untimed, counted by $([[ $s == fuse-floor ]] && echo "the floor's counters" || echo "prismfs's op log, --log-format json"))"
        prepare_system "$s"
        run_requests "$s" &
        CHILD_PID=$!
        rc=0; wait "$CHILD_PID" || rc=$?
        CHILD_PID=
        if (( rc )); then
            warn "counting the requests of $s failed (exit $rc); last lines of $LOG:"
            tail -n 5 "$LOG" >&2 || true
            FAILURES+=("$s/requests")
        fi
        unmount_mnt || die "could not unmount $s"
        if [[ $s == prismfs-* ]]; then
            d=$(grep -o '"dropped":[0-9]*' "$BENCH_DIR/oplog-$s.json" 2>/dev/null | tail -n1 | cut -d: -f2 || true)
            [[ -z $d || $d == 0 ]] || { warn "$s's op log dropped $d records: its counts are too low"; REQ_DROPPED+=("$s: $d"); }
        fi
        rm -rf -- "$SRC/rw/$s" "$OVL" "$RCLONE_CACHE"
        mkdir -p -- "$SRC/rw/$s"
    done
    settle
fi

# ---------------------------------------------------------------- report --
# cell SYSTEM WORKLOAD FIELD: median over the rounds of FIELD (column number)
median_cell() {    # [FORMAT]: printf format of the median, %.2f unless given
    awk -F, -v s="$1" -v w="$2" -v f="$3" -v fmt="${4:-%.2f}" '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        NR > 1 && $2 == s && $3 == w && $4 == "ok" && $f != "" { n++; v[n] = $f + 0 }
        NR > 1 && $2 == s && $4 == "failed" { failed = 1 }
        END { if (n) printf fmt "\n", median(v, n); else if (failed) print "failed"; else print "-" }' "$CSV"
}
# What "per file" divides by, for each workload.
files_of() {
    case $1 in
        create|stat|delete|rlist) echo "$NFILES" ;;
        rwb)                    echo "$REMOTE_WB_FILES" ;;
        untar|find|du|rmtree|writeback|wbsync) echo "$TREE_FILES" ;;
        gitcold)                echo "$TREE_FILES" ;;
        gitwarm)                echo $(( TREE_FILES * WARM_REPS )) ;;
        *)                      echo 1 ;;
    esac
}
per_what() {
    case $1 in
        create|stat|delete|rlist|rwb) echo "file" ;;
        untar|find|du|rmtree|gitcold|writeback|wbsync) echo "tree entry" ;;
        gitwarm)                echo "tree entry and run" ;;
        *)                      echo "run" ;;
    esac
}
# req_cell SYSTEM WORKLOAD: requests per file; req_ops SYSTEM WORKLOAD: by
# kind. prismfs's totals leave out what it is sent only because its op log
# is on (see the note printed with the table).
req_log_only() {  # req_log_only SYSTEM: the kinds its op log adds
    case $(variant "$1") in
        prismfs-*)   echo flush opendir releasedir ;;
    esac
}
req_cell() {
    awk -F, -v s="$1" -v w="$2" -v f="$(files_of "$2")" -v lo=" $(req_log_only "$1") " '
        NR > 1 && $1 == s && $2 == w && !index(lo, " " $3 " ") { n += $4; seen = 1 }
        END { if (!seen) print "-"; else printf "%.2f\n", n / f }' "$REQ_CSV"
}
req_ops() {
    awk -F, -v s="$1" -v w="$2" -v f="$(files_of "$2")" '
        NR > 1 && $1 == s && $2 == w { print $4, $3 }' "$REQ_CSV" | sort -k1,1nr -k2 \
        | awk -v f="$(files_of "$2")" '{ v = $1 / f; printf "%s%s %s", (NR > 1 ? ", " : ""), $2, (v >= 0.01 ? sprintf("%.2f", v) : sprintf("%.4f", v)) }
                                       END { if (!NR) printf "-"; print "" }'
}
median_native() { # median native seconds of WORKLOAD over every system and round
    awk -F, -v w="$1" '
        NR > 1 && $3 == w && $4 == "ok" { n++; v[n] = $5 + 0 }
        END { if (!n) { print "-"; exit }
              for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
              printf "%.3f\n", (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }' "$CSV"
}
# A/B: ab_cell AFTER BEFORE WORKLOAD prints "median min max n" of the
# per-round after/before ratios (AFTER's ratio over BEFORE's in the same
# round; >1 = AFTER faster), over the rounds where both ran; or "failed"/"-".
ab_cell() {
    awk -F, -v a="$1" -v b="$2" -v w="$3" '
        NR > 1 && $3 == w && $4 == "ok" && $7 > 0 { if ($2 == a) ra[$1] = $7 + 0; else if ($2 == b) rb[$1] = $7 + 0 }
        NR > 1 && ($2 == a || $2 == b) && $4 == "failed" { failed = 1 }
        END {
            for (r in ra) if (r in rb) { n++; v[n] = ra[r] / rb[r] }
            if (!n) { print (failed ? "failed" : "-"); exit }
            for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
            printf "%.2f %.2f %.2f %d\n", (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2, v[1], v[n], n }' "$CSV"
}
AB_PAIRS=()       # prismfs-X whose prismfs-X@base ran too
for s in "${SYSTEMS[@]}"; do
    [[ $s == prismfs-* && $s != *@base && ${STATUS[$s]} == ok && ${STATUS[$s@base]:-} == ok ]] && AB_PAIRS+=("$s")
done

HAVE_PT=0; [[ " ${SYSTEMS[*]} " == *" prismfs-pt "* ]] && HAVE_PT=1
{
    cat "$MD.head"
    echo
    hdr="| workload |"; sep="|---|"
    (( HAVE_PT )) && { hdr+=" target (prismfs-pt) |"; sep+="---:|"; }
    for s in "${SYSTEMS[@]}"; do hdr+=" $s |"; sep+="---:|"; done
    hdr+=" native s (median) |"; sep+="---:|"
    echo "$hdr"; echo "$sep"
    for id in "${ORDER[@]}"; do
        row="| $(label "$id") |"
        t=$(target "$id")
        (( HAVE_PT )) && row+=" ${t:+≥ $t} |"
        for s in "${SYSTEMS[@]}"; do
            if [[ ${STATUS[$s]} != ok ]]; then row+=" ${STATUS[$s]} |"; continue; fi
            v=$(median_cell "$s" "$id" 7)
            if [[ $s == prismfs-pt && -n $t && $v =~ ^[0-9.]+$ ]] && awk -v v="$v" -v t="$t" 'BEGIN { exit !(v < t) }'; then
                v="$v ✗"
            fi
            if [[ $s == prismfs-cache && ($id == writeback || $id == wbsync) && $v =~ ^[0-9.]+$ ]] && awk -v v="$v" -v t="$(target_cache writeback)" 'BEGIN { exit !(v < t) }'; then
                v="$v ✗"
            fi
            row+=" $v |"
        done
        row+=" $(median_native "$id") |"
        echo "$row"
    done
    row="| daemon CPU s, whole mount (user+sys) |"
    (( HAVE_PT )) && row+=" |"
    for s in "${SYSTEMS[@]}"; do
        if [[ ${STATUS[$s]} != ok ]]; then row+=" ${STATUS[$s]} |"
        elif ! is_fuse_system "$s"; then row+=" kernel |"
        else row+=" $(median_cell "$s" daemon_total 8) |"; fi
    done
    row+=" |"
    echo "$row"
    echo
    echo "Cells: median over $ROUNDS round(s) of native time / system time, each system run right after its own native run; 1.00 = native speed, higher is better."
    (( HAVE_PT )) && echo "✗ = prismfs-pt below its target."
    want randread && echo "Random read: fio, 4 KiB psync reads for ${RANDREAD_TIME} s; the ratio is of reads per second."
    echo "Daemon CPU: utime+stime of the FUSE daemon (/proc/PID/stat) from mount to just before unmount (all workloads, warm-ups and preparation), median over rounds; 'kernel' = no daemon."
    if want remote || want s3; then
        echo "Remote rows (prismfs-dav, rclone-dav; '-' elsewhere): the native side is curl against the same Apache mod_dav server on 127.0.0.1, so the ratio is curl time / mount time. ls -l: a PROPFIND Depth 1 of the directory against ls -l through a fresh mount. Cold read: curl GET of the file against dd of it through the mount, never read before; the server's page cache is dropped before each side. Write-back: one curl process PUTting the files against cp into the mount until the server holds them (prismfs sync; rclone: until the server's directory has every file at its size)."
        echo "$S3_NOTE"
    fi
    want writeback && echo "Write-back: cp -a of the tree to a new directory; for prismfs-cache the time runs until \`prismfs sync\` returns (the mirror written and synced), for rclone-vfs until the remote holds the whole tree. Target for prismfs-cache: ≥ 0.80."
    want writeback && echo "Write-back alone (prismfs-cache only; '-' elsewhere): the tree copied into a second cached mount whose --write-back delay outlasts the run (untimed), then \`prismfs sync\` alone timed (every file written to the mirror, then syncfs); native: cp -a of the same tree (its warm copy on the mirror's filesystem) + sync -f. Its daemon CPU is that second mount's. Target for prismfs-cache: ≥ 0.80."
    if [[ " ${RUNNABLE[*]} " == *" tmpfs "* ]]; then
        TMPFS_CMP=()
        for s in "${SYSTEMS[@]}"; do
            case $(variant "$s") in prismfs-cache|rclone-vfs|prismfs-pt|prismfs-nopt|prismfs-dav|rclone-dav) ;; *) continue ;; esac
            [[ ${STATUS[$s]} == ok ]] && TMPFS_CMP+=("$s")
        done
        echo
        echo "Against tmpfs: in each round, the system's ratio divided by tmpfs's (each against the native run just before it, so this is tmpfs time / system time with the native runs' drift between the two pairs); the cell is the median over the rounds, 1.00 = as fast as tmpfs. Spread: the lowest and highest per-round value. Targets are prismfs-cache's (write-back's is over native: see the main table)."
        echo
        hdr="| workload | target (prismfs-cache) |"; sep="|---|---:|"
        for s in "${TMPFS_CMP[@]}"; do hdr+=" $s / tmpfs | spread |"; sep+="---:|---|"; done
        echo "$hdr"; echo "$sep"
        for id in "${ORDER[@]}"; do
            [[ " $(group_ids remote) $(group_ids s3) wbsync " == *" $id "* ]] && continue    # not on tmpfs
            t=$(target_cache "$id")
            [[ $id == writeback || $id == wbsync ]] && t=
            row="| $(label "$id") | ${t:+≥ $t} |"
            for s in "${TMPFS_CMP[@]}"; do
                read -r med lo hi nr <<<"$(ab_cell "$s" tmpfs "$id")"
                if [[ -z ${nr:-} ]]; then row+=" $med | |"; continue; fi
                if [[ $(variant "$s") == prismfs-cache && -n $t ]] && awk -v v="$med" -v t="$t" 'BEGIN { exit !(v < t) }'; then med="$med ✗"; fi
                if (( nr < 2 )); then row+=" $med | (1 round) |"; else row+=" $med | $lo–$hi |"; fi
            done
            echo "$row"
        done
    fi
    if [[ " ${RUNNABLE[*]} " == *" prismfs-hist "* && " ${RUNNABLE[*]} " == *" prismfs-pt "* ]]; then
        echo
        echo "History on / off (issue 17, budget ≥ 0.90 for seq write, untar, git status): in each round, prismfs-hist's ratio (--history DIR) divided by prismfs-pt's (the same mount without it); the cell is the median over the rounds, 1.00 = no cost. Spread: the lowest and highest per-round value."
        echo
        echo "| workload | prismfs-hist / prismfs-pt | spread |"
        echo "|---|---:|---|"
        for id in "${ORDER[@]}"; do
            read -r med lo hi nr <<<"$(ab_cell prismfs-hist prismfs-pt "$id")"
            if [[ -z ${nr:-} ]]; then echo "| $(label "$id") | $med | |"; continue; fi
            if (( nr < 2 )); then echo "| $(label "$id") | $med | (1 round) |"; else echo "| $(label "$id") | $med | $lo–$hi |"; fi
        done
    fi
    if (( ${#AB_PAIRS[@]} )); then
        echo
        echo "A/B, after / before: prismfs-X ($PRISMFS_BIN) over prismfs-X@base ($PRISMFS_BASE_BIN). In each round, prismfs-X's ratio divided by prismfs-X@base's; the cell is the median over the rounds, >1 = faster now. Spread: the lowest and highest per-round value."
        echo
        hdr="| workload |"; sep="|---|"
        for s in "${AB_PAIRS[@]}"; do hdr+=" $s / @base | spread |"; sep+="---:|---|"; done
        echo "$hdr"; echo "$sep"
        for id in "${ORDER[@]}"; do
            row="| $(label "$id") |"
            for s in "${AB_PAIRS[@]}"; do
                read -r med lo hi nr <<<"$(ab_cell "$s" "$s@base" "$id")"
                if [[ -z ${nr:-} ]]; then row+=" $med | |"; continue; fi
                if (( nr < 2 )); then row+=" $med | (1 round) |"; continue; fi
                mark=$(awk -v lo="$lo" -v hi="$hi" -v n="$nr" 'BEGIN { if (n >= 3 && hi < 1) print " ▼"; else if (n >= 3 && lo > 1) print " ▲" }')
                row+=" $med | $lo–$hi$mark |"
            done
            echo "$row"
        done
        echo
        echo "A difference within the rounds' spread is noise: when the spread includes 1.00, some round had the two the other way round. ▼ = slower in every round, ▲ = faster in every round, marked from 3 rounds on (that also happens by chance: for two equal binaries, in 2 × 0.5^ROUNDS of the rows, 25% at 3 rounds, 6% at 5; rerun such a row alone with more rounds). Both run in every round, in the rotated order; the native run before each gives it its ratio."
    fi
    echo
    echo "Daemon CPU seconds during each timed run (median):"
    echo
    hdr="| workload |"; sep="|---|"; nf=0
    for s in "${SYSTEMS[@]}"; do
        is_fuse_system "$s" || continue
        [[ ${STATUS[$s]} == ok ]] || continue
        hdr+=" $s |"; sep+="---:|"; nf=$((nf + 1))
    done
    if (( nf )); then
        echo "$hdr"; echo "$sep"
        for id in "${ORDER[@]}"; do
            row="| $(label "$id") |"
            for s in "${SYSTEMS[@]}"; do
                is_fuse_system "$s" || continue
                [[ ${STATUS[$s]} == ok ]] || continue
                row+=" $(median_cell "$s" "$id" 8) |"
            done
            echo "$row"
        done
    else
        echo "(no FUSE system ran)"
    fi
    if [[ " ${RUNNABLE[*]} " == *" fuse-floor "* ]]; then
        echo
        echo "Fraction of the floor: each system's median ratio over fuse-floor's (1.00 = as fast as a FUSE filesystem that keeps everything in memory and does no work; the rest of the gap to native is what FUSE itself costs):"
        echo
        hdr="| workload |"; sep="|---|"
        for s in "${SYSTEMS[@]}"; do
            [[ $s != fuse-floor && ${STATUS[$s]} == ok ]] || continue
            hdr+=" $s |"; sep+="---:|"
        done
        hdr+=" fuse-floor ratio |"; sep+="---:|"
        echo "$hdr"; echo "$sep"
        for id in "${ORDER[@]}"; do
            fl=$(median_cell fuse-floor "$id" 7 %.4f)
            row="| $(label "$id") |"
            for s in "${SYSTEMS[@]}"; do
                [[ $s != fuse-floor && ${STATUS[$s]} == ok ]] || continue
                v=$(median_cell "$s" "$id" 7 %.4f)
                row+=" $(awk -v v="$v" -v f="$fl" 'BEGIN { if (v ~ /^[0-9.]+$/ && f ~ /^[0-9.]+$/ && f > 0) printf "%.2f", v / f; else print "-" }') |"
            done
            row+=" $(awk -v f="$fl" 'BEGIN { if (f ~ /^[0-9.]+$/) printf "%.2f", f; else print f }') |"
            echo "$row"
        done
    fi
    if [[ -n $REQ_CSV && -f $REQ_CSV ]]; then
        echo
        echo "FUSE requests per file: one more, untimed, run of each workload on the system side only, counted by prismfs's op log (--log FILE --log-format json) and by the floor's counters. A FORGET counts once per inode."
        echo
        hdr="| workload | per |"; sep="|---|---|"
        for s in "${REQ_SYSTEMS[@]}"; do hdr+=" $s |"; sep+="---:|"; done
        echo "$hdr"; echo "$sep"
        for id in "${ORDER[@]}"; do
            row="| $(label "$id") | $(per_what "$id") |"
            for s in "${REQ_SYSTEMS[@]}"; do row+=" $(req_cell "$s" "$id") |"; done
            echo "$row"
        done
        echo
        echo "prismfs's totals leave out what only its op log makes the kernel send (they are listed below): FLUSH, which prismfs otherwise turns off, and OPENDIR and RELEASEDIR, since without the log it answers OPENDIR with ENOSYS (a plain mirror and a layered mount alike) and the kernel then opens directories without asking. The floor answers OPENDIR with ENOSYS like a plain prismfs without the log: its one OPENDIR is counted."
        (( ${#REQ_DROPPED[@]} )) && echo "**The op log dropped records** (counts too low): ${REQ_DROPPED[*]}."
        echo
        echo "By kind, per $(per_what create) / tree entry / run as above:"
        echo
        echo "| workload | system | requests |"
        echo "|---|---|---|"
        for id in "${ORDER[@]}"; do
            for s in "${REQ_SYSTEMS[@]}"; do
                echo "| $(label "$id") | $s | $(req_ops "$s" "$id") |"
            done
        done
    fi
    if (( ${#FAILURES[@]} )); then
        echo
        echo "Failed: ${FAILURES[*]} (see $LOG)"
    fi
} >"$MD"
rm -f -- "$MD.head"
cat "$MD"
echo
echo "results: $MD"
echo "per-round CSV: $CSV"
[[ -n $REQ_CSV ]] && echo "requests CSV: $REQ_CSV"
echo "log: $LOG"

# ------------------------------------------------------------ self-test --
if [[ $BENCH_SELFTEST == 1 ]]; then
    bad=()
    for s in "${SYSTEMS[@]}"; do
        [[ ${STATUS[$s]} == ok ]] || { say "selftest: $s ${STATUS[$s]} (not checked)"; continue; }
        for g in "${GROUPS_RUN[@]}"; do
            group_applies "$g" "$s" >/dev/null || continue
            for id in $(group_ids "$g"); do
                for (( r = 1; r <= ROUNDS; r++ )); do
                    grep -Eq "^$r,$s,$id,ok,[0-9.]+,[0-9.]+,[0-9.]+," "$CSV" || bad+=("$s/$id/r$r")
                done
            done
        done
        if is_fuse_system "$s"; then
            grep -Eq "^[0-9]+,$s,daemon_total,ok,,,,[0-9.]+," "$CSV" || bad+=("$s/daemon-cpu")
        fi
    done
    grep -q '^| workload |' "$MD" || bad+=("table-header")
    for id in "${ORDER[@]}"; do
        grep -Fq "| $(label "$id") |" "$MD" || bad+=("table-row:$id")
    done
    grep -Fq "| daemon CPU s, whole mount" "$MD" || bad+=("table-row:daemon-cpu")
    if [[ " ${RUNNABLE[*]} " == *" fuse-floor "* ]]; then
        grep -q '^Fraction of the floor' "$MD" || bad+=("table:fraction-of-floor")
    fi
    if (( ${#AB_PAIRS[@]} )); then
        grep -q '^A/B, after / before' "$MD" || bad+=("table:a/b")
    fi
    if [[ " ${RUNNABLE[*]} " == *" tmpfs "* ]]; then
        grep -q '^Against tmpfs' "$MD" || bad+=("table:against-tmpfs")
    fi
    for s in "${REQ_SYSTEMS[@]}"; do
        group_applies files "$s" >/dev/null || continue     # the remote systems do not create files
        grep -q "^$s,create,create," "$REQ_CSV" || bad+=("requests:$s")
    done
    (( ${#FAILURES[@]} == 0 )) || bad+=("failures:${FAILURES[*]}")
    if (( ${#bad[@]} )); then
        die "selftest FAILED: ${bad[*]}"
    fi
    say "selftest passed: every system mounted, every workload ran, table printed"
fi
