#!/usr/bin/env bash
# Install what prismfs needs to build and test on Debian 12 (run as root).
set -euo pipefail

PKGS=(gcc libc6-dev meson ninja-build pkg-config libfuse3-dev fuse3 libjansson-dev libarchive-dev liburing-dev
      libcmocka-dev python3 python3-pytest python3-pytest-timeout fio attr git util-linux passwd
      clang libclang-rt-14-dev
      e2fsprogs xfsprogs acl scdoc man-db)

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
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# FUSE needs its device; containers sometimes lack the node.
[ -e /dev/fuse ] || { modprobe fuse 2>/dev/null || true; }
[ -e /dev/fuse ] || { echo "prismfs setup: /dev/fuse is missing" >&2; exit 1; }
