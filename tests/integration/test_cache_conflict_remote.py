"""A WebDAV mirror (Apache, nginx) after a file changed on the server behind
the mount (README: conflicts): the mount's later changes by name act on its
conflict copy, never on the server's file, and a change the mount never saw
is neither removed nor given the mount's mode (counted as a conflict)."""
import os
import stat
import time

from prism_helpers import status_json
from test_cache import read, write
from test_cache_remote import cached, dav, give_to_server, mnt, sync  # noqa: F401


def changed_behind(dav, mnt, mounter):
    write(os.path.join(dav.root, "f"), "base")
    give_to_server(dav.root)
    cached(mounter, dav.url + "/", mnt)
    assert read(os.path.join(mnt, "f")) == "base"  # loaded: the cache's base
    write(os.path.join(dav.root, "f"), "theirs, longer")
    t = time.time() + 5
    os.utime(os.path.join(dav.root, "f"), (t, t))


def copies(root):
    return sorted(n for n in os.listdir(root) if n.startswith("f.prismfs-conflict-"))


def test_after_a_conflict_unlink_and_rename_act_on_the_copy(dav, mnt, mounter):
    changed_behind(dav, mnt, mounter)
    write(os.path.join(mnt, "f"), "mine")
    sync(mnt)
    assert len(copies(dav.root)) == 1
    os.rename(os.path.join(mnt, "f"), os.path.join(mnt, "g"))
    sync(mnt)
    assert read(os.path.join(dav.root, "f")) == "theirs, longer"
    assert read(os.path.join(dav.root, "g")) == "mine"
    assert copies(dav.root) == []
    os.unlink(os.path.join(mnt, "g"))
    sync(mnt)
    assert read(os.path.join(dav.root, "f")) == "theirs, longer"
    assert not os.path.exists(os.path.join(dav.root, "g"))
    assert status_json(mnt)["cache"]["conflicts"] == 1


def test_an_unlink_keeps_a_change_the_mount_never_saw(dav, mnt, mounter):
    changed_behind(dav, mnt, mounter)
    os.unlink(os.path.join(mnt, "f"))
    sync(mnt)
    assert read(os.path.join(dav.root, "f")) == "theirs, longer"
    st = status_json(mnt)["cache"]
    assert st["conflicts"] == 1 and "f" in st["last_conflict"], st


def test_a_file_loaded_in_its_first_second_is_not_taken_for_changed(dav, mnt, mounter):
    """Apache answers a weak ETag (W/...) for a second after a file changes
    and a strong one after: a file the mount loaded in that second is the
    same file a second later, and the mount's unlink, rename and chmod of
    it must reach the server, with no conflict."""
    for n in ("gone", "moved", "moded"):
        write(os.path.join(dav.root, n), "the server's " + n)
    give_to_server(dav.root)
    cached(mounter, dav.url + "/", mnt)
    for n in ("gone", "moved", "moded"):  # loaded within the file's first second
        assert read(os.path.join(mnt, n)) == "the server's " + n
    time.sleep(1.5)  # the server's ETags turn strong
    os.unlink(os.path.join(mnt, "gone"))
    os.rename(os.path.join(mnt, "moved"), os.path.join(mnt, "renamed"))
    os.chmod(os.path.join(mnt, "moded"), 0o600)
    sync(mnt)
    names = sorted(os.listdir(dav.root))
    assert [n for n in names if "prismfs-conflict" in n] == []
    assert "gone" not in names and "moved" not in names
    assert read(os.path.join(dav.root, "renamed")) == "the server's moved"
    assert status_json(mnt)["cache"]["conflicts"] == 0
