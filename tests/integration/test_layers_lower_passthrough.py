"""--lower-passthrough: lower files read by kernel passthrough (issue 18).

By default a lower file opened read-only is read through the daemon, so a
copy-up can move the descriptor to the upper copy, as kernel overlayfs
(since 4.19) makes read(2) on such a descriptor see the copy
(test_layers_copyup.test_open_read_fd_follows_copy_up,
test_layers_passthrough).  With --lower-passthrough the kernel reads the
lower file itself; a copy-up then leaves the descriptors opened before it
on the lower data, as overlayfs leaves a MAP_SHARED mapping made before a
copy-up (overlayfs.rst, "Non-standard behavior"), and opens made after it
read the copy.  The mapping case is checked against the kernel; the rest
against the real files in the layers.  Without kernel passthrough the
option changes nothing: the descriptor follows the copy-up.
"""
import mmap
import os

import pytest

from layer_helpers import T0, mkfile, ovl, prismfs_only, pytest_generate_tests, read
from prism_helpers import cli, status_json, wait_released

assert ovl and pytest_generate_tests  # fixture and hook used by pytest

LOWER_PT = ("--lower-passthrough",)


def mount(ovl):
    """Mount ovl: prismfs with --lower-passthrough, the kernel as it is."""
    return ovl.mount(extra=LOWER_PT if ovl.backend == "prismfs" else ())


def kernel_reads_lower(ovl):
    """prismfs: is kernel passthrough in use (else the option is inert)?"""
    st = status_json(ovl.M)
    assert st["layers"]["lower_passthrough"] is True, st["layers"]
    return st["data_path"] == "kernel passthrough"


def test_mapping_made_before_copy_up_keeps_lower_data(ovl):
    """A MAP_SHARED mapping of a lower file, made read-only before another
    descriptor's write copies the file up, keeps showing the lower data;
    a read-only open made after the copy-up reads the copy, and the lower
    file is unchanged (overlayfs.rst, "Non-standard behavior")."""
    mkfile(ovl.l1("f"), b"lower data, one page" + b"." * 4076, mtime_ns=T0)
    mount(ovl)
    if ovl.backend == "prismfs" and not kernel_reads_lower(ovl):
        pytest.skip("no kernel passthrough: --lower-passthrough changes nothing")
    rfd = os.open(ovl.m("f"), os.O_RDONLY)
    try:
        with mmap.mmap(rfd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as mm:
            assert mm[:10] == b"lower data"
            with open(ovl.m("f"), "r+b") as w:
                w.write(b"UPPER")
            assert mm[:10] == b"lower data", "the mapping made before the copy-up"
            with open(ovl.m("f"), "rb") as f:
                assert f.read(10) == b"UPPER data"
    finally:
        os.close(rfd)
    assert read(ovl.l1("f")).startswith(b"lower data")
    assert read(ovl.u("f")).startswith(b"UPPER data")


@prismfs_only
def test_read_fd_opened_before_copy_up_stays_below(ovl):
    """prismfs only (the kernel moves such a descriptor): a read-only
    descriptor of a lower file is served by kernel passthrough (a backing
    id, no READ through the daemon); after another descriptor copies the
    file up and writes it, it still reads the lower data, with the same
    st_ino, while a new open reads the copy. The lower file never changes,
    and once every descriptor is closed the copy is read by passthrough
    like any upper file."""
    mkfile(ovl.l2("f"), b"old data, fairly long", mtime_ns=T0)
    mount(ovl)
    pt = kernel_reads_lower(ovl)
    rfd = os.open(ovl.m("f"), os.O_RDONLY)
    try:
        assert status_json(ovl.M)["backing_ids_open"] == (1 if pt else 0)
        assert os.pread(rfd, 100, 0) == b"old data, fairly long"
        ino = os.fstat(rfd).st_ino
        wfd = os.open(ovl.m("f"), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(wfd, b"new")
        finally:
            os.close(wfd)
        # Without passthrough the option is inert: as the kernel's.
        want = b"old data, fairly long" if pt else b"new"
        assert os.pread(rfd, 100, 0) == want
        assert os.read(rfd, 100) == want  # file offset still 0
        assert os.fstat(rfd).st_ino == ino
        with open(ovl.m("f"), "rb") as f:
            assert f.read() == b"new"
            assert os.fstat(f.fileno()).st_ino == ino
    finally:
        os.close(rfd)
    assert read(ovl.l2("f")) == b"old data, fairly long"
    assert read(ovl.u("f")) == b"new"
    assert wait_released(ovl.M)["backing_ids_open"] == 0
    fd = os.open(ovl.m("f"), os.O_RDONLY)
    try:
        assert status_json(ovl.M)["backing_ids_open"] == (1 if pt else 0)
        assert os.pread(fd, 100, 0) == b"new"
    finally:
        os.close(fd)


@prismfs_only
def test_metacopy_reader_stays_below_until_data_copy_up(ovl):
    """prismfs only: with -o metacopy=on a change of metadata copies no
    data, so a passthrough reader of the lower data reads on as before
    (and a new open shares its backing); the first write copies the data
    up, after which the old descriptor reads the lower data and a new one
    the copy."""
    mkfile(ovl.l1("f"), b"lower bytes", mtime_ns=T0)
    ovl.mount(extra=LOWER_PT + ("-o", "metacopy=on"))
    pt = kernel_reads_lower(ovl)
    rfd = os.open(ovl.m("f"), os.O_RDONLY)
    try:
        os.chmod(ovl.m("f"), 0o600)
        assert os.path.exists(ovl.u("f")), "chmod copied the metadata up"
        with open(ovl.m("f"), "rb") as f:
            assert f.read() == b"lower bytes"
            assert status_json(ovl.M)["backing_ids_open"] == (1 if pt else 0)
        assert os.pread(rfd, 100, 0) == b"lower bytes"
        with open(ovl.m("f"), "r+b") as w:
            w.write(b"UPPER")
        assert os.pread(rfd, 100, 0) == (b"lower bytes" if pt else b"UPPER bytes")
        with open(ovl.m("f"), "rb") as f:
            assert f.read() == b"UPPER bytes"
    finally:
        os.close(rfd)
    assert read(ovl.l1("f")) == b"lower bytes"
    assert read(ovl.u("f")) == b"UPPER bytes"
    assert os.stat(ovl.m("f")).st_mode & 0o777 == 0o600


@prismfs_only
def test_truncate_of_path_while_read_below(ovl):
    """prismfs only: truncate(2) of the name copies the file up and
    truncates the copy (as the kernel's); a passthrough reader opened
    before keeps the lower data, a new open sees the empty copy."""
    mkfile(ovl.l1("f"), b"0123456789", mtime_ns=T0)
    mount(ovl)
    pt = kernel_reads_lower(ovl)
    rfd = os.open(ovl.m("f"), os.O_RDONLY)
    try:
        os.truncate(ovl.m("f"), 4)
        assert os.pread(rfd, 100, 0) == (b"0123456789" if pt else b"0123")
        assert os.stat(ovl.m("f")).st_size == 4
        assert read(ovl.m("f")) == b"0123"
    finally:
        os.close(rfd)
    assert read(ovl.l1("f")) == b"0123456789"
    assert read(ovl.u("f")) == b"0123"


@pytest.mark.parametrize("args", [[], ["--lower", "L2"]])
def test_refused_without_upper(tmp_path, args):
    """Only an upper can copy up: on a plain mount or a read-only merge of
    lowers the option is refused (exit 2), nothing is mounted."""
    for d in ("L1", "L2", "M"):
        (tmp_path / d).mkdir()
    extra = [str(tmp_path / a) if a == "L2" else a for a in args]
    res = cli("mount", "--lower-passthrough", *extra, str(tmp_path / "L1"), str(tmp_path / "M"),
              timeout=30)
    assert res.returncode == 2, res
    assert "--lower-passthrough" in res.stderr and "upper" in res.stderr, res.stderr
    assert not os.path.ismount(tmp_path / "M")
