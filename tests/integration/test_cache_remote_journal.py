"""--journal DIR with a WebDAV mirror (Apache mod_dav behind the fault proxy):
the daemon is killed (SIGKILL) while its changes wait for a server that is
down; the next mount with the same journal, the server back, writes
everything that was acknowledged to the server. A server down at mount is
refused with one line naming it -- with a journal too, whose pending
changes then wait for the next mount."""
import os
import signal
import subprocess

import pytest

from conftest import PRISMFS, Mount, is_mounted
from davservers import dav_server
from faultproxy import FaultProxy
from prism_helpers import cli, status_json
from test_cache_crash import tree_mounted, unmount_tree
from test_cache_remote import give_to_server, read, server_tree, write


@pytest.fixture
def cd(workdir):
    d = {k: os.path.join(workdir, k) for k in ("mnt", "journal")}
    os.makedirs(d["mnt"])
    d["mounts"] = []
    with dav_server("apache") as s:
        p = FaultProxy("127.0.0.1", s.port).start()
        d["server"], d["proxy"] = s, p
        d["url"] = "http://127.0.0.1:%d/" % p.port
        try:
            yield d
        finally:
            for m in d["mounts"]:
                m.cleanup()
            unmount_tree(d["journal"])
            p.stop()


def start(cd, *args):
    m = Mount(cd["url"], cd["mnt"], ["--journal", cd["journal"], "--write-back", "0", *args,
                                     "--mirror"])
    cd["mounts"].append(m)
    return m.start()


def test_a_kill_with_changes_pending_loses_nothing_acknowledged(cd):
    s, p = cd["server"], cd["proxy"]
    write(os.path.join(s.root, "old"), "server's")
    os.makedirs(os.path.join(s.root, "dir"))
    write(os.path.join(s.root, "dir/moved"), "to be moved")
    give_to_server(s.root)
    m = start(cd)
    mnt = cd["mnt"]
    assert read(os.path.join(mnt, "old")) == "server's"  # loaded: its base
    assert sorted(os.listdir(os.path.join(mnt, "dir"))) == ["moved"]
    p.down(kill=True)  # from now on every change waits
    big = os.urandom(3 << 20)
    write(os.path.join(mnt, "new"), "made while down")
    write(os.path.join(mnt, "big"), big, "wb")
    write(os.path.join(mnt, "old"), "changed while down")
    os.makedirs(os.path.join(mnt, "d/e"))
    write(os.path.join(mnt, "d/e/f"), "deep")
    os.rename(os.path.join(mnt, "dir/moved"), os.path.join(mnt, "d/moved"))
    assert status_json(mnt)["cache"]["pending_ops"] >= 1
    os.kill(m.pid, signal.SIGKILL)
    m.kill()  # its mount point
    assert tree_mounted(cd["journal"]), "the journal's tree went with the daemon"
    # The server comes back; the next mount replays the journal first.
    p.up()
    m2 = start(cd)
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res.stderr
    tree = server_tree(s.root)
    assert tree["new"] == ("file", b"made while down")
    assert tree["big"] == ("file", big)
    assert tree["d/e/f"] == ("file", b"deep")
    assert tree["d/moved"] == ("file", b"to be moved")
    assert "dir/moved" not in tree
    # old was the server's, loaded, unchanged there since: its base (the
    # ETag it had when loaded) was journaled with the change, so the
    # change lands under its name, no conflict.
    assert tree["old"] == ("file", b"changed while down"), tree
    assert not [k for k in tree if "conflict" in k], tree
    assert read(os.path.join(mnt, "old")) == "changed while down"
    assert read(os.path.join(mnt, "new")) == "made while down"
    assert status_json(mnt)["cache"]["conflicts"] == 0
    assert m2.stop() == 0
    m2.check_clean_exit()
    assert not tree_mounted(cd["journal"])


def test_a_file_changed_on_the_server_before_the_replay_is_kept_beside(cd):
    s, p = cd["server"], cd["proxy"]
    write(os.path.join(s.root, "f"), "base")
    give_to_server(s.root)
    m = start(cd)
    mnt = cd["mnt"]
    assert read(os.path.join(mnt, "f")) == "base"
    p.down(kill=True)
    write(os.path.join(mnt, "f"), "mine")
    os.kill(m.pid, signal.SIGKILL)
    m.kill()
    # Someone else changes it on the server meanwhile (an older mtime:
    # see test_cache_remote_refresh on Apache's weak ETags).
    write(os.path.join(s.root, "f"), "theirs, meanwhile")
    give_to_server(s.root)
    p.up()
    m2 = start(cd)
    assert cli("sync", mnt, timeout=120).returncode == 0
    assert read(os.path.join(s.root, "f")) == "theirs, meanwhile"
    aside = [n for n in os.listdir(s.root) if n.startswith("f.prismfs-conflict-")]
    assert len(aside) == 1, os.listdir(s.root)
    assert read(os.path.join(s.root, aside[0])) == "mine"
    assert m2.stop() == 0
    m2.check_clean_exit()


def test_a_file_three_times_the_cache_reaches_the_server_across_a_kill(cd):
    """A file larger than the cache goes to the journal's disk while it is
    written (it cannot stay in memory, and a WebDAV server has no local
    file to spill to): written whole, fsync'ed, it is the server's; killed
    after an fsync'ed prefix and more writes, the next mount puts every
    acknowledged byte on the server."""
    from test_cache_bigfile import BIG, CHUNK, chunk
    s = cd["server"]
    small = ("--cache-size", "8M", "--cache-max-dirty", "4M")
    whole = b"".join(chunk(i) for i in range(BIG // CHUNK))
    m = start(cd, *small)
    with open(os.path.join(cd["mnt"], "big"), "wb", buffering=0) as f:
        for i in range(BIG // CHUNK):
            assert f.write(chunk(i)) == CHUNK
        os.fsync(f.fileno())
        assert read(os.path.join(s.root, "big"), "rb") == whole
    assert m.stop() == 0
    m.check_clean_exit()
    assert server_tree(s.root)["big"] == ("file", whole)
    assert not os.listdir(os.path.join(cd["journal"], "spill"))
    m = start(cd, *small)
    n = BIG // CHUNK // 2 + 21
    f = open(os.path.join(cd["mnt"], "big2"), "wb", buffering=0)
    for i in range(BIG // CHUNK // 2):
        assert f.write(chunk(i)) == CHUNK
    os.fsync(f.fileno())
    for i in range(BIG // CHUNK // 2, n):
        assert f.write(chunk(i)) == CHUNK
    os.kill(m.pid, signal.SIGKILL)
    try:
        f.close()
    except OSError:
        pass  # the daemon is gone
    m.kill()
    m2 = start(cd, *small)
    assert cli("sync", cd["mnt"], timeout=120).returncode == 0
    t = server_tree(s.root)
    assert sorted(t) == ["big", "big2"], sorted(t)
    assert t["big2"] == ("file", whole[:n * CHUNK])
    assert m2.stop() == 0
    m2.check_clean_exit()
    assert not os.listdir(os.path.join(cd["journal"], "spill"))


def test_a_server_down_at_mount_with_a_journal_is_one_line(cd):
    s, p = cd["server"], cd["proxy"]
    m = start(cd)
    p.down(kill=True)
    write(os.path.join(cd["mnt"], "pending"), "waits")
    os.kill(m.pid, signal.SIGKILL)
    m.kill()
    res = subprocess.run([PRISMFS, "mount", "--journal", cd["journal"], "--mirror", cd["url"],
                          cd["mnt"]], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:%d" % p.port in lines[0], res.stderr
    assert not is_mounted(cd["mnt"])
    # The journal still holds it: the next mount with the server up writes it.
    p.up()
    m2 = start(cd)
    assert cli("sync", cd["mnt"], timeout=120).returncode == 0
    assert read(os.path.join(s.root, "pending")) == "waits"
    assert m2.stop() == 0
    m2.check_clean_exit()


def test_a_kill_with_changes_pending_loses_nothing_on_s3(s3server, s3bucket, workdir):
    from test_cache_remote_s3 import creds
    from test_remote_s3 import get, list_v2
    mnt, journal = os.path.join(workdir, "mnt"), os.path.join(workdir, "journal")
    os.makedirs(mnt)
    base = "%s/%s/pfx/" % (s3server.endpoint, s3bucket)
    s3server.curl("-X", "PUT", "--data-binary", "bucket's", base + "old")
    host, port = s3server.endpoint.split("//")[1].split(":")
    mounts = []

    def start(endpoint):
        m = Mount("s3://%s/pfx" % s3bucket, mnt,
                  ["--s3-endpoint", endpoint, "--s3-region", s3server.region,
                   "--journal", journal, "--write-back", "0", "--mirror"],
                  env=creds(s3server))
        mounts.append(m)
        return m.start()

    try:
        with FaultProxy(host, int(port)).start() as p:
            m = start("http://127.0.0.1:%d" % p.port)
            assert read(os.path.join(mnt, "old")) == "bucket's"
            p.down(kill=True)
            write(os.path.join(mnt, "new"), "made while down")
            write(os.path.join(mnt, "old"), "changed while down")
            os.makedirs(os.path.join(mnt, "d"))
            write(os.path.join(mnt, "d/f"), "deep")
            os.kill(m.pid, signal.SIGKILL)
            m.kill()
            assert tree_mounted(journal)
        # The bucket straight (the proxy is gone): the journal names the
        # mirror, not the endpoint.
        m2 = start(s3server.endpoint)
        assert cli("sync", mnt, timeout=120).returncode == 0
        assert get(s3server, s3bucket, "pfx/new") == b"made while down"
        assert get(s3server, s3bucket, "pfx/old") == b"changed while down"
        assert get(s3server, s3bucket, "pfx/d/f") == b"deep"
        keys, _, _ = list_v2(s3server, s3bucket, "pfx/")
        assert not [k for k in keys if "conflict" in k[0]], keys
        assert m2.stop() == 0
        m2.check_clean_exit()
    finally:
        for m in mounts:
            m.cleanup()
        unmount_tree(journal)


def test_a_file_three_times_the_cache_reaches_s3_across_a_kill(s3server, s3bucket, workdir):
    """As on WebDAV: a file larger than the cache, killed after an
    fsync'ed prefix and more writes, is whole in the bucket (one PUT of
    every acknowledged byte) once the next mount has replayed it."""
    from test_cache_bigfile import BIG, CHUNK, chunk
    from test_cache_remote_s3 import creds
    from test_remote_s3 import get, list_v2
    mnt, journal = os.path.join(workdir, "mnt"), os.path.join(workdir, "journal")
    os.makedirs(mnt)
    mounts = []

    def start():
        m = Mount("s3://%s/pfx" % s3bucket, mnt,
                  ["--s3-endpoint", s3server.endpoint, "--s3-region", s3server.region,
                   "--cache-size", "8M", "--cache-max-dirty", "4M",
                   "--journal", journal, "--write-back", "0", "--mirror"],
                  env=creds(s3server))
        mounts.append(m)
        return m.start()

    n = BIG // CHUNK // 2 + 13
    try:
        m = start()
        f = open(os.path.join(mnt, "big"), "wb", buffering=0)
        for i in range(BIG // CHUNK // 2):
            assert f.write(chunk(i)) == CHUNK
        os.fsync(f.fileno())
        for i in range(BIG // CHUNK // 2, n):
            assert f.write(chunk(i)) == CHUNK
        os.kill(m.pid, signal.SIGKILL)
        try:
            f.close()
        except OSError:
            pass  # the daemon is gone
        m.kill()
        m2 = start()
        assert cli("sync", mnt, timeout=120).returncode == 0
        assert get(s3server, s3bucket, "pfx/big") == b"".join(chunk(i) for i in range(n))
        keys, _, _ = list_v2(s3server, s3bucket, "pfx/")
        assert [k[0] for k in keys] == ["pfx/big"], keys
        assert m2.stop() == 0
        m2.check_clean_exit()
        assert not os.listdir(os.path.join(journal, "spill"))
    finally:
        for m in mounts:
            m.cleanup()
        unmount_tree(journal)
