"""A name made on the mirror behind the mount is never written over by a
file created under it through the mount (prismfs mount --mirror M).

The cache listed the directory before the name appeared on the mirror, so
a create through the mount succeeds (O_EXCL: the name is free in the view).
Its write-back finds the name taken: the mirror's file must stay as it is,
and the mount's file is kept beside it as NAME.prismfs-conflict-STAMP, as
for a file changed behind the mount (README: conflicts), counted in
`prismfs status`. A create the write-back itself made before a kill -9
(--journal) is its own work when replayed: no conflict.
"""
import os

import pytest

from prism_helpers import cli, status_json
from test_cache_crash import cd, died, start  # noqa: F401


def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def read(path):
    with open(path) as f:
        return f.read()


def conflict_copies(d, name):
    return sorted(n for n in os.listdir(d) if n.startswith(name + ".prismfs-conflict-"))


def sync(mnt):
    res = cli("sync", mnt, timeout=60)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("journal", [False, True])
def test_a_name_made_behind_the_mount_is_not_overwritten_by_a_create(cd, journal):
    os.makedirs(os.path.join(cd["mirror"], "d"))
    m = start(cd, journal=journal)
    assert os.listdir(os.path.join(cd["mnt"], "d")) == []   # listed by the cache
    write(os.path.join(cd["mirror"], "d/new"), "made behind the mount")
    write(os.path.join(cd["mnt"], "d/new"), "created through the mount")
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "d/new")) == "made behind the mount"
    kept = conflict_copies(os.path.join(cd["mirror"], "d"), "new")
    assert len(kept) == 1, os.listdir(os.path.join(cd["mirror"], "d"))
    assert read(os.path.join(cd["mirror"], "d", kept[0])) == "created through the mount"
    c = status_json(cd["mnt"])["cache"]
    assert c["conflicts"] == 1 and "d/new" in c["last_conflict"], c
    # Later write-backs of that file go to the same copy.
    write(os.path.join(cd["mnt"], "d/new"), "again", os.O_WRONLY | os.O_TRUNC)
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "d/new")) == "made behind the mount"
    assert conflict_copies(os.path.join(cd["mirror"], "d"), "new") == kept
    assert read(os.path.join(cd["mirror"], "d", kept[0])) == "again"
    assert m.stop() == 0
    m.check_clean_exit()


@pytest.mark.parametrize("still_open", [False, True])
def test_a_create_replayed_after_a_kill_is_not_a_conflict(cd, still_open):
    """Killed after the create reached the mirror, before the journal
    counted it: the replay finds the name taken by its own file. Closed,
    the file goes with its data in one apply; still open, its create goes
    alone."""
    m = start(cd, crash="wb-applied-create:1", wb="600")  # pending until the sync
    fd = os.open(os.path.join(cd["mnt"], "a"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"file a\n" * 100)
    if not still_open:
        os.close(fd)
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    if still_open:
        try:
            os.close(fd)
        except OSError:  # the mount is gone with its daemon
            pass
    m = start(cd)
    sync(cd["mnt"])
    assert status_json(cd["mnt"])["cache"]["conflicts"] == 0
    assert m.stop() == 0
    m.check_clean_exit()
    assert sorted(os.listdir(cd["mirror"])) == ["a"]
    assert read(os.path.join(cd["mirror"], "a")) == "file a\n" * 100


def test_a_name_made_behind_the_mount_while_the_daemon_was_dead_is_kept(cd):
    """Killed before the create reached the mirror; meanwhile the name is
    made on the mirror: the replay keeps both."""
    m = start(cd, crash="wb-apply-create:1", wb="600")  # pending until the sync
    write(os.path.join(cd["mnt"], "f"), "through the mount")
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    write(os.path.join(cd["mirror"], "f"), "made while the daemon was dead")
    m = start(cd)
    sync(cd["mnt"])
    assert m.stop() == 0
    m.check_clean_exit()
    assert read(os.path.join(cd["mirror"], "f")) == "made while the daemon was dead"
    kept = conflict_copies(cd["mirror"], "f")
    assert len(kept) == 1, os.listdir(cd["mirror"])
    assert read(os.path.join(cd["mirror"], kept[0])) == "through the mount"
