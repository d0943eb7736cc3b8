#!/usr/bin/env bash
# Build prismfs: build/ (normal) and, with --asan, build-asan/ (ASan + UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."

build() { # dir [meson options...]
	local dir=$1; shift
	local out
	# Quiet on success; on failure show what meson or the compiler said.
	if [ ! -f "$dir/build.ninja" ]; then
		out=$(meson setup "$dir" "$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
	fi
	out=$(ninja -C "$dir" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

build build
if [ "${1:-}" = "--asan" ]; then
	build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
fi
