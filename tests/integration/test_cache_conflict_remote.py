"""A remote mirror (WebDAV: Apache, nginx; S3: Ceph RGW) after a file
changed on the server behind the mount (README: conflicts): the mount's
later changes by name act on its conflict copy, never on the server's
file, and a change the mount never saw — the file loaded or only listed —
is neither removed, replaced by a rename over it, nor given the mount's
mode (kept, counted as a conflict), live or replayed from the journal."""
import os
import signal
import stat
import time

import pytest

from davservers import dav_server
from prism_helpers import cli, status_json, wait_for
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



def test_a_file_with_an_mtime_ahead_of_the_servers_clock_is_not_taken_for_changed(
        dav, mnt, mounter):
    """A file dated in the future (clock skew, an archive) that nothing
    changed on the server: the mount's write of it replaces it, no
    conflict. (Apache's GET says Last-Modified: now for it, its PROPFIND
    the file's own date, with one ETag for both.)"""
    p = os.path.join(dav.root, "ahead")
    write(p, "dated ahead")
    t = time.time() + 3600
    os.utime(p, (t, t))
    give_to_server(dav.root)
    cached(mounter, dav.url + "/", mnt)
    assert read(os.path.join(mnt, "ahead")) == "dated ahead"
    write(os.path.join(mnt, "ahead"), "written by the mount")
    sync(mnt)
    st = status_json(mnt)["cache"]
    assert read(p) == "written by the mount", (st["conflicts"], st["last_conflict"])
    assert sorted(os.listdir(dav.root)) in (["ahead"], [".DAV", "ahead"])
    assert st["conflicts"] == 0

# ---------------------------------------------------------------------------
# Renames over, and unlinks of, a file changed on the server behind the
# mount — loaded or only listed — on every server the tests start: the
# server's changed file is never replaced nor removed silently (README:
# conflicts; the same rules as a local mirror, test_cache_conflict.py).

class DavServer:
    """A WebDAV server the test changes behind the mount through its
    directory."""

    def __init__(self, s):
        self.s = s

    def mount(self, mounter, mnt, *args, env=None):
        return mounter(self.s.url + "/", mnt, *args, "--mirror", env=env)

    def put(self, name, data):
        p = os.path.join(self.s.root, name)
        existed = os.path.exists(p)
        write(p, data)
        if existed:  # a later change: its mtime differs for sure (in the
            t = time.time() - 5  # past: Apache's Last-Modified is never
            os.utime(p, (t, t))  # later than now, its PROPFIND's is)
        give_to_server(self.s.root)

    def get(self, name):
        return read(os.path.join(self.s.root, name))

    def names(self):
        return sorted(n for n in os.listdir(self.s.root) if n != ".DAV")


class S3Bucket:
    """A Ceph RGW bucket, changed behind the mount with curl's own SigV4."""

    def __init__(self, srv, bucket):
        self.srv, self.bucket = srv, bucket

    def mount(self, mounter, mnt, *args, env=None):
        e = dict(AWS_ACCESS_KEY_ID=self.srv.access_key,
                 AWS_SECRET_ACCESS_KEY=self.srv.secret_key, HOME="/nonexistent")
        e.update(env or {})
        return mounter("s3://%s/pfx" % self.bucket, mnt, "--s3-endpoint", self.srv.endpoint,
                       "--s3-region", self.srv.region, *args, "--mirror", env=e)

    def put(self, name, data):
        self.srv.curl("-X", "PUT", "--data-binary", data,
                      "%s/%s/pfx/%s" % (self.srv.endpoint, self.bucket, name))

    def get(self, name):
        from test_remote_s3 import get
        return get(self.srv, self.bucket, "pfx/" + name).decode()

    def names(self):
        from test_remote_s3 import list_v2
        keys, _, _ = list_v2(self.srv, self.bucket, "pfx/")
        return sorted(k[len("pfx/"):] for k, _ in keys if not k.endswith("/"))


@pytest.fixture(params=["apache", "nginx", "s3"])
def server(request):
    if request.param == "s3":
        yield S3Bucket(request.getfixturevalue("s3server"),
                       request.getfixturevalue("s3bucket"))
        return
    with dav_server(request.param) as s:
        yield DavServer(s)


def copies_of(server, name):
    return [n for n in server.names() if n.startswith(name + ".prismfs-conflict-")]


def conflict_said(mnt, name, n=1):
    st = status_json(mnt)["cache"]
    assert st["conflicts"] == n and name in st["last_conflict"], st


def loaded_then_changed(server, mnt, mounter, *args):
    server.put("f", "base")
    m = server.mount(mounter, mnt, *args)
    assert read(os.path.join(mnt, "f")) == "base"  # loaded: the cache's base
    server.put("f", "theirs, longer")
    return m


def listed_then_changed(server, mnt, mounter, *args, env=None):
    server.put("f", "base")
    server.put("plain", "unchanged")
    m = server.mount(mounter, mnt, *args, env=env)
    assert sorted(os.listdir(mnt)) == ["f", "plain"]  # listed, never read
    server.put("f", "theirs, longer")
    return m


def test_a_rename_over_a_file_changed_on_the_server_keeps_it(server, mnt, mounter):
    loaded_then_changed(server, mnt, mounter)
    write(os.path.join(mnt, "new"), "from the mount")
    os.rename(os.path.join(mnt, "new"), os.path.join(mnt, "f"))
    sync(mnt)
    assert server.get("f") == "from the mount"
    kept = copies_of(server, "f")
    assert [server.get(k) for k in kept] == ["theirs, longer"], server.names()
    assert "new" not in server.names()
    conflict_said(mnt, "f")


def test_a_rename_over_a_file_after_its_conflict_keeps_the_other_partys(server, mnt,
                                                                        mounter):
    loaded_then_changed(server, mnt, mounter)
    write(os.path.join(mnt, "f"), "mine")
    sync(mnt)
    assert [server.get(k) for k in copies_of(server, "f")] == ["mine"]
    write(os.path.join(mnt, "new"), "from the mount")
    os.rename(os.path.join(mnt, "new"), os.path.join(mnt, "f"))
    sync(mnt)
    assert server.get("f") == "from the mount"
    # the mount's replaced file (its copy) is gone, the other party's kept
    assert [server.get(k) for k in copies_of(server, "f")] == ["theirs, longer"], \
        server.names()
    assert status_json(mnt)["cache"]["conflicts"] == 2


def test_an_unread_file_changed_on_the_server_is_not_removed(server, mnt, mounter):
    listed_then_changed(server, mnt, mounter)
    os.unlink(os.path.join(mnt, "f"))
    os.unlink(os.path.join(mnt, "plain"))  # unchanged there: removed
    sync(mnt)
    assert server.names() == ["f"]
    assert server.get("f") == "theirs, longer"
    conflict_said(mnt, "f")


def test_an_unread_file_changed_on_the_server_is_not_replaced(server, mnt, mounter):
    listed_then_changed(server, mnt, mounter)
    os.rename(os.path.join(mnt, "plain"), os.path.join(mnt, "f"))
    sync(mnt)
    assert server.get("f") == "unchanged"
    kept = copies_of(server, "f")
    assert [server.get(k) for k in kept] == ["theirs, longer"], server.names()
    assert "plain" not in server.names()
    conflict_said(mnt, "f")


def test_unread_files_the_mount_wrote_before_go_without_a_conflict(server, workdir, mnt,
                                                                   mounter):
    """What a listing shows of a file (size, mtime) is its base while the
    mount never read it: a file with a kept mode and mtime (set by an earlier
    mount) is the same file when nothing changed it since."""
    m = server.mount(mounter, mnt)
    for n in ("gone", "over", "under"):
        write(os.path.join(mnt, n), "written by a mount: " + n)
        os.chmod(os.path.join(mnt, n), 0o640)
        os.utime(os.path.join(mnt, n), (1000000000.5, 1000000000.5))
    sync(mnt)
    m.stop()
    server.mount(mounter, mnt)
    assert sorted(os.listdir(mnt)) == ["gone", "over", "under"]
    os.unlink(os.path.join(mnt, "gone"))
    os.rename(os.path.join(mnt, "under"), os.path.join(mnt, "over"))
    sync(mnt)
    assert server.names() == ["over"]
    assert server.get("over") == "written by a mount: under"
    assert status_json(mnt)["cache"]["conflicts"] == 0


@pytest.mark.parametrize("kind", ["rename", "unlink"])
def test_a_replay_keeps_an_unread_file_changed_on_the_server(server, workdir, mnt, mounter,
                                                             kind):
    """Killed before the rename over f (or the unlink of f) reached the
    server, f having changed there after the mount listed it: the next
    mount's replay of the journal keeps it."""
    journal = os.path.join(workdir, "journal")
    m = listed_then_changed(server, mnt, mounter, "--journal", journal, "--write-back", "600",
                            env={"PRISMFS_TEST_CRASH": "wb-apply-%s:1" % kind})
    if kind == "rename":
        os.rename(os.path.join(mnt, "plain"), os.path.join(mnt, "f"))
    else:
        os.unlink(os.path.join(mnt, "f"))
    cli("sync", mnt, timeout=60)  # reaches the crash point
    assert wait_for(lambda: m.proc.poll() is not None, 20), m.stderr()
    assert m.proc.returncode == -signal.SIGKILL, (m.proc.returncode, m.stderr())
    m.kill()
    server.mount(mounter, mnt, "--journal", journal)
    sync(mnt)
    if kind == "rename":
        assert server.get("f") == "unchanged"
        kept = copies_of(server, "f")
        assert [server.get(k) for k in kept] == ["theirs, longer"], server.names()
    else:
        assert server.names() == ["f", "plain"]
        assert server.get("f") == "theirs, longer"
    conflict_said(mnt, "f")


def test_after_a_remount_the_conflict_copy_is_a_file_of_its_own(server, mnt, mounter):
    """The link between the view's file and its conflict copy lives in the
    mount (and its journal): after a clean unmount the next mount shows the
    server's names as they are, NAME the server's version and the copy a
    file of its own, each changed by its own name with no new conflict."""
    m = loaded_then_changed(server, mnt, mounter)
    write(os.path.join(mnt, "f"), "mine")
    sync(mnt)
    [copy] = copies_of(server, "f")
    m.stop()
    server.mount(mounter, mnt)
    assert sorted(os.listdir(mnt)) == sorted(["f", copy])
    assert read(os.path.join(mnt, "f")) == "theirs, longer"
    assert read(os.path.join(mnt, copy)) == "mine"
    write(os.path.join(mnt, "f"), "f, written after the remount")
    write(os.path.join(mnt, copy), "the copy, written after the remount")
    sync(mnt)
    st = status_json(mnt)["cache"]
    assert server.get("f") == "f, written after the remount", (st["conflicts"], st["last_conflict"], st.get("last_error"), server.names())
    assert server.get(copy) == "the copy, written after the remount"
    assert status_json(mnt)["cache"]["conflicts"] == 0
