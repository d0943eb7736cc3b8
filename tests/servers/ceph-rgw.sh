#!/usr/bin/env bash
# ceph-rgw.sh - throwaway single-node Ceph RADOS Gateway (S3) on 127.0.0.1, for
# prismfs's S3 mirror tests (tests/integration/s3server.py starts one per session).
# Ceph's RGW is the real S3 server Debian 12 packages (MinIO, Garage are not in it).
#
#   ceph-rgw.sh start DIR PORT   -> prints S3_ENDPOINT/S3_ACCESS_KEY/S3_SECRET_KEY/S3_REGION
#                                   as shell assignments on stdout (eval-able); returns
#                                   once a SigV4-signed S3 request succeeds.
#   ceph-rgw.sh stop DIR         -> stops the daemons started for DIR (by pid file), rm -rf DIR
#
# One ceph-mon + one ceph-osd (memstore, i.e. RAM only) + one radosgw (beast), cephx off,
# everything (config, data, sockets, logs, pid files) under DIR. Needs root.
# Debian 12 packages: ceph-mon ceph-osd ceph-common radosgw curl, installed here if missing
# (not by scripts/setup.sh: their postinst scripts would start services; a policy-rc.d
# forbids that while they install).
# Env overrides: CEPH_RGW_ACCESS_KEY, CEPH_RGW_SECRET_KEY, CEPH_RGW_MEM_BYTES (memstore size,
# default 2 GiB), CEPH_RGW_TIMEOUT (seconds for the whole start, default 120),
# CEPH_RGW_THREADS (rgw thread pool size, default 64), CEPH_RGW_STOP_GRACE (s, default 0).
set -euo pipefail
unset CEPH_ARGS CEPH_CONF || true

PKGS=(ceph-mon ceph-osd ceph-common radosgw curl)
BINS=(ceph-mon ceph-osd ceph monmaptool radosgw radosgw-admin curl)

die() { echo "ceph-rgw.sh: ERROR: $*" >&2; exit 1; }
log() { echo "ceph-rgw.sh: $*" >&2; }

ensure_packages() {
  local missing=0 b
  for b in "${BINS[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
  [ "$missing" = 0 ] && return 0
  log "installing ${PKGS[*]} (apt-get)..."
  # policy-rc.d: forbid any service start during package installation.
  local prc=/usr/sbin/policy-rc.d bak=""
  if [ -e "$prc" ]; then bak=$(mktemp /tmp/policy-rc.d.bak.XXXXXX); cp -p "$prc" "$bak"; fi
  printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"
  local rc=0
  {
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${PKGS[@]}" >&2 ||
      { apt-get -o DPkg::Lock::Timeout=600 update -q >&2 &&
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${PKGS[@]}" >&2; }
  } || rc=$?
  if [ -n "$bak" ]; then mv -f "$bak" "$prc"; else rm -f "$prc"; fi
  [ "$rc" = 0 ] || die "apt-get install ${PKGS[*]} failed (rc=$rc)"
  for b in "${BINS[@]}"; do command -v "$b" >/dev/null 2>&1 || die "$b still missing after install"; done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stop the daemons whose pid files are in DIR/run -- only pids whose command line contains
# DIR/ceph.conf (so a recycled pid is never touched). All data is throwaway, so: SIGTERM to
# all, grace period (CEPH_RGW_STOP_GRACE, default 0 s: a clean exit takes 4-5 s, memstore even dumps
# its RAM contents to DIR), then
# SIGKILL the rest and wait (up to 10 s) until they are really gone.
is_running() { # true if pid exists and is not a zombie (PID 1 here may reap late)
  local st; st=$( { awk '/^State:/{print $2}' "/proc/$1/status"; } 2>/dev/null || true)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
kill_daemons() {
  local dir=$1 pf pid cmdline i alive pids=()
  [ -d "$dir/run" ] || return 0
  for pf in "$dir"/run/*.pid; do
    [ -f "$pf" ] || continue
    pid=$(cat "$pf" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    cmdline=$( { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null || true)
    [[ "$cmdline" == *"$dir/ceph.conf"* ]] || continue
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local grace=${CEPH_RGW_STOP_GRACE:-0}
  for i in $(seq 1 $(( grace * 10 ))) kill $(seq 1 100); do
    alive=()
    for pid in "${pids[@]}"; do is_running "$pid" && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && return 0
    if [ "$i" = kill ]; then kill -KILL "${alive[@]}" 2>/dev/null || true; continue; fi
    sleep 0.1
  done
  log "WARNING: pids ${alive[*]} still present after SIGKILL"; return 1
}

s3curl() { # signed request; curl 7.88 needs an explicit x-amz-content-sha256 header for RGW
  curl -s --max-time 10 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" \
       -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

cmd_start() {
  local dir=${1:?usage: start DIR PORT} port=${2:?usage: start DIR PORT}
  [ "$(id -u)" = 0 ] || die "must run as root"
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65000 ] || die "bad PORT '$port'"
  ensure_packages
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  [ -z "$(ls -A "$dir")" ] || die "DIR $dir is not empty (stop it first: $0 stop $dir)"
  [ ${#dir} -le 60 ] || die "DIR path too long for unix admin sockets (<= 60 chars): $dir"
  port_busy "$port" && die "port $port on 127.0.0.1 already in use"
  local monport="" p
  for p in $(seq $((port + 1)) $((port + 200))); do port_busy "$p" || { monport=$p; break; }; done
  [ -n "$monport" ] || die "no free port for ceph-mon near $port"

  # interrupted while starting (Ctrl-C, test-harness timeout): leave nothing running
  trap 'trap - INT TERM; log "interrupted; stopping daemons of $dir"; kill_daemons "$dir" || true; exit 130' INT TERM
  local deadline=$(( $(date +%s) + ${CEPH_RGW_TIMEOUT:-120} ))
  local r1 r2; r1=$(head -c 600 /dev/urandom | tr -dc 'A-Z0-9'); r2=$(head -c 600 /dev/urandom | tr -dc 'A-Za-z0-9')
  AK=${CEPH_RGW_ACCESS_KEY:-${r1:0:20}}
  SK=${CEPH_RGW_SECRET_KEY:-${r2:0:40}}
  local fsid; fsid=$(cat /proc/sys/kernel/random/uuid)
  mkdir -p "$dir"/{run,log,mon,osd/ceph-0,rgw}
  cat > "$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$monport
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
# no cephx; radosgw defaults ms_mon_client_mode=secure which is impossible with
# auth 'none' (-> "get_initial_auth_request returned -13"), so force crc mode.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
ms mon service mode = crc
ms service mode = crc
ms cluster mode = crc
client mount timeout = 30
run dir = $dir/run
admin socket = $dir/run/\$cluster-\$name.asok
pid file = $dir/run/\$cluster-\$name.pid
log file = $dir/log/\$cluster-\$name.log
log to stderr = false
err to stderr = false
mon cluster log file = $dir/log/ceph.log
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
keyring = $dir/keyring
mon data avail warn = 1
mon data avail crit = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = ${CEPH_RGW_MEM_BYTES:-2147483648}
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw data = $dir/rgw
rgw init timeout = 60
rgw enable usage log = false
rgw thread pool size = ${CEPH_RGW_THREADS:-64}
EOF
  local C="$dir/ceph.conf"
  fail() { # report, show logs, stop whatever was started; keep DIR for inspection
    log "start failed: $*"
    local f; for f in "$dir"/log/*.log "$dir"/*.out; do
      [ -s "$f" ] && { echo "---- tail $f" >&2; tail -n 15 "$f" >&2; }
    done
    kill_daemons "$dir" || log "WARNING: could not stop all daemons of $dir"
    die "$* (logs kept in $dir; run '$0 stop $dir' to remove)"
  }
  left() { local l=$(( deadline - $(date +%s) )); [ $l -gt 1 ] && echo $l || echo 1; }

  timeout 20 monmaptool --create --add a "v2:127.0.0.1:$monport" --fsid "$fsid" "$dir/monmap" \
    > "$dir/setup.out" 2>&1 || fail "monmaptool failed"
  timeout 30 ceph-mon -c "$C" --mkfs -i a --monmap "$dir/monmap" >> "$dir/setup.out" 2>&1 || fail "ceph-mon --mkfs failed"
  timeout 30 ceph-mon -c "$C" -i a >> "$dir/setup.out" 2>&1 || fail "ceph-mon did not start"
  local id; id=$(timeout "$(left)" ceph -c "$C" --connect-timeout 30 osd create 2>>"$dir/setup.out") ||
    fail "mon not reachable ('ceph osd create' failed)"
  [ "$id" = 0 ] || fail "unexpected osd id '$id'"
  timeout 60 ceph-osd -c "$C" -i 0 --mkfs >> "$dir/setup.out" 2>&1 || fail "ceph-osd --mkfs failed"
  timeout 30 ceph-osd -c "$C" -i 0 >> "$dir/setup.out" 2>&1 || fail "ceph-osd did not start"
  until [[ "$(timeout 10 ceph -c "$C" --connect-timeout 5 osd stat 2>/dev/null || true)" == *"1 up"* ]]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timeout waiting for osd.0 up"
    sleep 0.3
  done
  timeout "$(left)" radosgw -c "$C" -n client.rgw.a >> "$dir/setup.out" 2>&1 || fail "radosgw did not start"
  until [ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "http://127.0.0.1:$port/")" = 200 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timeout waiting for radosgw on 127.0.0.1:$port"
    sleep 0.3
  done
  timeout "$(left)" radosgw-admin -c "$C" user create --uid t --display-name t \
    --access-key "$AK" --secret "$SK" > "$dir/user.json" 2>>"$dir/setup.out" || fail "radosgw-admin user create failed"
  until [ "$(s3curl -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" = 200 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timeout waiting for a signed S3 request to succeed"
    sleep 0.3
  done
  cat > "$dir/env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$port
S3_ACCESS_KEY=$AK
S3_SECRET_KEY=$SK
S3_REGION=us-east-1
EOF
  trap - INT TERM
  cat "$dir/env"
}

cmd_stop() {
  local dir=${1:?usage: stop DIR}
  [ -d "$dir" ] || { log "$dir does not exist; nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/ceph.conf" ] || die "$dir has no ceph.conf; refusing to remove it"
  kill_daemons "$dir" || die "some daemons of $dir could not be stopped; $dir kept"
  rm -rf -- "$dir"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop)  shift; cmd_stop "$@" ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
