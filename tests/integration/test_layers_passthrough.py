"""Layered mounts and the data path (issue 5, item 8).

Files in the upper use kernel passthrough when it is active: the daemon
holds a backing id while they are open and never sees their reads and
writes.  A lower file is read through the daemon (kernel page cache kept),
so that a copy-up can move its open descriptors to the upper copy, as
kernel overlayfs reopens the real file under its open files; once its
last such open is closed, the copied-up file is on passthrough again.
Every check is made against real files in the upper and lower directories.
"""
import os

import pytest

from conftest import PASSTHROUGH
from prism_helpers import status_json as status, wait_released


@pytest.fixture
def layered(workdir, mounter):
    d = {k: os.path.join(workdir, k) for k in ("lower", "upper", "work", "mnt")}
    for p in d.values():
        os.makedirs(p)
    with open(os.path.join(d["lower"], "low"), "wb") as f:
        f.write(b"L" * 8192)
    with open(os.path.join(d["upper"], "up"), "wb") as f:
        f.write(b"U" * 8192)
    mounter(d["lower"], d["mnt"], "--upper", d["upper"], "--work", d["work"])
    return d


def pt_active(mnt):
    st = status(mnt)
    if PASSTHROUGH == "on":
        assert st["data_path"] == "kernel passthrough", st
    elif PASSTHROUGH == "off":
        assert st["data_path"] == "daemon", st
    return st["data_path"] == "kernel passthrough"


def test_upper_files_use_passthrough(layered):
    mnt = layered["mnt"]
    pt = pt_active(mnt)
    fd = os.open(os.path.join(mnt, "up"), os.O_RDWR)
    try:
        held = status(mnt)["backing_ids_open"]
        assert held == (1 if pt else 0), held
        os.pwrite(fd, b"xy", 10)
        assert os.pread(fd, 4, 9) == b"UxyU"
    finally:
        os.close(fd)
    with open(os.path.join(layered["upper"], "up"), "rb") as f:
        assert f.read()[8:14] == b"UUxyUU"
    assert wait_released(mnt)["backing_ids_open"] == 0


def test_lower_file_copied_up_on_write_then_passthrough(layered):
    mnt, p = layered["mnt"], os.path.join(layered["mnt"], "low")
    pt = pt_active(mnt)
    rfd = os.open(p, os.O_RDONLY)
    try:
        # Read through the daemon while it is a lower file.
        assert status(mnt)["backing_ids_open"] == 0
        assert os.pread(rfd, 4, 0) == b"LLLL"
        with open(p, "r+b") as w:
            w.seek(100)
            w.write(b"new")
        # The read descriptor follows the copy-up, as on overlayfs.
        assert os.pread(rfd, 5, 99) == b"Lnew" + b"L"
    finally:
        os.close(rfd)
    with open(os.path.join(layered["lower"], "low"), "rb") as f:
        assert f.read() == b"L" * 8192, "the lower file changed"
    with open(os.path.join(layered["upper"], "low"), "rb") as f:
        assert f.read(103)[99:] == b"Lnew"
    # All opens closed (and released): the copy is an upper file like any other.
    wait_released(mnt)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert status(mnt)["backing_ids_open"] == (1 if pt else 0)
        assert os.pread(fd, 3, 100) == b"new"
    finally:
        os.close(fd)


def test_created_file_uses_passthrough(layered):
    mnt = layered["mnt"]
    pt = pt_active(mnt)
    fd = os.open(os.path.join(mnt, "fresh"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        assert status(mnt)["backing_ids_open"] == (1 if pt else 0)
        os.write(fd, b"hello")
    finally:
        os.close(fd)
    with open(os.path.join(layered["upper"], "fresh"), "rb") as f:
        assert f.read() == b"hello"
    assert not os.path.exists(os.path.join(layered["lower"], "fresh"))
