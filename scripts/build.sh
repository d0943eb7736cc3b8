#!/usr/bin/env bash
# Build prismfs: build/ (normal) and, with --asan, build-asan/ (ASan + UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."

build() { # dir [meson options...]
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir" >/dev/null
}

build build
if [ "${1:-}" = "--asan" ]; then
	build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
fi
