"""The memory cache writes a closed file back before the caller's next call
(prismfs mount --mirror M, no journal).

close(2) of a file written through the mount returns only once its data is
queued for the mirror, so a call made after it — a rename or unlink of that
file, the write of another, a mkdir — reaches the mirror after that data,
over /dev/fuse as over FUSE over io_uring (where the kernel sends RELEASE
after close(2) has returned, and another queue may take the next call
first). The daemon is killed (SIGKILL) at crash points of the write-back;
the mirror must then be in a state the mount went through: the reference
as it was after some prefix of the calls, a file written being empty
after its open, then whole. A file larger than the memory cache leaves
memory while it is written (after its descriptor was closed once in a
child): what was queued before must never show other data than the file
had.

Run with PRISMFS_TEST_URING=on (kernel enable_uring=Y) too.
"""
import hashlib
import os
import subprocess
import sys

import pytest

from prism_helpers import cli
from test_cache_crash import (DEAD, apply_op, cd, copy_tree, diff, died, partial_states,  # noqa: F401
                              prefix_states, recover, run_workload, snapshot, start)


def round_ops(r):
    """A file written and closed, each time followed at once by a call on
    it or another one."""
    a, b, c, d, e = ("r%d_%s" % (r, x) for x in "abcde")
    return [
        {"k": "write", "a": a, "data": "%s;" % a * 500},
        {"k": "rename", "a": a, "b": b},
        {"k": "write", "a": c, "data": "%s;" % c * 30},
        {"k": "unlink", "a": b},
        {"k": "write", "a": d, "data": "%s;" % d * 2000},
        {"k": "mkdir", "a": e},
        {"k": "write", "a": e + "/f", "data": "f%d;" % r * 100},
        {"k": "rename", "a": c, "b": e + "/c"},
    ]


WORKLOAD = [op for r in range(8) for op in round_ops(r)]


def assert_a_state_of_the_calls(cd, m, point, inflight, states):
    got = snapshot(cd["mirror"], skip_temporaries=True)
    cands = prefix_states(states, WORKLOAD[:len(states) - 1])
    if inflight:  # the call in flight, whole or in part
        for upto in partial_states(inflight):
            copy_tree(cd["ref"], cd["scratch"])
            apply_op(cd["scratch"], inflight, upto=upto)
            cands.append(snapshot(cd["scratch"]))
    nearest = min(cands, key=lambda c: len(diff(got, c).splitlines()))
    assert got in cands, ("after a kill at %s the mirror is in no state the calls went "
                          "through; nearest:\n%s" % (point, diff(got, nearest)))


@pytest.mark.parametrize("point", ["wb-applied-rename:3", "wb-apply-rename:6",
                                   "wb-applied-rename:9", "wb-applied-unlink:4",
                                   "wb-applied-mkdir:5", "wb-applied-create:11",
                                   "wb-applied-create:20", "wb-applied-data:13"])
def test_a_file_closed_reaches_the_mirror_before_the_next_call(cd, point):
    m = start(cd, crash=point, journal=False)
    keep = []
    inflight, states = run_workload(cd, m, WORKLOAD, keep)
    if inflight is None:  # the worker has not reached it yet: make it
        cli("sync", cd["mnt"], timeout=60)
    died(m)
    assert_a_state_of_the_calls(cd, m, point, inflight, states)


def test_without_a_kill_the_mirror_ends_as_the_calls_left_it(cd):
    m = start(cd, journal=False)
    inflight, states = run_workload(cd, m, WORKLOAD, [])
    assert inflight is None
    res = cli("sync", cd["mnt"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert snapshot(cd["mirror"]) == states[-1]
    assert m.stop() == 0
    m.check_clean_exit()
    assert snapshot(cd["mirror"]) == states[-1]


# ----------------------------------------------------------------------
# a file that leaves memory while it is written

MiB = 1 << 20
CHUNK = 128 * 1024
BIG = 12 * MiB  # the cache is 8M: past half of it, the file leaves memory


def chunk(i):
    block = (b"%08d." % i) * 16
    return (block * (CHUNK // len(block) + 1))[:CHUNK]


def whole_chunks(data):
    """How many chunks data is, each whole and in place (None: something
    else — zeros, a chunk cut or out of place)."""
    if len(data) % CHUNK:
        return None
    for i in range(len(data) // CHUNK):
        if data[i * CHUNK:(i + 1) * CHUNK] != chunk(i):
            return None
    return len(data) // CHUNK


@pytest.mark.parametrize("point", ["wb-applied-data:1", "wb-applied-rename:1"])
def test_a_large_file_closed_in_a_child_then_moved_out_of_memory(cd, point):
    # --write-back 1: what is queued waits, so the file leaves memory
    # before the data queued at the child's close is written back.
    m = start(cd, "--cache-size", "8M", crash=point, journal=False, wb="1")
    path = os.path.join(cd["mnt"], "big")
    try:
        with open(path, "wb", buffering=0) as f:
            for i in range(BIG // CHUNK):
                assert f.write(chunk(i)) == CHUNK
                if i == 15:
                    # A child closes its copy of the descriptor.
                    subprocess.run([sys.executable, "-c", "pass"], pass_fds=[f.fileno()],
                                   check=True)
                    # A name changed since: what was queued is not merged
                    # with what comes later.
                    os.mkdir(os.path.join(cd["mnt"], "d"))
                    os.rename(os.path.join(cd["mnt"], "d"), os.path.join(cd["mnt"], "e"))
        os.rename(path, os.path.join(cd["mnt"], "big2"))
        cli("sync", cd["mnt"], timeout=120)
    except OSError as e:
        assert e.errno in DEAD, e  # the daemon died in the middle of a call
    died(m)
    names = sorted(os.listdir(cd["mirror"]))
    files = [n for n in names if n.startswith("big")]
    assert files in (["big"], ["big2"]), names
    with open(os.path.join(cd["mirror"], files[0]), "rb") as f:
        data = f.read()
    n = whole_chunks(data)
    assert n is not None, "the mirror's %s (%d bytes) is no state of the file: %s" % (
        files[0], len(data), hashlib.sha256(data).hexdigest())
    # Renamed after it was closed: whole by then.
    if files == ["big2"]:
        assert n == BIG // CHUNK, n


def test_a_file_closed_then_removed_cut_short_in_its_write_back_leaves_nothing(cd):
    # With a journal: the data queued at close is being written back (its
    # temporary written, not renamed) when the daemon dies, and the file
    # was unlinked meanwhile; the replay writes nothing of it and leaves no
    # temporary behind. --write-back 1: the unlink is acknowledged before
    # the write-back begins.
    m = start(cd, crash="wb-data-tmp:1", wb="1")
    os.mkdir(os.path.join(cd["mnt"], "d"))
    with open(os.path.join(cd["mnt"], "d", "f"), "wb") as f:
        f.write(b"data of f\n" * 100)
    os.unlink(os.path.join(cd["mnt"], "d", "f"))
    with open(os.path.join(cd["mnt"], "d", "g"), "wb") as f:
        f.write(b"g\n")
    died(m)
    recover(cd)
    assert snapshot(cd["mirror"]) == ({"d": ("dir", 0o755), "d/g": ("file", 0o644, b"g\n")},
                                      [])
