"""Layered mounts with metacopy=on: a change of metadata only (chmod,
chown, utimes, xattrs, a rename) of a lower file copies no data — the
upper file is sparse, of the lower's size, with overlay.metacopy (and
overlay.origin; overlay.redirect once it moves) — and the data is copied
at the first open for writing or truncate, in kernel overlayfs's format
(Documentation/filesystems/overlayfs.rst, "Metadata only copy up"), so
that kernel overlayfs (metacopy=on,redirect_dir=on) reads prismfs's upper
the same way and the other way round.

Parity suite (layer_helpers.py): every test runs with each backend.
"""
import os

import pytest
from prism_helpers import cli

from layer_helpers import (Untouched, assert_same, layers, mkfile, ovl, pattern,
                           prismfs_only, pytest_generate_tests, read, snapshot)

assert ovl and layers and pytest_generate_tests  # fixtures and hook used by pytest

BIG = 4 << 20
KOPTS = "metacopy=on,redirect_dir=on"


def mount(o, backend):
    if backend == "prismfs":
        return o.mount(backend, extra=["-o", "metacopy=on"])
    return o.mount(backend, kernel_opts=KOPTS)


def xattr(path, key):
    """overlay.<key> of path, trusted. or user., or None."""
    for pre in ("trusted.overlay.", "user.overlay."):
        try:
            return os.getxattr(path, pre + key, follow_symlinks=False)
        except OSError:
            pass
    return None


def build(o):
    mkfile(o.l1("big"), pattern(BIG, 1), mode=0o644)
    mkfile(o.l2("d/big2"), pattern(BIG, 2), mode=0o644)
    os.makedirs(o.l1("d"), exist_ok=True)
    os.makedirs(o.l1("e"), exist_ok=True)


def assert_metacopy(o, rel, data):
    """The upper file at rel holds no data and says it is a metacopy."""
    st = os.stat(o.u(rel))
    assert xattr(o.u(rel), "metacopy") is not None, "no overlay.metacopy on " + rel
    assert st.st_size == len(data)
    assert st.st_blocks * 512 < 64 << 10, "%s: %d blocks allocated" % (rel, st.st_blocks)


@pytest.mark.parametrize("change", ["chmod", "chown", "utime", "setxattr"])
def test_metadata_change_copies_no_data(ovl, backend, change):
    build(ovl)
    before = Untouched(ovl.L1, ovl.L2)
    mount(ovl, backend)
    m = ovl.m("big")
    if change == "chmod":
        os.chmod(m, 0o600)
    elif change == "chown":
        os.chown(m, 1234, 5678)
    elif change == "utime":
        os.utime(m, ns=(1_000_000_000, 2_000_000_000))
    else:
        os.setxattr(m, "user.k", b"v")
    assert_metacopy(ovl, "big", pattern(BIG, 1))
    st = os.stat(m)
    if change == "chmod":
        assert st.st_mode & 0o7777 == 0o600
    elif change == "chown":
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    elif change == "utime":
        assert st.st_mtime_ns == 2_000_000_000
    else:
        assert os.getxattr(m, "user.k") == b"v"
    assert st.st_size == BIG
    assert st.st_blocks == os.stat(ovl.l1("big")).st_blocks
    assert read(m) == pattern(BIG, 1)
    ovl.umount()
    before.check()


def test_first_write_copies_the_data(ovl, backend):
    build(ovl)
    mount(ovl, backend)
    m = ovl.m("big")
    os.chmod(m, 0o600)
    with open(m, "rb", buffering=0) as r:  # a reader of the lower data, open across the copy
        head = r.read(10)
        with open(m, "r+b") as f:
            f.seek(100)
            f.write(b"XYZ")
        r.seek(0)
        later = r.read(200)
    want = bytearray(pattern(BIG, 1))
    want[100:103] = b"XYZ"
    assert head == bytes(want[:10])
    assert later == bytes(want[:200])
    assert read(m) == bytes(want)
    assert xattr(ovl.u("big"), "metacopy") is None
    assert read(ovl.u("big")) == bytes(want)
    assert os.stat(m).st_mode & 0o7777 == 0o600
    ovl.umount()
    assert read(ovl.l1("big")) == pattern(BIG, 1)


def test_truncate_copies_the_data(ovl, backend):
    build(ovl)
    mount(ovl, backend)
    m = ovl.m("big")
    os.chmod(m, 0o600)
    os.truncate(m, 1000)
    assert read(m) == pattern(BIG, 1)[:1000]
    assert xattr(ovl.u("big"), "metacopy") is None
    ovl.umount()


def test_rename_and_unlink(ovl, backend):
    build(ovl)
    mount(ovl, backend)
    os.chmod(ovl.m("big"), 0o600)
    os.rename(ovl.m("big"), ovl.m("e/moved"))
    os.chmod(ovl.m("d/big2"), 0o640)
    os.rename(ovl.m("d/big2"), ovl.m("d/renamed"))
    assert not os.path.exists(ovl.m("big"))
    assert read(ovl.m("e/moved")) == pattern(BIG, 1)
    assert read(ovl.m("d/renamed")) == pattern(BIG, 2)
    assert_metacopy(ovl, "e/moved", pattern(BIG, 1))
    assert_metacopy(ovl, "d/renamed", pattern(BIG, 2))
    want = snapshot(ovl.M)
    ovl.umount()
    mount(ovl, backend)
    assert_same(want, snapshot(ovl.M), "after a remount")
    os.unlink(ovl.m("e/moved"))
    assert not os.path.exists(ovl.m("e/moved"))
    assert sorted(os.listdir(ovl.m("e"))) == []
    ovl.umount()
    assert read(ovl.l1("big")) == pattern(BIG, 1)


def test_link_copies_no_data(ovl, backend):
    """link(2) to a lower file makes a metadata-only copy-up (the kernel's
    ovl_link), which both names share, with an absolute overlay.redirect
    to its data so that every name finds it; the first write through one
    name copies the data, and the other name sees the write."""
    build(ovl)
    before = Untouched(ovl.L1, ovl.L2)
    mount(ovl, backend)
    os.link(ovl.m("d/big2"), ovl.m("e/linked"))
    for rel in ("d/big2", "e/linked"):
        assert read(ovl.m(rel)) == pattern(BIG, 2), rel
    assert os.stat(ovl.m("d/big2")).st_ino == os.stat(ovl.m("e/linked")).st_ino
    assert_metacopy(ovl, "d/big2", pattern(BIG, 2))
    assert os.stat(ovl.u("d/big2")).st_ino == os.stat(ovl.u("e/linked")).st_ino
    assert xattr(ovl.u("e/linked"), "redirect") == b"/d/big2"
    want = snapshot(ovl.M)
    ovl.umount()
    mount(ovl, backend)
    assert_same(want, snapshot(ovl.M), "after a remount")
    assert read(ovl.m("e/linked")) == pattern(BIG, 2)
    with open(ovl.m("e/linked"), "r+b") as f:
        f.write(b"X")
    assert read(ovl.m("d/big2")) == b"X" + pattern(BIG, 2)[1:]
    assert xattr(ovl.u("d/big2"), "metacopy") is None
    ovl.umount()
    before.check()


def changes(o):
    os.chmod(o.m("big"), 0o600)
    os.chmod(o.m("d/big2"), 0o600)
    os.rename(o.m("d/big2"), o.m("e/moved2"))
    os.utime(o.m("e/moved2"), ns=(3_000_000_000, 4_000_000_000))


def test_upper_read_back_by_the_other(layers, writer, reader):
    """An upper with metacopy files written by one backend shows the same
    tree (metadata and data) under the other."""
    build(layers)
    mount(layers, writer)
    changes(layers)
    want = snapshot(layers.M)
    assert read(layers.m("e/moved2")) == pattern(BIG, 2)
    layers.umount()
    assert_metacopy(layers, "big", pattern(BIG, 1))
    assert_metacopy(layers, "e/moved2", pattern(BIG, 2))
    mount(layers, reader)
    assert_same(want, snapshot(layers.M), "%s's upper read by %s" % (writer, reader))
    assert read(layers.m("big")) == pattern(BIG, 1)
    assert read(layers.m("e/moved2")) == pattern(BIG, 2)
    # ... and the reader writes where the writer left the data below.
    with open(layers.m("e/moved2"), "r+b") as f:
        f.write(b"W")
    assert read(layers.m("e/moved2")) == b"W" + pattern(BIG, 2)[1:]
    layers.umount()


@prismfs_only
@pytest.mark.parametrize("atomic", [False, True], ids=["inplace", "atomic"])
def test_commit_applies_metacopy_files(ovl, backend, atomic):
    """prismfs commit (in place or --atomic) of a prismfs-made metacopy
    upper: the metadata from the upper, the data kept from the lower."""
    mkfile(ovl.l1("big"), pattern(BIG, 1), mode=0o644)
    mount(ovl, backend)
    os.chmod(ovl.m("big"), 0o600)
    os.chown(ovl.m("big"), 1234, 5678)
    ovl.umount()
    assert_metacopy(ovl, "big", pattern(BIG, 1))
    res = cli("commit", "--upper", ovl.U, "--lower", ovl.L1, "--lower", ovl.L2,
              *(["--atomic"] if atomic else []),
              timeout=120)
    assert res.returncode == 0, res.stderr
    st = os.stat(ovl.l1("big"))
    assert st.st_mode & 0o7777 == 0o600 and (st.st_uid, st.st_gid) == (1234, 5678)
    assert read(ovl.l1("big")) == pattern(BIG, 1)


@prismfs_only
@pytest.mark.parametrize("opts", ["metacopy=on,redirect_dir=off", "metacopy=on,redirect_dir=follow"])
def test_metacopy_needs_redirect_dir_on(ovl, backend, opts):
    """As the kernel: metacopy=on conflicts with a redirect_dir= other than
    on (one line, exit 2, nothing mounted or written)."""
    mkfile(ovl.l1("big"), b"x")
    res = cli("mount", "--upper", ovl.U, "--work", ovl.W, "-o", opts, ovl.L1, ovl.M)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "metacopy=on" in lines[0] and "redirect_dir=on" in lines[0], lines
    assert os.listdir(ovl.U) == [] and not os.path.ismount(ovl.M)


def test_metacopy_off_refuses_to_follow(layers, writer, reader):
    """A metacopy upper mounted without metacopy=on: the lookup of a
    metacopy file fails with EPERM, as the kernel's "refusing to follow
    metacopy origin"; other names still show."""
    build(layers)
    mkfile(layers.l1("plain"), b"plain")
    mount(layers, writer)
    os.chmod(layers.m("big"), 0o600)
    layers.umount()
    layers.mount(reader)
    with pytest.raises(PermissionError):
        os.stat(layers.m("big"))
    assert read(layers.m("plain")) == b"plain"
    layers.umount()
