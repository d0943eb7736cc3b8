"""What a cached mount does after a file changed on the mirror behind it
(prismfs mount --mirror M; README: conflicts).

Once a write-back found the mirror's file changed since the cache loaded
it, the mount's version lives beside it as NAME.prismfs-conflict-STAMP and
NAME is the other party's file. Every later change the mount makes to that
file by its name — chmod, utimes, xattrs, truncate, write, rename, unlink —
must act on the mount's copy, never on the other party's file. A change
made behind the mount that the mount never saw is never destroyed nor
changed without being recorded as a conflict (`prismfs status`:
cache.conflicts, cache.last_conflict). The same holds for the journal's
replay after a kill -9 (--journal): the mirror's file changed while the
daemon was dead, or before it died, is kept.
"""
import os
import stat

import pytest

from prism_helpers import cli, status_json
from test_cache_behind import conflict_copies as copies, read, sync
from test_cache_crash import cd, died, start  # noqa: F401


def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def conflicts(mnt):
    return status_json(mnt)["cache"]


def conflicted(cd, journal=False, **kw):
    """doc loaded by the mount, changed on the mirror, then written through
    the mount: its write-back kept the mirror's and wrote the mount's beside.
    Returns the mount and the copy's path."""
    write(os.path.join(cd["mirror"], "doc"), "original")
    m = start(cd, journal=journal, **kw)
    assert read(os.path.join(cd["mnt"], "doc")) == "original"   # loaded: its base
    write(os.path.join(cd["mirror"], "doc"), "changed behind the mount")
    write(os.path.join(cd["mnt"], "doc"), "changed in the mount")
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "doc")) == "changed behind the mount"
    kept = copies(cd["mirror"], "doc")
    assert len(kept) == 1, os.listdir(cd["mirror"])
    assert read(os.path.join(cd["mirror"], kept[0])) == "changed in the mount"
    assert conflicts(cd["mnt"])["conflicts"] == 1
    return m, os.path.join(cd["mirror"], kept[0])


def untouched(cd):
    st = os.stat(os.path.join(cd["mirror"], "doc"))
    assert read(os.path.join(cd["mirror"], "doc")) == "changed behind the mount"
    return st


# ---------------------------------------------------------------------------
# after a conflict: the mount's later changes go to its copy

@pytest.mark.parametrize("journal", [False, True])
def test_a_removal_after_a_conflict_removes_the_mounts_copy_only(cd, journal):
    m, copy = conflicted(cd, journal)
    os.unlink(os.path.join(cd["mnt"], "doc"))
    sync(cd["mnt"])
    untouched(cd)
    assert not os.path.exists(copy)
    assert sorted(os.listdir(cd["mirror"])) == ["doc"]
    assert m.stop() == 0
    m.check_clean_exit()


def test_metadata_changes_after_a_conflict_go_to_the_copy(cd):
    m, copy = conflicted(cd)
    before = os.stat(os.path.join(cd["mirror"], "doc"))
    p = os.path.join(cd["mnt"], "doc")
    os.chmod(p, 0o600)
    os.utime(p, ns=(1_000_000_000, 2_000_000_000))
    os.setxattr(p, "user.mine", b"mount")
    sync(cd["mnt"])
    after = untouched(cd)
    assert stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode)
    assert after.st_mtime_ns == before.st_mtime_ns
    assert "user.mine" not in os.listxattr(os.path.join(cd["mirror"], "doc"))
    c = os.stat(copy)
    assert stat.S_IMODE(c.st_mode) == 0o600 and c.st_mtime_ns == 2_000_000_000
    assert os.getxattr(copy, "user.mine") == b"mount"
    os.removexattr(p, "user.mine")
    sync(cd["mnt"])
    assert "user.mine" not in os.listxattr(copy)
    assert m.stop() == 0


def test_a_truncate_after_a_conflict_goes_to_the_copy(cd):
    m, copy = conflicted(cd)
    os.truncate(os.path.join(cd["mnt"], "doc"), 7)
    sync(cd["mnt"])
    untouched(cd)
    assert read(copy) == "changed"
    assert conflicts(cd["mnt"])["conflicts"] == 1
    assert m.stop() == 0


@pytest.mark.parametrize("journal", [False, True])
def test_a_rename_after_a_conflict_moves_the_mounts_copy(cd, journal):
    m, copy = conflicted(cd, journal)
    os.rename(os.path.join(cd["mnt"], "doc"), os.path.join(cd["mnt"], "moved"))
    sync(cd["mnt"])
    untouched(cd)
    assert read(os.path.join(cd["mirror"], "moved")) == "changed in the mount"
    assert sorted(os.listdir(cd["mirror"])) == ["doc", "moved"]
    # It is the mount's own file at its own name now: written over, no conflict.
    write(os.path.join(cd["mnt"], "moved"), "again")
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "moved")) == "again"
    assert sorted(os.listdir(cd["mirror"])) == ["doc", "moved"]
    assert conflicts(cd["mnt"])["conflicts"] == 1
    assert m.stop() == 0
    m.check_clean_exit()


@pytest.mark.parametrize("journal", [False, True])
def test_after_a_clean_remount_the_copy_is_a_file_of_its_own(cd, journal):
    """The link between the mount's file and its conflict copy lives in the
    daemon (and the journal while changes wait): the next mount after a
    clean unmount shows the mirror as it is, doc the other party's and the
    copy a file of its own, each changed by its own name, no conflict."""
    m, copy = conflicted(cd, journal)
    assert m.stop() == 0
    m = start(cd, journal=journal)
    name = os.path.basename(copy)
    assert sorted(os.listdir(cd["mnt"])) == ["doc", name]
    assert read(os.path.join(cd["mnt"], "doc")) == "changed behind the mount"
    assert read(os.path.join(cd["mnt"], name)) == "changed in the mount"
    write(os.path.join(cd["mnt"], "doc"), "doc after the remount")
    write(os.path.join(cd["mnt"], name), "the copy after the remount")
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "doc")) == "doc after the remount"
    assert read(copy) == "the copy after the remount"
    assert sorted(os.listdir(cd["mirror"])) == ["doc", name]
    assert conflicts(cd["mnt"])["conflicts"] == 0
    assert m.stop() == 0
    m.check_clean_exit()


def test_a_hard_link_after_a_conflict_links_the_copy(cd):
    m, copy = conflicted(cd)
    os.link(os.path.join(cd["mnt"], "doc"), os.path.join(cd["mnt"], "other"))
    sync(cd["mnt"])
    untouched(cd)
    assert read(os.path.join(cd["mirror"], "other")) == "changed in the mount"
    assert os.stat(os.path.join(cd["mirror"], "other")).st_ino == os.stat(copy).st_ino
    assert m.stop() == 0


# ---------------------------------------------------------------------------
# a change behind the mount that the mount never saw

def changed_unseen(cd, journal=False, **kw):
    write(os.path.join(cd["mirror"], "doc"), "original")
    m = start(cd, journal=journal, **kw)
    assert read(os.path.join(cd["mnt"], "doc")) == "original"   # loaded: its base
    write(os.path.join(cd["mirror"], "doc"), "changed behind the mount")
    return m


@pytest.mark.parametrize("journal", [False, True])
def test_a_removal_in_the_mount_keeps_a_change_made_behind_it(cd, journal):
    m = changed_unseen(cd, journal)
    os.unlink(os.path.join(cd["mnt"], "doc"))
    sync(cd["mnt"])
    untouched(cd)
    c = conflicts(cd["mnt"])
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c
    assert m.stop() == 0
    m.check_clean_exit()


def test_a_chmod_in_the_mount_does_not_change_a_file_changed_behind_it(cd):
    m = changed_unseen(cd)
    before = os.stat(os.path.join(cd["mirror"], "doc"))
    os.chmod(os.path.join(cd["mnt"], "doc"), 0o600)
    os.setxattr(os.path.join(cd["mnt"], "doc"), "user.mine", b"mount")
    sync(cd["mnt"])
    after = untouched(cd)
    assert stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode)
    assert "user.mine" not in os.listxattr(os.path.join(cd["mirror"], "doc"))
    c = conflicts(cd["mnt"])
    assert c["conflicts"] >= 1 and "doc" in c["last_conflict"], c
    assert m.stop() == 0


def test_a_rename_in_the_mount_keeps_a_change_made_behind_it(cd):
    m = changed_unseen(cd)
    os.rename(os.path.join(cd["mnt"], "doc"), os.path.join(cd["mnt"], "moved"))
    sync(cd["mnt"])
    # The mirror's version moved with the name, not lost, and said.
    assert read(os.path.join(cd["mirror"], "moved")) == "changed behind the mount"
    c = conflicts(cd["mnt"])
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c
    # A later write through the mount keeps it too.
    write(os.path.join(cd["mnt"], "moved"), "through the mount")
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "moved")) == "changed behind the mount"
    kept = copies(cd["mirror"], "moved")
    assert len(kept) == 1 and read(os.path.join(cd["mirror"], kept[0])) == \
        "through the mount", os.listdir(cd["mirror"])
    assert m.stop() == 0


@pytest.mark.parametrize("journal", [False, True])
def test_a_rename_over_a_file_changed_behind_the_mount_keeps_it(cd, journal):
    """rename(2) over doc replaces the mount's doc; the mirror's doc, changed
    behind the mount, is kept under a conflict name."""
    m = changed_unseen(cd, journal)
    write(os.path.join(cd["mnt"], "new"), "from the mount")
    os.rename(os.path.join(cd["mnt"], "new"), os.path.join(cd["mnt"], "doc"))
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "doc")) == "from the mount"
    kept = copies(cd["mirror"], "doc")
    assert len(kept) == 1, os.listdir(cd["mirror"])
    assert read(os.path.join(cd["mirror"], kept[0])) == "changed behind the mount"
    c = conflicts(cd["mnt"])
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c
    assert m.stop() == 0


def test_a_rename_over_a_file_after_its_conflict_keeps_the_other_partys(cd):
    m, copy = conflicted(cd)
    write(os.path.join(cd["mnt"], "new"), "from the mount")
    os.rename(os.path.join(cd["mnt"], "new"), os.path.join(cd["mnt"], "doc"))
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "doc")) == "from the mount"
    # The mount's replaced file (its copy) is gone; the other party's kept.
    kept = copies(cd["mirror"], "doc")
    assert [read(os.path.join(cd["mirror"], k)) for k in kept] == \
        ["changed behind the mount"], os.listdir(cd["mirror"])
    assert m.stop() == 0


# ---------------------------------------------------------------------------
# --journal: the replay after a kill -9 keeps the same rule

def test_a_replayed_write_keeps_a_change_made_behind_the_mount(cd):
    """Killed before the write-back of a file whose mirror copy changed
    after the cache loaded it: the replay must not write over it."""
    m = changed_unseen(cd, journal=True, crash="wb-apply-data:1", wb="600")
    write(os.path.join(cd["mnt"], "doc"), "changed in the mount")
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    m = start(cd)
    sync(cd["mnt"])
    untouched(cd)
    kept = copies(cd["mirror"], "doc")
    assert len(kept) == 1, os.listdir(cd["mirror"])
    assert read(os.path.join(cd["mirror"], kept[0])) == "changed in the mount"
    c = conflicts(cd["mnt"])
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c
    assert m.stop() == 0
    m.check_clean_exit()


def test_a_replay_keeps_a_change_made_while_the_daemon_was_dead(cd):
    """The mirror's file changed after the kill, before the replay."""
    write(os.path.join(cd["mirror"], "doc"), "original")
    m = start(cd, crash="wb-apply-data:1", wb="600")
    assert read(os.path.join(cd["mnt"], "doc")) == "original"
    write(os.path.join(cd["mnt"], "doc"), "changed in the mount")
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    write(os.path.join(cd["mirror"], "doc"), "changed behind the mount")
    m = start(cd)
    sync(cd["mnt"])
    untouched(cd)
    kept = copies(cd["mirror"], "doc")
    assert len(kept) == 1, os.listdir(cd["mirror"])
    assert read(os.path.join(cd["mirror"], kept[0])) == "changed in the mount"
    assert m.stop() == 0


@pytest.mark.parametrize("kind", ["unlink", "rename", "attr"])
def test_a_replay_after_a_conflict_acts_on_the_copy(cd, kind):
    """A conflict before the kill; the mount's change by name after it is
    replayed: on the mount's copy, never on the other party's file."""
    m, copy = conflicted(cd, journal=True, crash="wb-apply-%s:1" % kind, wb="600")
    p = os.path.join(cd["mnt"], "doc")
    if kind == "unlink":
        os.unlink(p)
    elif kind == "rename":
        os.rename(p, os.path.join(cd["mnt"], "moved"))
    else:
        os.chmod(p, 0o600)
    # (pending until the sync, which the kill cuts off)
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    before = os.stat(os.path.join(cd["mirror"], "doc"))
    m = start(cd)
    sync(cd["mnt"])
    after = untouched(cd)
    assert stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode)
    if kind == "unlink":
        assert sorted(os.listdir(cd["mirror"])) == ["doc"]
    elif kind == "rename":
        assert sorted(os.listdir(cd["mirror"])) == ["doc", "moved"]
        assert read(os.path.join(cd["mirror"], "moved")) == "changed in the mount"
    else:
        assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert m.stop() == 0
    m.check_clean_exit()


@pytest.mark.parametrize("kind", ["unlink", "rename-over"])
def test_a_replay_keeps_a_change_the_mount_never_saw(cd, kind):
    """Loaded, changed on the mirror, then removed or replaced by a rename
    through the mount; killed before that reached the mirror."""
    point = "wb-apply-unlink:1" if kind == "unlink" else "wb-apply-rename:1"
    m = changed_unseen(cd, journal=True, crash=point, wb="600")
    if kind == "unlink":
        os.unlink(os.path.join(cd["mnt"], "doc"))
    else:
        write(os.path.join(cd["mnt"], "new"), "from the mount")
        os.rename(os.path.join(cd["mnt"], "new"), os.path.join(cd["mnt"], "doc"))
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    m = start(cd)
    sync(cd["mnt"])
    if kind == "unlink":
        untouched(cd)
    else:
        assert read(os.path.join(cd["mirror"], "doc")) == "from the mount"
        kept = copies(cd["mirror"], "doc")
        assert [read(os.path.join(cd["mirror"], k)) for k in kept] == \
            ["changed behind the mount"], os.listdir(cd["mirror"])
    c = conflicts(cd["mnt"])
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c
    assert m.stop() == 0
    m.check_clean_exit()


# ---------------------------------------------------------------------------
# a file the mount listed but never read

def changed_unread(cd, journal=False, **kw):
    write(os.path.join(cd["mirror"], "doc"), "original")
    write(os.path.join(cd["mirror"], "plain"), "unchanged")
    m = start(cd, journal=journal, **kw)
    assert sorted(os.listdir(cd["mnt"])) == ["doc", "plain"]   # listed, not read
    write(os.path.join(cd["mirror"], "doc"), "changed behind the mount")
    return m


@pytest.mark.parametrize("journal", [False, True])
def test_an_unread_file_changed_behind_the_mount_is_not_removed(cd, journal):
    m = changed_unread(cd, journal)
    os.unlink(os.path.join(cd["mnt"], "doc"))
    os.unlink(os.path.join(cd["mnt"], "plain"))   # unchanged: removed
    sync(cd["mnt"])
    untouched(cd)
    assert sorted(os.listdir(cd["mirror"])) == ["doc"]
    c = conflicts(cd["mnt"])
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c
    assert m.stop() == 0
    m.check_clean_exit()


def test_an_unread_file_changed_behind_the_mount_is_not_replaced(cd):
    m = changed_unread(cd)
    os.rename(os.path.join(cd["mnt"], "plain"), os.path.join(cd["mnt"], "doc"))
    sync(cd["mnt"])
    assert read(os.path.join(cd["mirror"], "doc")) == "unchanged"
    kept = copies(cd["mirror"], "doc")
    assert [read(os.path.join(cd["mirror"], k)) for k in kept] == \
        ["changed behind the mount"], os.listdir(cd["mirror"])
    assert m.stop() == 0


def test_a_replayed_unlink_keeps_an_unread_file_changed_behind_the_mount(cd):
    m = changed_unread(cd, journal=True, crash="wb-apply-unlink:1", wb="600")
    os.unlink(os.path.join(cd["mnt"], "doc"))
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    m = start(cd)
    sync(cd["mnt"])
    untouched(cd)
    c = conflicts(cd["mnt"])
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c
    assert m.stop() == 0


@pytest.mark.parametrize("kind", ["attr", "unlink"])
def test_a_replay_after_the_mounts_own_write_is_no_conflict(cd, kind):
    """A write through the mount, then a chmod (or, of another file
    written too, an unlink), both pending; killed after the write reached
    the mirror, before the second op: the replay finds the mirror's file
    changed — by the mount's own write — which is no change behind it."""
    write(os.path.join(cd["mirror"], "doc"), "original")
    m = start(cd, crash="wb-apply-%s:1" % kind, wb="600")
    assert read(os.path.join(cd["mnt"], "doc")) == "original"   # loaded
    write(os.path.join(cd["mnt"], "doc"), "changed in the mount")
    if kind == "attr":
        os.chmod(os.path.join(cd["mnt"], "doc"), 0o600)
    else:
        fd = os.open(os.path.join(cd["mnt"], "doc"), os.O_WRONLY | os.O_APPEND)
        os.write(fd, b", again")
        os.close(fd)
        os.unlink(os.path.join(cd["mnt"], "doc"))
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    m = start(cd)
    sync(cd["mnt"])
    if kind == "attr":
        assert read(os.path.join(cd["mirror"], "doc")) == "changed in the mount"
        assert stat.S_IMODE(os.stat(os.path.join(cd["mirror"], "doc")).st_mode) == 0o600
    assert sorted(os.listdir(cd["mirror"])) == (["doc"] if kind == "attr" else [])
    assert conflicts(cd["mnt"])["conflicts"] == 0
    assert m.stop() == 0
    m.check_clean_exit()
