#!/usr/bin/env bash
# Build prismfs: build/ (normal) and, with --asan, build-asan/ (ASan +
# UBSan); with --variants also the builds packagers make (see README,
# "Packaging"), each in a directory of its own: build-release (-O3),
# build-plain (no flags of meson's), build-clang, build-sanitize (ASan +
# UBSan at the default -O2). Every build here fails on a warning (--werror);
# meson.build does not force that, since distributions build with other
# compilers and flags.
set -euo pipefail
cd "$(dirname "$0")/.."

asan=false variants=false
for a in "$@"; do
	case $a in
	--asan) asan=true ;;
	--variants) variants=true ;;
	*) echo "usage: $0 [--asan] [--variants]" >&2; exit 2 ;;
	esac
done

# A UBSan finding ends the program, whatever UBSAN_OPTIONS says (GCC's
# -fsanitize=undefined would print it and go on).
no_recover=-Dc_args=-fno-sanitize-recover=undefined

build() { # dir [meson options...]; the compiler is $CC, if set
	local dir=$1; shift
	local want="${CC:+CC=$CC }meson setup $dir $*" out
	# Quiet on success; on failure show what meson or the compiler said.
	# A directory set up with other options (or none of these, by an
	# older script) is set up again: the options are part of the check.
	if [ ! -f "$dir/build.ninja" ]; then
		out=$(meson setup "$dir" "$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
	elif [ "$(cat "$dir/prismfs-setup" 2>/dev/null)" != "$want" ]; then
		out=$(meson setup --wipe "$dir" "$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
	fi
	printf '%s\n' "$want" >"$dir/prismfs-setup"
	out=$(ninja -C "$dir" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

build build --werror
if $asan; then
	build build-asan --werror -Db_sanitize=address,undefined -Db_lundef=false "$no_recover" \
		-Dbuildtype=debug
fi
if $variants; then
	build build-release --werror --buildtype=release
	build build-plain --werror --buildtype=plain
	CC=clang build build-clang --werror
	build build-sanitize --werror -Db_sanitize=address,undefined "$no_recover"
fi
