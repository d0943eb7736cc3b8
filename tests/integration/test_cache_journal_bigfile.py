"""A file larger than the memory cache on a mount with --journal DIR
(prismfs mount --mirror --cache-size 8M --cache-max-dirty 4M --journal DIR).

The file is three times the cache. It must be written without ENOSPC, the
cache and the daemon's memory staying within their bounds (--cache-size;
README: the daemon's fixed overhead), and be whole on the mirror after
`prismfs sync` and after unmount. The journal's promise holds for it as
for any file: a kill -9 of the daemon loses no acknowledged write — every
write(2) that returned before the kill, fsync'ed or not, is on the mirror
once the next mount with the same journal has replayed it.
"""
import os
import signal

import pytest

from conftest import Mount
from prism_helpers import cli, status_json, wait_for
from test_cache_bigfile import BIG, CACHE, CHUNK, chunk, digest, expected
from test_cache_bounded import OVERHEAD, rss, sanitized
from test_cache_crash import journal_dirs, tree_mounted


@pytest.fixture
def cd(workdir):
    yield from journal_dirs(workdir)


def start(cd, *args, wb="0", crash=None, source=None):
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}
    if crash:
        env["PRISMFS_TEST_CRASH"] = crash
    m = Mount(source or cd["mirror"], cd["mnt"],
              ["--cache-size", "8M", "--cache-max-dirty", "4M", "--journal", cd["journal"],
               "--write-back", wb, *args, "--mirror"], env=env)
    cd["mounts"].append(m)
    return m.start()


def killed(m):
    """kill -9 of the daemon, and its mount cleared."""
    os.kill(m.pid, signal.SIGKILL)
    assert wait_for(lambda: m.proc.poll() is not None, 20)
    m.kill()


def recover(cd, **kw):
    """The next mount with the journal: replay, sync, clean unmount."""
    m = start(cd, **kw)
    res = cli("sync", cd["mnt"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert m.stop() == 0
    m.check_clean_exit()
    assert not tree_mounted(cd["journal"]), "the journal's tree is left mounted"


def write_chunks(f, lo, hi, mnt=None):
    for i in range(lo, hi):
        assert f.write(chunk(i)) == CHUNK
        if mnt and i % 16 == 15:
            c = status_json(mnt)["cache"]
            assert c["cache_used"] <= c["cache_size"] == CACHE, c


def spill_files(cd):
    d = os.path.join(cd["journal"], "spill")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_a_file_three_times_the_cache_is_written_whole(cd):
    m = start(cd)
    base = rss(m.pid)
    path = os.path.join(cd["mnt"], "big")
    with open(path, "wb", buffering=0) as f:
        write_chunks(f, 0, BIG // CHUNK, cd["mnt"])
        os.fsync(f.fileno())
        assert os.fstat(f.fileno()).st_size == BIG
    want = expected()
    assert digest(os.path.join(cd["mirror"], "big")) == want  # fsync: written back
    assert digest(path) == want
    # The data is on disk, in the journal's directory: the daemon holds
    # none of it (a fixed overhead), the cache none past its size.
    peak = rss(m.pid)
    assert peak - base <= OVERHEAD, (base, peak)
    if not sanitized(m.pid):
        assert peak <= CACHE + OVERHEAD, peak
    res = cli("sync", cd["mnt"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert digest(os.path.join(cd["mirror"], "big")) == want
    assert status_json(cd["mnt"])["cache"]["pending_ops"] == 0
    assert m.stop() == 0
    m.check_clean_exit()
    assert digest(os.path.join(cd["mirror"], "big")) == want
    assert os.listdir(cd["mirror"]) == ["big"]
    assert not tree_mounted(cd["journal"])
    assert spill_files(cd) == []  # nothing is kept once it is on the mirror


@pytest.mark.parametrize("when", ["fsynced-prefix", "all-fsynced", "closed"])
def test_a_kill_loses_no_acknowledged_write_of_a_large_file(cd, when):
    """kill -9: after an fsync'ed prefix and more writes (open), after all
    of it fsync'ed (open), and right after its close (its write-back
    under way or done: a spilled file counts as dirty, so it starts at
    once; the crash points below stop it half-way)."""
    m = start(cd)
    path = os.path.join(cd["mnt"], "big")
    n = BIG // CHUNK
    f = open(path, "wb", buffering=0)
    try:
        if when == "fsynced-prefix":
            write_chunks(f, 0, n // 2)
            os.fsync(f.fileno())
            write_chunks(f, n // 2, n // 2 + 37)  # acknowledged, not fsync'ed
            n = n // 2 + 37
        else:
            write_chunks(f, 0, n)
            if when == "all-fsynced":
                os.fsync(f.fileno())
        if when == "closed-pending":
            f.close()
            assert status_json(cd["mnt"])["cache"]["pending_ops"] >= 1
        killed(m)
    finally:
        if not f.closed:
            try:
                f.close()
            except OSError:
                pass  # the daemon is gone
    assert tree_mounted(cd["journal"]), "the journal's tree went with the daemon"
    recover(cd)
    assert os.path.getsize(os.path.join(cd["mirror"], "big")) == n * CHUNK
    assert digest(os.path.join(cd["mirror"], "big")) == expected(n * CHUNK)
    assert os.listdir(cd["mirror"]) == ["big"]
    assert spill_files(cd) == []


@pytest.mark.parametrize("point", ["journal-recorded-data", "wb-data-tmp"])
def test_a_kill_in_the_write_back_of_a_large_file_is_replayed(cd, point):
    """The daemon kills itself once the file's write-back is recorded and
    not yet applied (at its close), or while the mirror's copy is written
    (written, not yet in place); the next mount replays it from the
    journal's copy of the data."""
    m = start(cd, crash=point)
    path = os.path.join(cd["mnt"], "big")
    try:
        with open(path, "wb", buffering=0) as f:
            write_chunks(f, 0, BIG // CHUNK)
    except OSError:
        pass  # the daemon died before the close was answered
    assert wait_for(lambda: m.proc.poll() is not None, 60), m.stderr()
    assert m.proc.returncode == -signal.SIGKILL, m.stderr()
    m.kill()
    assert tree_mounted(cd["journal"])
    recover(cd)
    assert digest(os.path.join(cd["mirror"], "big")) == expected()
    assert os.listdir(cd["mirror"]) == ["big"]
    assert spill_files(cd) == []


@pytest.mark.parametrize("point", ["spill-copied", "spill-named", "spill-moved"])
def test_a_kill_while_a_file_leaves_memory_loses_nothing(cd, point):
    """The daemon kills itself while the file moves out of memory: its data
    copied to the journal's disk and not yet named there, named and still
    in memory too, or out of memory before the write that moved it. Every
    write answered before is on the mirror after the next mount; the one
    in flight may be there or not."""
    m = start(cd, crash=point)
    path = os.path.join(cd["mnt"], "big")
    done = 0
    f = open(path, "wb", buffering=0)
    try:
        for i in range(BIG // CHUNK):
            f.write(chunk(i))
            done = i + 1
    except OSError:
        pass  # the daemon died in the middle of this write
    finally:
        try:
            f.close()
        except OSError:
            pass
    assert 0 < done < BIG // CHUNK, done
    assert wait_for(lambda: m.proc.poll() is not None, 20), m.stderr()
    assert m.proc.returncode == -signal.SIGKILL, m.stderr()
    m.kill()
    recover(cd)
    got = digest(os.path.join(cd["mirror"], "big"))
    assert got in (expected(done * CHUNK), expected((done + 1) * CHUNK)), done
    assert spill_files(cd) == []
