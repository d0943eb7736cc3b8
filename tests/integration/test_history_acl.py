"""History (issue 17): a saved version keeps the object's POSIX ACLs (the
access ACL, a directory's default ACL) and its security.* and trusted.*
extended attributes (the daemon runs as root), besides its user.* ones;
.history/SNAP shows them as they were (getfacl(1), getxattr(2)), the kernel
checks access there against the snapshot's ACL, and prismfs restore puts
them back exactly (acl(5), xattr(7)). The expected values are read from
SOURCE with getfacl -n and listxattr(2)/getxattr(2) when the test takes the
snapshot -- real files, never prismfs's answers. The overlay's own names
(trusted.overlay.*, user.overlay.*) are layer metadata, tied to one inode
and its layers: neither shown under .history nor put on a restored copy."""
import os
import signal
import sqlite3
import struct
import subprocess

import pytest

from prism_helpers import cli, run_as
from test_history import log_json
from test_history_restore_tree import TMP, no_temporaries, record, same, snap, write

NOBODY = 65534
OVERLAY = ("trusted.overlay.", "user.overlay.")


def facl(p):
    """getfacl -n of p, without its '# file:' line (the path differs)."""
    r = subprocess.run(["getfacl", "-n", "-p", p], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if not line.startswith("# file:")]


def setfacl(*args):
    r = subprocess.run(["setfacl", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (args, r.stderr)


def objects(root):
    """Every object beneath root (the root too) but symlinks, by rel."""
    if not os.path.isdir(root):
        return {".": root}
    out = {}
    for d, dirs, files in os.walk(root):
        for n in ([None] if d == root else []) + dirs + files:
            p = d if n is None else os.path.join(d, n)
            if not os.path.islink(p):
                out["." if n is None else os.path.relpath(p, root)] = p
    return out


def xattrs(root):
    """{rel: {name: value}} of every name listxattr(2) gives but the
    overlay's own, ACLs included."""
    return {rel: {k: os.getxattr(p, k, follow_symlinks=False)
                  for k in sorted(os.listxattr(p, follow_symlinks=False))
                  if not k.startswith(OVERLAY)}
            for rel, p in objects(root).items()}


def facls(root):
    return {rel: facl(p) for rel, p in objects(root).items()}


def overlay_names(root):
    return {rel: k for rel, p in objects(root).items()
            for k in os.listxattr(p, follow_symlinks=False) if k.startswith(OVERLAY)}


def make(src, p):
    os.makedirs(p("proj", "d"))
    os.makedirs(p("proj", "dd"))
    for rel in ("f", "plain", "d/in", "ro"):
        write(p("proj", *rel.split("/")), b"data of " + rel.encode())
    write(p("top"), b"top")
    os.chmod(p("proj", "f"), 0o640)
    setfacl("-m", "u:%d:r--,g:%d:rw-" % (NOBODY, NOBODY), p("proj", "f"))
    setfacl("-m", "u:%d:r-x" % NOBODY, p("proj"))
    setfacl("-d", "-m", "u:%d:rwx,g:%d:r-x" % (NOBODY, NOBODY), p("proj"))
    setfacl("-d", "-m", "u:%d:r-x" % NOBODY, p("proj", "d"))   # after d/in: in has none
    setfacl("-d", "-m", "u:%d:rw-" % NOBODY, p("proj", "dd"))
    write(p("proj", "dd", "inh"), b"made under a default ACL")  # inherits it
    os.chmod(p("proj", "ro"), 0o644)
    setfacl("-m", "u:%d:---" % NOBODY, p("proj", "ro"))       # nobody denied
    setfacl("-m", "u:%d:rw-" % NOBODY, p("top"))
    for path, k, v in [(("proj", "f"), "security.prismfs", b"label of f"),
                       (("proj", "f"), "trusted.prismfs", b"\0trusted\xff"),
                       (("proj", "f"), "user.a", b"1"),
                       (("proj", "d"), "security.prismfs", b"label of d"),
                       (("proj", "d", "in"), "user.in", b"in"),
                       (("proj", "d", "in"), "user.empty", b""),
                       (("top",), "trusted.top", b"top")]:
        os.setxattr(p(*path), k, v)
    # the overlay's own, behind the mount's back
    os.setxattr(os.path.join(src, "proj", "f"), "trusted.overlay.origin", b"\0\xfb")
    os.setxattr(os.path.join(src, "proj", "f"), "user.overlay.opaque", b"y")


def change(p):
    setfacl("-b", p("proj", "f"))                                # all ACL entries gone
    os.removexattr(p("proj", "f"), "security.prismfs")
    os.setxattr(p("proj", "f"), "trusted.prismfs", b"new value")
    write(p("proj", "f"), b"new data of f")
    setfacl("-k", p("proj"))                                     # default ACL gone
    setfacl("-m", "u:%d:--x,g:%d:rwx" % (NOBODY, NOBODY), p("proj"))
    setfacl("-m", "u:1:rwx", p("proj", "plain"))                 # had none
    os.setxattr(p("proj", "plain"), "security.prismfs", b"added")
    setfacl("-d", "-m", "u:1:r-x", p("proj", "d"))               # default changed
    os.setxattr(p("proj", "d"), "security.prismfs", b"replaced")
    write(p("proj", "d", "in"), b"in: data changed, in a dir with a default ACL")
    os.setxattr(p("proj", "d", "in"), "user.empty", b"set since")
    setfacl("-b", p("proj", "dd", "inh"))
    setfacl("-x", "u:%d" % NOBODY, p("proj", "ro"))
    setfacl("-m", "u:%d:r--" % NOBODY, p("top"))


def recorded(src):
    proj = os.path.join(src, "proj")
    return (facls(proj), xattrs(proj), facl(os.path.join(src, "top")),
            xattrs(os.path.join(src, "top")))


def check(root, want, files=None):
    """root holds proj and top as recorded (of files only, if given)."""
    w_facl, w_xa, w_top_facl, w_top_xa = want
    got_facl, got_xa = facls(os.path.join(root, "proj")), xattrs(os.path.join(root, "proj"))
    for rel in files or set(w_facl) | set(got_facl):
        assert got_facl.get(rel) == w_facl.get(rel), (root, rel, got_facl.get(rel),
                                                      w_facl.get(rel))
        assert got_xa.get(rel) == w_xa.get(rel), (root, rel, got_xa.get(rel), w_xa.get(rel))
    assert facl(os.path.join(root, "top")) == w_top_facl
    assert xattrs(os.path.join(root, "top")) == w_top_xa


def test_history_shows_the_snapshots_acls_and_xattrs(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    p = lambda *x: os.path.join(mnt, *x)
    make(src, p)
    snap(mnt, "s1")
    want = recorded(src)
    assert any("default:" in line for line in want[0]["."])
    change(p)
    assert recorded(src) != want

    # each ACL change through the mount is a journaled change
    rows = [(r["kind"], r["path"]) for r in log_json(mnt)]
    for kind, path in [("removexattr", "proj/f"), ("setxattr", "proj/plain"),
                       ("setxattr", "proj/d"), ("removexattr", "proj")]:
        assert (kind, path) in rows, (kind, path, rows)

    past = p(".history", "s1")
    check(past, want)
    assert overlay_names(os.path.join(past, "proj")) == {}
    assert os.getxattr(os.path.join(past, "proj", "f"), "trusted.prismfs") == b"\0trusted\xff"
    # the snapshot's ACL decides access there: nobody may read f (granted
    # then, not now) and not ro (denied then, not now)
    got = run_as(NOBODY, NOBODY, [], r'''
import json, os, sys
out = {}
for p in json.load(sys.stdin):
    try:
        out[p] = open(p, "rb").read().decode()
    except OSError as e:
        out[p] = e.errno
print(json.dumps(out))
''', [os.path.join(past, "proj", "f"), os.path.join(past, "proj", "ro"),
      p("proj", "f"), p("proj", "ro")])
    assert got == {os.path.join(past, "proj", "f"): "data of f",
                   os.path.join(past, "proj", "ro"): 13,
                   p("proj", "f"): 13, p("proj", "ro"): "data of ro"}, got

    m.stop()
    mounter(src, mnt, "--history", hdir)
    check(p(".history", "s1"), want)


@pytest.mark.parametrize("how", ["files", "subtree", "everything"])
def test_restore_puts_back_the_snapshots_acls_and_xattrs(workdir, trees, mounter, how):
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    p = lambda *x: os.path.join(mnt, *x)
    make(src, p)
    snap(mnt, "s1")
    want, want_tree = recorded(src), record(os.path.join(src, "proj"))
    change(p)

    files = ["f", "plain", "d/in", "dd/inh", "ro"]
    if how == "files":
        paths = [p("proj", x) for x in files] + [p("top")]
    else:
        paths = [p("proj"), p("top")] if how == "subtree" else []
    r = cli("restore", mnt, "s1", *paths)
    assert r.returncode == 0, r.stderr
    for root in (src, mnt):
        check(root, want, files if how == "files" else None)
    if how != "files":
        same(record(os.path.join(src, "proj")), want_tree)
    assert overlay_names(os.path.join(src, "proj")) == {}   # not put back
    no_temporaries(mnt)


def test_a_blob_of_the_previous_version_still_reads(workdir, trees, mounter):
    """A version saved when only user.* xattrs were kept (the same blob
    form, holding user.* names only, user.overlay.* ones too): .history
    shows its user.* ones and no ACL (none was kept), and a restore of it
    gives exactly that."""
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    p = lambda *x: os.path.join(mnt, *x)
    write(p("f"), b"old")
    os.setxattr(p("f"), "user.a", b"one")
    setfacl("-m", "u:%d:r--" % NOBODY, p("f"))
    snap(mnt, "s1")
    write(p("f"), b"new")
    m.stop()
    old = b"".join(k + b"\0" + struct.pack("=I", len(v)) + v
                   for k, v in [(b"user.a", b"one"), (b"user.overlay.x", b"y")])
    db = sqlite3.connect(os.path.join(hdir, "history.db"))
    with db:
        assert db.execute("UPDATE versions SET xattrs = ? WHERE path = 'f'",
                          (old,)).rowcount == 1
    db.close()
    mounter(src, mnt, "--history", hdir)
    past = p(".history", "s1", "f")
    assert sorted(os.listxattr(past)) == ["user.a"]
    assert os.getxattr(past, "user.a") == b"one"
    assert "user:%d:r--" % NOBODY not in facl(past)
    r = cli("restore", mnt, "s1", p("f"))
    assert r.returncode == 0, r.stderr
    assert open(os.path.join(src, "f"), "rb").read() == b"old"
    assert xattrs(os.path.join(src, "f")) == {".": {"user.a": b"one"}}


@pytest.mark.parametrize("step,paths,restored", [
    ("restore-built", ["proj"], False),
    ("restore-exchanged", ["proj"], True),
    ("restore-file-built", ["proj/f"], False)])
def test_acls_and_xattrs_change_with_the_rename(workdir, trees, mounter, step, paths,
                                                restored):
    """Killed before the rename, PATH has today's ACLs and xattrs and the
    temporary the snapshot's; after it, the other way round; the next
    restore sweeps the temporary and leaves the snapshot's."""
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    p = lambda *x: os.path.join(mnt, *x)
    make(src, p)
    snap(mnt, "s1")
    at_s1 = facls(os.path.join(src, "proj")), xattrs(os.path.join(src, "proj"))
    change(p)
    now = facls(os.path.join(src, "proj")), xattrs(os.path.join(src, "proj"))
    if paths == ["proj"]:
        target, whole, part = p("proj"), lambda r: (facls(r), xattrs(r)), lambda t: t
    else:   # one file, from its saved version
        target = p("proj", "f")
        whole = lambda r: (facl(r), xattrs(r)["."])
        part = lambda t: (t[0]["f"], t[1]["f"])

    env = dict(os.environ, PRISMFS_TEST_CRASH=step)
    r = cli("restore", mnt, "s1", *paths, env=env)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert whole(target) == part(at_s1 if restored else now)
    tdir = os.path.dirname(target)
    left = [n for n in os.listdir(tdir) if n.startswith(TMP)]
    assert len(left) == 1, os.listdir(tdir)
    assert whole(os.path.join(tdir, left[0])) == part(now if restored else at_s1)

    r = cli("restore", mnt, "s1", *paths)
    assert r.returncode == 0, r.stderr
    assert "left by an interrupted restore" in r.stdout, r.stdout
    assert whole(target) == part(at_s1)
    assert whole(os.path.join(src, os.path.relpath(target, mnt))) == part(at_s1)
    no_temporaries(mnt)
