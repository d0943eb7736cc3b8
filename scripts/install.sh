#!/usr/bin/env bash
# Build prismfs and install it as /usr/local/bin/prismfs, where the shell and
# mount(8) find it: `mount -t fuse.prismfs -o lowerdir=...,upperdir=... none
# MNT` and the same line in /etc/fstab. Safe to run again. Run as root.
# DESTDIR=/some/dir stages the install there instead (for packaging).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DESTDIR:-}

if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
	echo "prismfs install: run as root (or set DESTDIR)" >&2
	exit 1
fi
./scripts/build.sh
out=$(meson install -C build --no-rebuild 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
bin=$dest/usr/local/bin/prismfs
[ -x "$bin" ] || { echo "prismfs install: $bin is missing after meson install" >&2; exit 1; }

# mount -t fuse.prismfs runs /sbin/mount.fuse.prismfs if there is one, else
# /sbin/mount.fuse -t fuse.prismfs (libmount looks for helpers in /sbin,
# /sbin/fs.d and /sbin/fs only). Debian's fuse3 package ships /sbin/mount.fuse
# as a link to mount.fuse3; where it is missing, make the type's own link.
helper=
for h in /sbin/mount.fuse3 /usr/sbin/mount.fuse3; do
	if [ -x "$h" ]; then helper=$h; break; fi
done
if [ -z "$helper" ]; then
	echo "prismfs install: no mount.fuse3 (package fuse3): mount(8) cannot start prismfs" >&2
	exit 1
fi
if [ ! -e "$dest/sbin/mount.fuse.prismfs" ] && [ ! -e "$dest/sbin/mount.fuse" ]; then
	mkdir -p "$dest/sbin"
	ln -s "$helper" "$dest/sbin/mount.fuse.prismfs"
	echo "prismfs install: linked $dest/sbin/mount.fuse.prismfs -> $helper"
fi

# mount.fuse3 starts `sh -c 'prismfs none MNT -o ...'` in mount(8)'s
# environment, which has no PATH: the shell's default path must reach it.
if [ -z "$dest" ]; then
	found=$(env -i /bin/sh -c 'command -v prismfs' || true)
	if [ "$found" != "$bin" ]; then
		echo "prismfs install: mount(8) would start '${found:-nothing}', not $bin" >&2
		exit 1
	fi
fi

# man prismfs: meson installed the pages under the program's prefix
# (/usr/local/share/man, on man's default path; Debian's /usr/local/man links
# to it), when the build made them (it needs scdoc, which setup.sh installs).
if [ -f build/man/prismfs.1 ]; then
	page=$dest/usr/local/share/man/man1/prismfs.1
	[ -f "$page" ] || { echo "prismfs install: $page is missing after meson install" >&2; exit 1; }
	if [ -z "$dest" ] && command -v man >/dev/null; then
		found=$(man -w prismfs 2>/dev/null || true)
		if [ -z "$found" ] || ! [ "$found" -ef "$page" ]; then
			echo "prismfs install: man prismfs would show '${found:-nothing}', not $page" >&2
			exit 1
		fi
	fi
else
	echo "prismfs install: no man pages (scdoc is not installed; scripts/setup.sh installs it)"
fi
echo "prismfs install: $bin ($("$bin" --version))"
