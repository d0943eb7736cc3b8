#!/usr/bin/env bash
# bench/run.sh - compare prismfs against the native filesystem it passes through.
#
# Every workload runs twice back to back, native first and then through
# prismfs, on the same underlying filesystem. The result is printed as
#     ratio = native time / prismfs time   (1.00 = native speed, <1 = slower)
# See bench/README.md for the workloads and the environment variables.
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)

die()  { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
say()  { printf 'bench: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- settings --
BENCH_QUICK=${BENCH_QUICK:-0}
BENCH_SELFTEST=${BENCH_SELFTEST:-0}
if [[ $BENCH_QUICK == 1 ]]; then
    _size=64M; _nfiles=1000; _rrtime=3
else
    _size=1G;  _nfiles=10000; _rrtime=10
fi
BENCH_SIZE=${BENCH_SIZE:-$_size}
NFILES=${NFILES:-$_nfiles}
RANDREAD_TIME=${RANDREAD_TIME:-$_rrtime}
ROUNDS=${ROUNDS:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/prismfs-bench}
PRISMFS_BIN=${PRISMFS_BIN:-$REPO_ROOT/build/prismfs}
PRISMFS_OPTS=${PRISMFS_OPTS:-}
TAR_SOURCE=${TAR_SOURCE:-/usr/include}
BENCH_ONLY=${BENCH_ONLY:-seqread randread seqwrite files untar git}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-120}
BENCH_PRIME=${BENCH_PRIME:-1}

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && (( 10#$1 > 0 )); }
is_uint "$ROUNDS"        || die "ROUNDS must be a positive integer (got '$ROUNDS')"
is_uint "$NFILES"        || die "NFILES must be a positive integer (got '$NFILES')"
is_uint "$RANDREAD_TIME" || die "RANDREAD_TIME must be a positive integer of seconds (got '$RANDREAD_TIME')"
is_uint "$MOUNT_TIMEOUT" || die "MOUNT_TIMEOUT must be a positive integer of seconds"
SIZE_BYTES=$(numfmt --from=iec -- "$BENCH_SIZE" 2>/dev/null) \
    || die "BENCH_SIZE must be a size like 64M or 1G (got '$BENCH_SIZE')"
SIZE_MIB=$(( (SIZE_BYTES + 1048575) / 1048576 ))
(( SIZE_MIB >= 1 )) || die "BENCH_SIZE must be at least 1M"
SIZE_BYTES=$(( SIZE_MIB * 1048576 ))     # whole MiB, so dd bs=1M covers it exactly
SIZE_H=$(numfmt --to=iec "$SIZE_BYTES")

read -r -a PRISMFS_OPTS_ARR <<<"$PRISMFS_OPTS"

declare -A WANT=()
for g in $BENCH_ONLY; do
    case $g in
        seqread|randread|seqwrite|files|untar|git) WANT[$g]=1 ;;
        *) die "unknown BENCH_ONLY group '$g' (groups: seqread randread seqwrite files untar git)" ;;
    esac
done
want() { [[ -n ${WANT[$1]:-} ]]; }

# ------------------------------------------------------------ prerequisites --
[[ $EUID -eq 0 ]] || die "must run as root (drop_caches, mounting)"

missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v git >/dev/null 2>&1 || missing+=(git)
if (( ${#missing[@]} )); then
    say "installing ${missing[*]} with apt-get"
    command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and apt-get not available"
    apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi
for t in fio git dd tar find du xargs stat awk sort sed numfmt seq sync timeout df cp; do
    command -v "$t" >/dev/null 2>&1 || die "required tool '$t' not found"
done

if [[ $BENCH_SELFTEST == 1 ]]; then
    MODE="SELFTEST (bind mount instead of prismfs: ratios should be ~1.00)"
else
    MODE="prismfs"
    [[ -e $PRISMFS_BIN ]] || die "prismfs binary not found: $PRISMFS_BIN
  build it first (meson setup build && meson compile -C build) or set PRISMFS_BIN=/path/to/prismfs
  (BENCH_SELFTEST=1 runs the script against a plain bind mount instead)"
    [[ -x $PRISMFS_BIN ]] || die "prismfs binary is not executable: $PRISMFS_BIN"
    PRISMFS_BIN=$(cd -- "$(dirname -- "$PRISMFS_BIN")" && pwd -P)/$(basename -- "$PRISMFS_BIN")
fi

mkdir -p -- "$BENCH_DIR"
BENCH_DIR=$(cd -- "$BENCH_DIR" && pwd -P)
[[ $BENCH_DIR != / ]] || die "BENCH_DIR must not be /"
SRC=$BENCH_DIR/src          # native directory (what prismfs passes through)
MNT=$BENCH_DIR/mnt          # prismfs mount of $SRC
CACHE=$BENCH_DIR/cache      # prepared inputs, always read natively
LOG=$BENCH_DIR/bench.log
RESULTS=$BENCH_DIR/results.tsv
ROUNDS_TSV=$BENCH_DIR/results-rounds.tsv
FSTYPE=$(stat -f -c %T -- "$BENCH_DIR")
case $FSTYPE in
    tmpfs|ramfs) warn "BENCH_DIR $BENCH_DIR is on $FSTYPE; results will not reflect a disk" ;;
esac

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
GIT=(git -c safe.directory='*' -c user.name=prismfs-bench -c user.email=bench@localhost
     -c commit.gpgsign=false -c init.defaultBranch=main -c core.fsmonitor=false)

# ------------------------------------------------------------ mount helpers --
# Is $1 a mount point? Read /proc/self/mounts so that a dead FUSE daemon
# (ENOTCONN on stat) is still detected.
mount_field() {   # mount_field PATH FIELD -> prints field of the last mount on PATH
    local esc=${1//\\/\\134}
    esc=${esc// /\\040}; esc=${esc//$'\t'/\\011}
    P=$esc F=$2 awk 'BEGIN { p = ENVIRON["P"]; f = ENVIRON["F"] }
                     $2 == p { v = $f; n = 1 } END { if (n) print v; exit !n }' /proc/self/mounts
}
is_mounted() { mount_field "$1" 2 >/dev/null; }

unmount_one() {   # one attempt, strongest-correct first; lazy only as last resort
    local fstype
    fstype=$(mount_field "$MNT" 3 || true)
    if [[ $fstype == fuse* && -x ${PRISMFS_BIN:-} && $BENCH_SELFTEST != 1 ]]; then
        timeout --foreground 120 "$PRISMFS_BIN" unmount "$MNT" >>"$LOG" 2>&1 && return 0
        warn "prismfs unmount $MNT failed; trying fusermount3/umount"
    fi
    if [[ $fstype == fuse* ]] && command -v fusermount3 >/dev/null 2>&1; then
        fusermount3 -u "$MNT" >>"$LOG" 2>&1 && return 0
    fi
    umount "$MNT" >>"$LOG" 2>&1 && return 0
    warn "umount $MNT failed (busy?); doing a lazy unmount"
    umount -l "$MNT" >>"$LOG" 2>&1
}
unmount_all() {
    local _i
    for _i in 1 2 3 4 5; do
        is_mounted "$MNT" || return 0
        unmount_one || true
    done
    ! is_mounted "$MNT"
}

DAEMON_PID=
do_mount() {
    if is_mounted "$MNT"; then die "$MNT is still mounted"; fi
    if [[ $BENCH_SELFTEST == 1 ]]; then
        mount --bind "$SRC" "$MNT" || die "mount --bind $SRC $MNT failed"
    else
        timeout --foreground "$MOUNT_TIMEOUT" "$PRISMFS_BIN" mount "${PRISMFS_OPTS_ARR[@]}" "$SRC" "$MNT" >>"$LOG" 2>&1 {ERRFD}>&- \
            || die "prismfs mount ${PRISMFS_OPTS:+$PRISMFS_OPTS }$SRC $MNT failed (see $LOG)"
    fi
    is_mounted "$MNT" || die "mount command succeeded but $MNT is not a mount point"
    if [[ $BENCH_SELFTEST != 1 ]]; then
        local fstype; fstype=$(mount_field "$MNT" 3)
        [[ $fstype == fuse* ]] || die "$MNT is mounted as '$fstype', not FUSE; refusing to benchmark it as prismfs"
        DAEMON_PID=$(find_daemon_pid || true)
        [[ -n $DAEMON_PID ]] || warn "could not find the prismfs daemon pid; no CPU figures"
    fi
    [[ -d $MNT/ro ]] || die "$MNT/ro is not visible through the mount"
}

find_daemon_pid() {
    local out re pid=""
    if out=$("$PRISMFS_BIN" status --json "$MNT" 2>>"$LOG"); then
        pid=$(printf '%s\n' "$out" | grep -o '"pid"[[:space:]]*:[[:space:]]*[0-9][0-9]*' | head -n1 | grep -o '[0-9]*$' || true)
    fi
    if [[ -z $pid ]] && command -v pgrep >/dev/null 2>&1; then
        re=$(printf '%s' "$MNT" | sed 's/[][\.*^$+?(){}|]/\\&/g')
        # pgrep -f also matches any shell whose command line quotes the
        # pattern: keep only processes that really are prismfs.
        local p
        for p in $(pgrep -f "prismfs mount .*${re}" || true); do
            [[ $(cat "/proc/$p/comm" 2>/dev/null) == prismfs ]] || continue
            [[ $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1) != Z ]] || continue
            pid=$p
        done
    fi
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    printf '%s\n' "$pid"
}

cpu_ticks() {     # utime stime of the daemon (whole thread group), in clock ticks
    [[ -n $DAEMON_PID && -r /proc/$DAEMON_PID/stat ]] || { echo "- -"; return; }
    sed 's/^.*) //' "/proc/$DAEMON_PID/stat" | awk '{ print $12, $13 }'
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# ------------------------------------------------------------------ cleanup --
CLEANED=0
cleanup() {
    local rc=$?
    (( CLEANED )) && return 0
    CLEANED=1
    set +e
    trap '' INT TERM HUP PIPE
    exec 2>&"$ERRFD"
    cd /
    if is_mounted "$MNT"; then
        say "unmounting $MNT"
        if ! unmount_all; then
            printf 'bench: error: %s is STILL MOUNTED; unmount it by hand\n' "$MNT" >&2
            rc=1
        fi
    fi
    is_mounted "$MNT" || rm -rf -- "$SRC/rw"
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

# ----------------------------------------------------------------- timing --
now() { printf '%s\n' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
T_LAST=; C_LAST=-
# measure SIDE CMD... : run CMD (output to the log), set T_LAST (wall seconds)
# and C_LAST (daemon CPU seconds during CMD, prismfs side only).
measure() {
    local side=$1; shift
    local t0 t1 c0 c1
    sync
    c0=$(cpu_ticks)
    t0=$(now)
    if ! "$@" >>"$LOG" 2>&1; then
        die "workload command failed on the $side side: $* (see $LOG)"
    fi
    t1=$(now)
    c1=$(cpu_ticks)
    T_LAST=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
    C_LAST=-
    if [[ $side == prismfs && $c0 != "- -" && $c1 != "- -" ]]; then
        C_LAST=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN {
            split(a, x, " "); split(b, y, " ");
            printf "%.2f", ((y[1] + y[2]) - (x[1] + x[2])) / hz }')
    fi
}
unmeasured() { "$@" >>"$LOG" 2>&1 || die "preparation step failed: $* (see $LOG)"; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

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
op_untar()    { tar -xf "$CACHE/tree.tar" -C "$1"; }
op_find()     { find "$1" >/dev/null; }
op_du()       { du -s "$1" >/dev/null; }
op_rmtree()   { rm -rf -- "$1"; }
op_gitstatus(){ "${GIT[@]}" -C "$1" status >/dev/null; }

# ---------------------------------------------------------------- workloads --
# wl_ID SIDE BASE : prepare (unmeasured), then measure. BASE is $SRC for the
# native side and $MNT for the prismfs side. Read-only inputs are shared
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
wl_create()   { unmeasured mkdir -p -- "$2/rw/$1/small"; measure "$1" op_create "$2/rw/$1/small"; }
wl_stat()     { measure "$1" op_stat "$2/rw/$1/small"; }
wl_delete()   { measure "$1" op_delete "$2/rw/$1/small"; }
wl_untar()    {
    unmeasured rm -rf -- "$2/rw/$1/tree"
    unmeasured mkdir -p -- "$2/rw/$1/tree"
    measure "$1" op_untar "$2/rw/$1/tree"
}
wl_find()     { unmeasured op_find "$2/rw/$1/tree"; measure "$1" op_find "$2/rw/$1/tree"; }
wl_du()       { unmeasured op_du "$2/rw/$1/tree";   measure "$1" op_du "$2/rw/$1/tree"; }
wl_rmtree()   { measure "$1" op_rmtree "$2/rw/$1/tree"; }
wl_gitwarm()  { unmeasured op_gitstatus "$2/ro/git-$1"; measure "$1" op_gitstatus "$2/ro/git-$1"; }
wl_gitcold()  { drop_caches; measure "$1" op_gitstatus "$2/ro/git-$1"; }

TREE_NAME=$(basename -- "$TAR_SOURCE")
label() {
    case $1 in
        seqread)  echo "seq read $SIZE_H (warm)" ;;
        randread) echo "randread 4k (warm) [s/100k]" ;;
        seqwrite) echo "seq write $SIZE_H + fsync" ;;
        create)   echo "create $NFILES files" ;;
        stat)     echo "stat $NFILES files" ;;
        delete)   echo "delete $NFILES files" ;;
        untar)    echo "untar $TREE_NAME" ;;
        find)     echo "find tree (warm)" ;;
        du)       echo "du -s tree (warm)" ;;
        rmtree)   echo "rm -rf tree" ;;
        gitwarm)  echo "git status (warm)" ;;
        gitcold)  echo "git status (cold)" ;;
    esac
}

# Priming: right before a writing group's measured pair, run its first
# workload once, unmeasured, natively in rw/prime. It absorbs what the first
# writer after a pause or after the previous group's cleanup pays (deferred
# discards; VMs that hand idle guest memory back to the host make the first
# big write after a pause ~3x slower), which would otherwise always hit the
# native side. Its output is removed with the group's.
prime_group() {
    [[ $BENCH_PRIME == 1 ]] || return 0
    case $1 in
        seqwrite) wl_seqwrite prime "$SRC" ;;
        files)    wl_create prime "$SRC" ;;
        untar)    wl_untar prime "$SRC" ;;
    esac
}
cleanup_group() {   # each side's files are removed through the path that made them
    case $1 in
        seqwrite) unmeasured rm -f -- "$SRC/rw/prime/write.dat" "$SRC/rw/native/write.dat" "$MNT/rw/prismfs/write.dat" ;;
        files)    unmeasured rm -rf -- "$SRC/rw/prime/small" "$SRC/rw/native/small" "$MNT/rw/prismfs/small" ;;
        untar)    unmeasured rm -rf -- "$SRC/rw/prime/tree" "$SRC/rw/native/tree" "$MNT/rw/prismfs/tree" ;;
    esac
    sync
}

group_ids() {
    case $1 in
        seqread)  echo seqread ;;
        randread) echo randread ;;
        seqwrite) echo seqwrite ;;
        files)    echo create stat delete ;;
        untar)    echo untar find du rmtree ;;
        git)      echo gitwarm gitcold ;;
    esac
}
GROUPS_RUN=(); ORDER=()
for g in seqread randread seqwrite files untar git; do
    want "$g" || continue
    GROUPS_RUN+=("$g")
    read -r -a _ids <<<"$(group_ids "$g")"
    ORDER+=("${_ids[@]}")
done
(( ${#ORDER[@]} )) || die "nothing to run (BENCH_ONLY='$BENCH_ONLY')"

# ---------------------------------------------------------------- set up --
mkdir -p -- "$SRC" "$MNT" "$CACHE"
: >"$LOG"
if is_mounted "$MNT"; then
    warn "found a stale mount on $MNT; unmounting it"
    unmount_all || die "could not unmount stale mount on $MNT"
fi
if [[ -n $(ls -A -- "$MNT") ]]; then
    die "mount point $MNT is not empty while unmounted; clean it by hand"
fi
rm -rf -- "$SRC/rw"
mkdir -p -- "$SRC/ro" "$SRC/rw/native" "$SRC/rw/prismfs" "$SRC/rw/prime"

avail=$(df -B1 --output=avail -- "$BENCH_DIR" | tail -n1 | tr -d ' ')
need=$(( 4 * SIZE_BYTES + 1024 * 1048576 ))   # seq.dat + 3 written copies + trees
(( avail > need )) || die "not enough space in $BENCH_DIR: need ~$(numfmt --to=iec $need), have $(numfmt --to=iec "$avail")"

if want seqread || want randread; then
    if [[ ! -f $SRC/ro/seq.dat || $(stat -c %s -- "$SRC/ro/seq.dat") != "$SIZE_BYTES" ]]; then
        say "creating $SIZE_H data file"
        rm -f -- "$SRC/ro/seq.dat"
        dd if=/dev/urandom of="$SRC/ro/seq.dat.tmp" bs=1M count="$SIZE_MIB" status=none
        mv -- "$SRC/ro/seq.dat.tmp" "$SRC/ro/seq.dat"
    fi
else
    rm -f -- "$SRC/ro/seq.dat"
fi

if want files; then
    seq -f 'f%08.0f' 1 "$NFILES" >"$CACHE/names.txt"
fi

if want untar || want git; then
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

if want git; then
    if [[ ! -f $CACHE/git.stamp || ! -d $SRC/ro/git-native/.git || ! -d $SRC/ro/git-prismfs/.git ]]; then
        say "making git repositories of the tree"
        rm -rf -- "$SRC/ro/git-native" "$SRC/ro/git-prismfs"
        mkdir -p -- "$SRC/ro/git-native"
        tar -xf "$CACHE/tree.tar" -C "$SRC/ro/git-native"
        unmeasured "${GIT[@]}" -C "$SRC/ro/git-native" init -q
        unmeasured "${GIT[@]}" -C "$SRC/ro/git-native" add -A
        unmeasured "${GIT[@]}" -C "$SRC/ro/git-native" commit -q -m "prismfs bench tree"
        cp -a -- "$SRC/ro/git-native" "$SRC/ro/git-prismfs"
        date >"$CACHE/git.stamp"
    fi
fi
sync

# ------------------------------------------------------------------- run --
do_mount

{
    echo "prismfs benchmark   ratio = native time / prismfs time; 1.00 = native speed (<1 slower, >1 faster)"
    echo "  mode:      $MODE"
    echo "  date:      $(date '+%Y-%m-%d %H:%M:%S %z')   kernel $(uname -r)   cpus $(nproc)"
    echo "  bench dir: $BENCH_DIR ($FSTYPE)"
    if [[ $BENCH_SELFTEST != 1 ]]; then
        ver=$("$PRISMFS_BIN" --version 2>/dev/null | head -n1 || true)
        rev=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "no commit")
        echo "  binary:    $PRISMFS_BIN ${ver:+($ver)} repo $rev"
        echo "  options:   ${PRISMFS_OPTS:-(none)}   daemon pid ${DAEMON_PID:-unknown}"
    fi
    echo "  sizes:     file $SIZE_H, $NFILES small files, tree $TAR_SOURCE ($TREE_FILES entries), randread ${RANDREAD_TIME}s"
    echo "  rounds:    $ROUNDS (median shown)   priming: $([[ $BENCH_PRIME == 1 ]] && echo on || echo off)"
} | tee "$BENCH_DIR/results.txt"

printf 'round\tworkload\tnative_s\tprismfs_s\tratio\tdaemon_cpu_s\n' >"$ROUNDS_TSV"
for (( r = 1; r <= ROUNDS; r++ )); do
  for g in "${GROUPS_RUN[@]}"; do
    read -r -a ids <<<"$(group_ids "$g")"
    prime_group "$g"
    for id in "${ids[@]}"; do
        "wl_$id" native "$SRC";  tn=$T_LAST
        "wl_$id" prismfs "$MNT"; tp=$T_LAST; cpu=$C_LAST
        ratio=$(awk -v n="$tn" -v p="$tp" 'BEGIN { if (p > 0) printf "%.3f", n / p; else print "inf" }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$id" "$tn" "$tp" "$ratio" "$cpu" >>"$ROUNDS_TSV"
        say "$(printf 'round %d/%d  %-28s native %9.4f s  prismfs %9.4f s  ratio %s' \
            "$r" "$ROUNDS" "$(label "$id")" "$tn" "$tp" "$ratio")"
    done
    cleanup_group "$g"
  done
done

# Daemon CPU over the whole run (setup, warm-ups and all), read before unmounting.
cpu_total=$(cpu_ticks)

# ---------------------------------------------------------------- report --
printf 'workload\tnative_s\tprismfs_s\tratio\tdaemon_cpu_s\trounds\n' >"$RESULTS"
for id in "${ORDER[@]}"; do
    awk -F'\t' -v id="$id" -v rounds="$ROUNDS" '
        function median(a, n,   i, j, t) {
            if (n == 0) return "-"
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        NR > 1 && $2 == id {
            nn++; N[nn] = $3 + 0; P[nn] = $4 + 0
            if ($5 != "inf") { nr++; R[nr] = $5 + 0 }
            if ($6 != "-")   { nc++; C[nc] = $6 + 0 }
        }
        END {
            n = median(N, nn); p = median(P, nn); r = median(R, nr); c = median(C, nc)
            printf "%s\t%.6f\t%.6f\t%s\t%s\t%d\n", id, n, p,
                   (r == "-" ? "inf" : sprintf("%.3f", r)), (c == "-" ? "-" : sprintf("%.2f", c)), rounds
        }' "$ROUNDS_TSV" >>"$RESULTS"
done

{
    echo
    printf '%-30s %11s %11s %7s %12s\n' "workload" "native s" "prismfs s" "ratio" "daemon cpu s"
    printf '%-30s %11s %11s %7s %12s\n' "--------" "--------" "---------" "-----" "------------"
    tail -n +2 "$RESULTS" | while IFS=$'\t' read -r id n p ratio cpu _; do
        printf '%-30s %11.4f %11.4f %7s %12s\n' "$(label "$id")" "$n" "$p" \
            "$( [[ $ratio == inf ]] && echo inf || printf '%.2f' "$ratio")" "$cpu"
    done
    echo
    if [[ $BENCH_SELFTEST == 1 ]]; then
        echo "daemon cpu: n/a (self-test, no daemon)"
    elif [[ $cpu_total == "- -" ]]; then
        echo "daemon cpu: unknown (daemon pid not found or gone)"
    else
        awk -v c="$cpu_total" -v hz="$CLK_TCK" -v pid="$DAEMON_PID" 'BEGIN {
            split(c, x, " ");
            printf "daemon cpu (pid %s, whole mount incl. warm-ups): user %.2f s  sys %.2f s  total %.2f s\n",
                   pid, x[1] / hz, x[2] / hz, (x[1] + x[2]) / hz }'
    fi
    if want randread; then
        echo "randread row: fio time_based ${RANDREAD_TIME}s, shown as seconds per 100k 4k reads (its daemon cpu covers the whole ${RANDREAD_TIME}s)"
    fi
    echo "results: $RESULTS (per round: $ROUNDS_TSV)"
} | tee -a "$BENCH_DIR/results.txt"
