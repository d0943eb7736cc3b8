#!/usr/bin/env bash
# Install what prismfs needs to build and test on Debian 12 (run as root).
set -euo pipefail

PKGS=(gcc libc6-dev meson ninja-build pkg-config libfuse3-dev fuse3 libjansson-dev libarchive-dev liburing-dev
      libcmocka-dev python3 python3-pytest python3-pytest-timeout fio attr git util-linux passwd
      clang libclang-rt-14-dev
      e2fsprogs xfsprogs acl scdoc man-db
      libcurl4-openssl-dev libxml2-dev apache2-bin nginx-light libnginx-mod-http-dav-ext rclone)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "prismfs setup: run as root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "prismfs setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# nginx's package starts a system nginx on port 80 at install; the
	# tests run their own servers, so forbid service starts (invoke-rc.d
	# policy 101) for the install, and put back what was there after.
	rcd=/usr/sbin/policy-rc.d saved=""
	if [ -e "$rcd" ]; then saved=$(mktemp); cp -p "$rcd" "$saved"; fi
	restore_rcd() { if [ -n "$saved" ]; then mv -f "$saved" "$rcd"; else rm -f "$rcd"; fi; }
	trap restore_rcd EXIT
	printf '#!/bin/sh\nexit 101\n' >"$rcd"
	chmod 755 "$rcd"
	apt-get install -y -qq "${missing[@]}" >/dev/null
	restore_rcd
	trap - EXIT
fi
# FUSE needs its device; containers sometimes lack the node.
[ -e /dev/fuse ] || { modprobe fuse 2>/dev/null || true; }
[ -e /dev/fuse ] || { echo "prismfs setup: /dev/fuse is missing" >&2; exit 1; }
