"""Live path mappings and the data path: a file reached through a mapping
(an exact entry or a graft) still moves its data by kernel passthrough when
passthrough is active (backing ids are held while it is open), and through
the daemon with --passthrough off (no backing ids)."""
import json
import os

import pytest

from conftest import PASSTHROUGH
from map_helpers import make_mapped, mkdirs, read_file, status_json, write_file
from prism_helpers import wait_released


@pytest.fixture
def mapped(workdir, mounter):
    ext = mkdirs(os.path.join(workdir, "ext"))
    write_file(os.path.join(ext, "e1"), "ext1\n")
    m = make_mapped(workdir, mounter, {"/alias": {"target": "a"}, "/graft": {"target": ext},
                                       "/ro": {"target": "a", "readonly": True}},
                    populate=lambda s: write_file(os.path.join(s, "a"), "A" * 5000))
    m.ext = ext
    return m


def expect_passthrough(st):
    if PASSTHROUGH == "on":
        assert st["data_path"] == "kernel passthrough", st
        return True
    if PASSTHROUGH == "off":
        assert st["data_path"] == "daemon", st
        return False
    return st["data_path"] == "kernel passthrough"


def test_mapped_files_use_the_active_data_path(mapped):
    m = mapped
    st = status_json(m.mnt)
    pt = expect_passthrough(st)
    assert st["backing_ids_open"] == 0, st
    fds = [os.open(m.p("alias"), os.O_RDONLY), os.open(m.p("graft", "e1"), os.O_RDWR),
           os.open(m.p("ro"), os.O_RDONLY)]
    try:
        held = status_json(m.mnt)["backing_ids_open"]
        if pt:
            assert held > 0, "mapped files are open but no backing id is held: %d" % held
        else:
            assert held == 0, "--passthrough off but %d backing ids are open" % held
        assert os.pread(fds[0], 10, 4990) == b"A" * 10
        os.pwrite(fds[1], b"EXT", 0)
        assert read_file(os.path.join(m.ext, "e1")) == "EXT1\n"
        assert os.pread(fds[1], 5, 0) == b"EXT1\n"
        assert os.pread(fds[2], 3, 0) == b"AAA"
    finally:
        for fd in fds:
            os.close(fd)
    assert wait_released(m.mnt)["backing_ids_open"] == 0


def test_created_file_in_a_graft_uses_the_data_path(mapped):
    m = mapped
    pt = expect_passthrough(status_json(m.mnt))
    fd = os.open(m.p("graft", "new"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        held = status_json(m.mnt)["backing_ids_open"]
        assert (held > 0) if pt else (held == 0), (pt, held)
        os.write(fd, b"x" * 100000)
    finally:
        os.close(fd)
    assert os.path.getsize(os.path.join(m.ext, "new")) == 100000
    assert wait_released(m.mnt)["backing_ids_open"] == 0


def test_passthrough_data_of_mapped_files_bypasses_the_daemon(workdir, mounter):
    """With passthrough, reads and writes through a mapped name do not reach
    the daemon (its log has opens but no read/write)."""
    log = os.path.join(workdir, "ops.jsonl")
    m = make_mapped(workdir, mounter, {"/alias": {"target": "a"}},
                    "--log", log, "--log-format", "json",
                    populate=lambda s: write_file(os.path.join(s, "a"), "A" * 5000))
    pt = expect_passthrough(status_json(m.mnt))
    with open(m.p("alias"), "r+b") as f:
        assert f.read() == b"A" * 5000
        f.seek(0)
        f.write(b"B" * 10)
    assert read_file(m.s("a"))[:12] == "B" * 10 + "AA"
    m.mount.stop()
    m.mount.check_clean_exit()
    with open(log) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    ops = [r.get("op") for r in recs]
    assert "open" in ops, ops
    if pt:
        assert "read" not in ops and "write" not in ops, ops
    else:
        assert "read" in ops and "write" in ops, ops
