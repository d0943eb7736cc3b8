"""Listings refreshed (--mirror-ttl, prismfs sync): what is changed on the
mirror behind the mount -- a WebDAV server's directory written directly,
or a local mirror directory -- shows in the mount once a directory's
listing is older than the TTL, and at once after prismfs sync; changes made
through the mount and not yet written back are never undone by it.

Real servers (Apache mod_dav, nginx + dav-ext) on 127.0.0.1, faults through
the fault-injecting proxy; no timing is asserted, only polled for with a
deadline."""
import os
import time

from prism_helpers import status_json, wait_for
from test_cache_remote import give_to_server, read, server_tree, sync, write
from test_cache_remote import dav, mnt, proxied  # noqa: F401 (fixtures)


def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        return e


def content(path):
    try:
        return read(path)
    except OSError as e:
        return e


def change_behind(root):
    """The mirror changes behind the mount: docs/a rewritten (another size
    and mtime), docs/b new, docs/c and the empty docs/e removed."""
    write(os.path.join(root, "docs/a"), "one, changed there")
    # (in the past: Apache gives a file whose mtime is ahead of its clock
    # a weak ETag, which no If-Match matches)
    t = time.time() - 1000
    os.utime(os.path.join(root, "docs/a"), (t, t))
    write(os.path.join(root, "docs/b"), "new there")
    os.unlink(os.path.join(root, "docs/c"))
    os.rmdir(os.path.join(root, "docs/e"))


def prepare(root):
    os.makedirs(os.path.join(root, "docs/e"))
    write(os.path.join(root, "docs/a"), "one")
    write(os.path.join(root, "docs/c"), "three")


def shows_the_change(mnt):
    docs = os.path.join(mnt, "docs")
    return listing(docs) == ["a", "b"] and \
        content(os.path.join(docs, "a")) == "one, changed there" and \
        content(os.path.join(docs, "b")) == "new there"


def test_server_changes_show_after_the_ttl(dav, mnt, mounter):
    prepare(dav.root)
    give_to_server(dav.root)
    mounter(dav.url + "/", mnt, "--mirror-ttl", "1", "--mirror")
    docs = os.path.join(mnt, "docs")
    assert listing(docs) == ["a", "c", "e"]
    assert read(os.path.join(docs, "a")) == "one"  # loaded: clean data in memory
    change_behind(dav.root)
    give_to_server(dav.root)
    assert wait_for(lambda: shows_the_change(mnt), timeout=30), \
        (listing(docs), content(os.path.join(docs, "a")))
    # Written through the mount after that: the server's new version is
    # the base, no conflict.
    write(os.path.join(docs, "a"), "mine now")
    sync(mnt)
    assert read(os.path.join(dav.root, "docs/a")) == "mine now"
    assert status_json(mnt)["cache"]["conflicts"] == 0


def test_sync_shows_server_changes_at_once(dav, mnt, mounter):
    prepare(dav.root)
    give_to_server(dav.root)
    # TTL 0: listed once; only prismfs sync lists again.
    mounter(dav.url + "/", mnt, "--mirror-ttl", "0", "--mirror")
    docs = os.path.join(mnt, "docs")
    assert listing(docs) == ["a", "c", "e"]
    assert read(os.path.join(docs, "a")) == "one"
    change_behind(dav.root)
    give_to_server(dav.root)
    sync(mnt)
    assert shows_the_change(mnt), (listing(docs), content(os.path.join(docs, "a")))


def test_a_local_mirror_changed_behind_the_mount(workdir, mnt, mounter):
    mirror = os.path.join(workdir, "mirror")
    prepare(mirror)
    mounter(mirror, mnt, "--mirror-ttl", "1", "--mirror")
    docs = os.path.join(mnt, "docs")
    assert listing(docs) == ["a", "c", "e"]
    assert read(os.path.join(docs, "a")) == "one"
    change_behind(mirror)
    assert wait_for(lambda: shows_the_change(mnt), timeout=30), \
        (listing(docs), content(os.path.join(docs, "a")))


def test_local_changes_not_written_back_survive_refreshes(proxied, mnt, mounter):
    s, p = proxied
    prepare(s.root)
    write(os.path.join(s.root, "docs/f"), "theirs")
    give_to_server(s.root)
    mounter("http://127.0.0.1:%d/" % p.port, mnt, "--mirror-ttl", "1", "--mirror")
    docs = os.path.join(mnt, "docs")
    assert listing(docs) == ["a", "c", "e", "f"]
    p.down(kill=True)  # what is written now stays pending
    write(os.path.join(docs, "mine"), "made here")
    write(os.path.join(docs, "f"), "changed here")
    os.makedirs(os.path.join(docs, "e/sub"))
    # Meanwhile on the server: f, and the directory the new one is in,
    # are removed; a name appears.
    os.unlink(os.path.join(s.root, "docs/f"))
    os.rmdir(os.path.join(s.root, "docs/e"))
    write(os.path.join(s.root, "docs/b"), "new there")
    give_to_server(s.root)
    # Several TTLs pass with the directory in use: nothing made here goes.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        names = listing(docs)
        assert isinstance(names, list) and {"mine", "f", "e"} <= set(names), names
        assert read(os.path.join(docs, "mine")) == "made here"
        assert read(os.path.join(docs, "f")) == "changed here"
        assert os.path.isdir(os.path.join(docs, "e/sub"))
        time.sleep(0.2)
    assert status_json(mnt)["cache"]["pending_ops"] >= 1
    p.up()
    assert wait_for(lambda: sync(mnt, ok=False).returncode == 0, timeout=90)
    tree = server_tree(s.root)
    assert tree["docs/mine"] == ("file", b"made here")
    assert tree["docs/e/sub"] == ("dir", None)
    # f was removed there and changed here: the change is kept (under its
    # name or beside it, never lost).
    assert [k for k, v in tree.items() if k.startswith("docs/f") and v == ("file", b"changed here")], tree
    # Once written back, the next listing shows the server's new name too.
    assert wait_for(lambda: "b" in (listing(docs) if isinstance(listing(docs), list) else []),
                    timeout=30), listing(docs)
    assert read(os.path.join(docs, "b")) == "new there"


def test_bucket_changes_show_after_the_ttl(s3server, s3bucket, workdir, mnt, mounter):
    from test_cache_remote_s3 import creds
    base = "%s/%s/pfx/docs/" % (s3server.endpoint, s3bucket)
    s3server.curl("-X", "PUT", "--data-binary", "one", base + "a")
    s3server.curl("-X", "PUT", "--data-binary", "three", base + "c")
    mounter("s3://%s/pfx" % s3bucket, mnt, "--s3-endpoint", s3server.endpoint,
            "--s3-region", s3server.region, "--mirror-ttl", "1", "--mirror",
            env=creds(s3server))
    docs = os.path.join(mnt, "docs")
    assert listing(docs) == ["a", "c"]
    assert read(os.path.join(docs, "a")) == "one"
    s3server.curl("-X", "PUT", "--data-binary", "one, changed there", base + "a")
    s3server.curl("-X", "PUT", "--data-binary", "new there", base + "b")
    s3server.curl("-X", "DELETE", base + "c")
    assert wait_for(lambda: shows_the_change(mnt), timeout=30), \
        (listing(docs), content(os.path.join(docs, "a")))
    write(os.path.join(docs, "a"), "mine now")
    sync(mnt)
    r = s3server.curl(base + "a")
    assert r.stdout == b"mine now"
    assert status_json(mnt)["cache"]["conflicts"] == 0
