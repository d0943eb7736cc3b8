"""A memory cache written back to a WebDAV server (prismfs mount --mirror
http://HOST/PATH/): real servers (Apache mod_dav, nginx + dav-ext) started
by the test on 127.0.0.1, driven through the mount with real system calls,
and the outcome read in the directory the server serves.

What a user of a remote mirror must be able to count on:
- the view shows what the server holds, listed and read only when used;
- every change reaches the server in order (files, directories, renames,
  removals), and what the server can keep of modes and times is kept;
- a file changed on the server since the cache had it is never overwritten:
  both versions are kept, the cache's under NAME.prismfs-conflict-STAMP;
- faults lose nothing: a server down at mount is one clear line; a server
  down, failing (5xx, 507) or cutting an upload is retried until the data is
  there, while status says what is pending and why;
- bad addresses are refused before mounting.
"""
import hashlib
import os
import stat
import subprocess
import time

import pytest

from conftest import is_mounted
from davservers import dav_server
from faultproxy import FaultProxy
from prism_helpers import cli, status_json, wait_for
from test_cache import read, write

SERVERS = ("apache", "nginx")


def cached(mounter, url, mnt, *args):
    return mounter(url, mnt, *args, "--mirror")


def sync(mnt, ok=True):
    res = cli("sync", mnt, timeout=120)
    if ok:
        assert res.returncode == 0, "prismfs sync failed: %s" % res.stderr
    return res


def server_tree(root):
    """What the server's directory holds: path -> ("dir", None) or
    ("file", bytes), leaving out the servers' own bookkeeping."""
    out = {}
    for d, subdirs, files in os.walk(root):
        subdirs[:] = [n for n in subdirs if n != ".DAV"]  # Apache's properties
        for name in subdirs + files:
            p = os.path.join(d, name)
            rel = os.path.relpath(p, root)
            if os.path.isdir(p):
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", read(p, "rb"))
    return out


def give_to_server(root):
    """Files a test puts in place for the server must be the server's to
    change (it runs as nobody)."""
    import grp
    import pwd
    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    for d, subdirs, files in os.walk(root):
        for name in subdirs + files:
            os.lchown(os.path.join(d, name), uid, gid)
    os.chown(root, uid, gid)


@pytest.fixture(params=SERVERS)
def dav(request):
    with dav_server(request.param) as s:
        yield s


@pytest.fixture
def mnt(workdir):
    d = os.path.join(workdir, "mnt")
    os.makedirs(d)
    return d


def test_changes_reach_the_server_in_the_view_s_shape(dav, mnt, mounter):
    m = cached(mounter, dav.url + "/", mnt)
    os.makedirs(os.path.join(mnt, "d/sub"))
    write(os.path.join(mnt, "d/a"), "alpha")
    big = os.urandom(5 << 20)
    write(os.path.join(mnt, "d/sub/big"), big, "wb")
    write(os.path.join(mnt, "gone"), "x")
    os.rename(os.path.join(mnt, "d/a"), os.path.join(mnt, "d/b"))
    os.unlink(os.path.join(mnt, "gone"))
    os.makedirs(os.path.join(mnt, "e/f"))
    os.rename(os.path.join(mnt, "e"), os.path.join(mnt, "moved"))
    os.makedirs(os.path.join(mnt, "empty"))
    os.rmdir(os.path.join(mnt, "empty"))
    with open(os.path.join(mnt, "d/b"), "a") as f:
        f.write("+more")
        f.flush()
        os.fsync(f.fileno())  # returns once it is on the server
    assert read(os.path.join(dav.root, "d/b")) == "alpha+more"
    sync(mnt)
    assert server_tree(dav.root) == {
        "d": ("dir", None), "d/b": ("file", b"alpha+more"), "d/sub": ("dir", None),
        "d/sub/big": ("file", big), "moved": ("dir", None), "moved/f": ("dir", None)}
    st = status_json(mnt)["cache"]
    assert st["mirror_kind"] == "webdav"
    assert st["pending_ops"] == 0 and st["conflicts"] == 0
    m.stop()
    m.check_clean_exit()


def test_a_new_mount_shows_the_server_and_reads_only_what_is_used(dav, mnt, mounter):
    os.makedirs(os.path.join(dav.root, "docs/deep"))
    for i in range(30):
        write(os.path.join(dav.root, "docs/f%02d" % i), "content %d" % i)
    write(os.path.join(dav.root, "docs/deep/x"), "deep")
    give_to_server(dav.root)
    before = len(dav.access_log())
    cached(mounter, dav.url + "/", mnt)
    assert sorted(os.listdir(os.path.join(mnt, "docs"))) == \
        sorted(["deep"] + ["f%02d" % i for i in range(30)])
    st = os.stat(os.path.join(mnt, "docs/f07"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == len("content 7")
    assert read(os.path.join(mnt, "docs/f07")) == "content 7"
    # A server logs a request once it has answered it.
    wait_for(lambda: [x for x in dav.access_log()[before:] if x[:2] == ("GET", "/docs/f07")],
             timeout=5)
    log = dav.access_log()[before:]
    log = [x for x in log if x[1].startswith("/docs")]  # not the probe at open
    gets = [p for (meth, p, _) in log if meth == "GET"]
    assert gets == ["/docs/f07"], log
    # Listing docs was one request, not one per entry.
    finds = [p for (meth, p, _) in log if meth == "PROPFIND" and p.rstrip("/") == "/docs"]
    assert len(finds) == 1, log
    assert not [p for (meth, p, _) in log if p.startswith("/docs/deep/")], log


def test_a_file_changed_on_the_server_is_never_overwritten(dav, mnt, mounter):
    write(os.path.join(dav.root, "f"), "base")
    give_to_server(dav.root)
    cached(mounter, dav.url + "/", mnt)
    assert read(os.path.join(mnt, "f")) == "base"  # loaded: the cache's base
    # Someone changes it on the server (a later mtime, another size).
    write(os.path.join(dav.root, "f"), "theirs, longer")
    t = time.time() + 5
    os.utime(os.path.join(dav.root, "f"), (t, t))
    write(os.path.join(mnt, "f"), "mine")
    sync(mnt)
    assert read(os.path.join(dav.root, "f")) == "theirs, longer"
    aside = [n for n in os.listdir(dav.root) if n.startswith("f.prismfs-conflict-")]
    assert len(aside) == 1, os.listdir(dav.root)
    assert read(os.path.join(dav.root, aside[0])) == "mine"
    st = status_json(mnt)["cache"]
    assert st["conflicts"] == 1 and "f" in st["last_conflict"]
    # Later writes of that file go beside it too.
    write(os.path.join(mnt, "f"), "mine again")
    sync(mnt)
    assert read(os.path.join(dav.root, "f")) == "theirs, longer"
    assert read(os.path.join(dav.root, aside[0])) == "mine again"


def test_a_name_made_on_the_server_behind_the_mount_is_not_overwritten(dav, mnt, mounter):
    """The cache listed the directory; then the name is made on the server:
    a create of it through the mount keeps the server's file."""
    cached(mounter, dav.url + "/", mnt)
    assert os.listdir(mnt) == []
    write(os.path.join(dav.root, "new"), "made on the server")
    give_to_server(dav.root)
    write(os.path.join(mnt, "new"), "created through the mount")
    sync(mnt)
    assert read(os.path.join(dav.root, "new")) == "made on the server"
    aside = [n for n in os.listdir(dav.root) if n.startswith("new.prismfs-conflict-")]
    assert len(aside) == 1, os.listdir(dav.root)
    assert read(os.path.join(dav.root, aside[0])) == "created through the mount"
    assert status_json(mnt)["cache"]["conflicts"] == 1


def test_status_says_which_guarantees_hold(dav, mnt, mounter):
    cached(mounter, dav.url + "/", mnt)
    g = status_json(mnt)["cache"]["guarantees"]
    if dav.kind == "apache":
        assert "refused by the server" in g and "mode, owner and mtime kept" in g
    else:
        assert "checked just before each write" in g and "mode and owner not kept" in g
    text = cli("status", mnt)
    assert text.returncode == 0 and "guarantees" in text.stdout


def test_modes_and_times_kept_where_the_server_can(dav, mnt, mounter, workdir):
    m = cached(mounter, dav.url + "/", mnt)
    p = os.path.join(mnt, "f")
    write(p, "data")
    os.chmod(p, 0o640)
    os.utime(p, (1_000_000_000, 1_000_000_000))
    sync(mnt)
    m.stop()
    m.check_clean_exit()
    again = os.path.join(workdir, "again")
    os.makedirs(again)
    cached(mounter, dav.url + "/", again)
    st = os.stat(os.path.join(again, "f"))
    assert read(os.path.join(again, "f")) == "data"
    if dav.kind == "apache":
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert int(st.st_mtime) == 1_000_000_000


def test_what_the_server_cannot_keep_is_refused_at_once(dav, mnt, mounter):
    cached(mounter, dav.url + "/", mnt)
    write(os.path.join(mnt, "f"), "x")
    with pytest.raises(PermissionError):
        os.symlink("f", os.path.join(mnt, "l"))
    with pytest.raises(PermissionError):
        os.link(os.path.join(mnt, "f"), os.path.join(mnt, "g"))
    with pytest.raises(OSError) as e:
        os.setxattr(os.path.join(mnt, "f"), "user.k", b"v")
    assert e.value.errno in (95,)  # EOPNOTSUPP
    assert sorted(os.listdir(mnt)) == ["f"]


# -- faults, through a fault-injecting proxy in front of Apache ----------------

@pytest.fixture
def proxied():
    with dav_server("apache") as s:
        p = FaultProxy("127.0.0.1", s.port).start()
        try:
            yield s, p
        finally:
            p.stop()


def test_a_server_down_at_mount_is_one_line_and_no_mount(mnt):
    with dav_server("apache") as s:
        url = s.url + "/"
    from conftest import PRISMFS
    res = subprocess.run([PRISMFS, "mount", "--mirror", url, mnt], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1" in lines[0], res.stderr
    assert not is_mounted(mnt)


def test_server_down_during_write_back_loses_nothing(proxied, mnt, mounter):
    s, p = proxied
    cached(mounter, "http://127.0.0.1:%d/" % p.port, mnt)
    data = os.urandom(1 << 20)
    p.down(kill=True)  # kept-alive connections die with it
    write(os.path.join(mnt, "f"), data, "wb")
    res = sync(mnt, ok=False)
    assert res.returncode != 0 and res.stderr.strip()
    st = status_json(mnt)["cache"]
    assert st["pending_ops"] >= 1 and st["last_error"]
    assert read(os.path.join(mnt, "f"), "rb") == data  # the view keeps it
    p.up()
    assert wait_for(lambda: sync(mnt, ok=False).returncode == 0, timeout=60)
    assert read(os.path.join(s.root, "f"), "rb") == data


@pytest.mark.parametrize("code", [500, 503, 507])
def test_failing_server_is_retried_until_the_data_is_there(proxied, mnt, mounter, code):
    s, p = proxied
    cached(mounter, "http://127.0.0.1:%d/" % p.port, mnt)
    p.fail(code, method="PUT", times=3)
    write(os.path.join(mnt, "f"), "survives")
    assert wait_for(lambda: sync(mnt, ok=False).returncode == 0, timeout=90)
    assert read(os.path.join(s.root, "f")) == "survives"
    st = status_json(mnt)["cache"]
    assert st["failures"] >= 1
    assert [x for x in p.log if x[0] == "PUT" and x[2] == code]


def test_a_connection_reset_mid_upload_is_retried(proxied, mnt, mounter):
    s, p = proxied
    cached(mounter, "http://127.0.0.1:%d/" % p.port, mnt)
    data = os.urandom(8 << 20)
    p.reset(method="PUT", after_bytes=1 << 20)
    write(os.path.join(mnt, "big"), data, "wb")
    assert wait_for(lambda: sync(mnt, ok=False).returncode == 0, timeout=90)
    got = read(os.path.join(s.root, "big"), "rb")
    assert not [n for n in os.listdir(s.root) if "conflict" in n], \
        (os.listdir(s.root), [x for x in p.log if "big" in x[1]])
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("bad", ["http://", "ftp://host/x", "s3://"])
def test_bad_addresses_are_refused_before_mounting(mnt, bad):
    from conftest import PRISMFS
    res = subprocess.run([PRISMFS, "mount", "--mirror", bad, mnt], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2, res
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not is_mounted(mnt)


def test_a_slow_upload_holds_up_no_listing_nor_first_read(proxied, mnt, mounter):
    """Write-back is in the background: a directory listed or a file read
    for the first time waits for no upload queued before it (only a rename
    would move what it reads)."""
    s, p = proxied
    os.makedirs(os.path.join(s.root, "later"))
    write(os.path.join(s.root, "later/x"), "on the server")
    give_to_server(s.root)
    cached(mounter, "http://127.0.0.1:%d/" % p.port, mnt, "--write-back", "0")
    p.slow(rate=1 << 20, method="PUT", times=None)  # 1 MiB/s
    write(os.path.join(mnt, "big"), os.urandom(8 << 20), "wb")
    # The empty file made, its data's upload under way:
    assert wait_for(lambda: p.count("PUT", "^/big$") >= 2, timeout=30), p.log
    assert os.listdir(os.path.join(mnt, "later")) == ["x"]
    assert read(os.path.join(mnt, "later/x")) == "on the server"
    # Both were served while the upload was still going.
    assert [x[2] for x in p.log if x[:2] == ("PUT", "/big")] == [201], p.log
    p.clear()
    sync(mnt)


def test_a_directory_removed_but_not_empty_on_the_server_goes_aside(dav, mnt, mounter):
    """A conflict's copy (or a file made on the server) in a directory the
    view removes: kept aside, and the write-back goes on."""
    write(os.path.join(dav.root, "f"), "base")
    give_to_server(dav.root)
    # Listings never refreshed: the name made on the server stays unseen,
    # as one made there after the last refresh would be.
    cached(mounter, dav.url + "/", mnt, "--mirror-ttl", "0")
    os.makedirs(os.path.join(mnt, "d"))
    write(os.path.join(mnt, "d/f"), "mine")
    sync(mnt)
    assert os.listdir(os.path.join(mnt, "d")) == ["f"]  # listed after the sync
    write(os.path.join(dav.root, "d/extra"), "made on the server")
    give_to_server(dav.root)
    os.unlink(os.path.join(mnt, "d/f"))
    os.rmdir(os.path.join(mnt, "d"))
    write(os.path.join(mnt, "after"), "the queue goes on")
    sync(mnt)
    names = os.listdir(dav.root)
    aside = [n for n in names if n.startswith("d.prismfs-conflict-")]
    assert "d" not in names and len(aside) == 1, names
    assert read(os.path.join(dav.root, aside[0], "extra")) == "made on the server"
    assert read(os.path.join(dav.root, "after")) == "the queue goes on"
    assert status_json(mnt)["cache"]["conflicts"] == 1


def test_a_file_written_again_at_once_is_no_conflict(dav, mnt, mounter):
    """Each fsync puts the file on the server; the next write, within the
    same second, must be taken as the same writer's, not as a change made
    on the server (Apache gives a weak ETag for a second after a change)."""
    cached(mounter, dav.url + "/", mnt)
    p = os.path.join(mnt, "f")
    for i in range(5):
        with open(p, "w") as f:
            f.write("version %d" % i)
            f.flush()
            os.fsync(f.fileno())
        assert read(os.path.join(dav.root, "f")) == "version %d" % i
    assert not [n for n in os.listdir(dav.root) if "conflict" in n]
    assert status_json(mnt)["cache"]["conflicts"] == 0


def test_a_password_in_the_address_is_never_shown(mnt, mounter):
    from conftest import PRISMFS
    with dav_server("apache", auth=("alice", "s3cret-pw")) as s:
        host = s.url.split("//")[1]
        bad = subprocess.run([PRISMFS, "mount", "--mirror", "http://alice:wrong-pw@%s/" % host,
                              mnt], capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and not is_mounted(mnt)
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "wrong-pw" not in bad.stderr and host in bad.stderr
        cached(mounter, "http://alice:s3cret-pw@%s/" % host, mnt)
        write(os.path.join(mnt, "f"), "x")
        sync(mnt)
        assert read(os.path.join(s.root, "f")) == "x"
        st = status_json(mnt)["cache"]
        assert "s3cret-pw" not in str(st) and host in st["guarantees"]
        assert "s3cret-pw" not in cli("status", mnt).stdout
        with open("/proc/mounts") as f:
            assert "s3cret-pw" not in f.read()
