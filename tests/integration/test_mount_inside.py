"""A mount point inside the tree the view shows: inside SOURCE, inside a
lower layer, or below a graft's target. The mount point is then also a name
of the view. Whatever a program does there, the mount can always be ended
by each of the three ways (prismfs unmount, fusermount3 -u, umount), and the
name shows the directory the mount covers, as a bind mount of the tree would
(mount(8), --bind: submounts are not carried along)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import is_mounted
from prism_helpers import (assert_one_error_line, bg, cli,  # noqa: F401 (bg: fixture)
                           mount_count, wait_for)

HOW = ["prismfs unmount", "fusermount3 -u", "umount"]


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def _covered(d):
    """What the mount point holds before it is mounted on: the view must
    show this at the mount point's name."""
    _write(os.path.join(d, "covered-file"), "under the mount\n")
    os.makedirs(os.path.join(d, "covered-dir", "deeper"))
    _write(os.path.join(d, "covered-dir", "deeper", "leaf"), "leaf\n")


# Each shape: (source, mount point, mount options, the view's path of the
# mount point's own name, relative to the mount point).
def _shape(name, w):
    if name == "source":          # prismfs mount src src/d
        src = os.path.join(w, "src")
        mnt = os.path.join(src, "d")
        _write(os.path.join(src, "top"), "top\n")
        _covered(mnt)
        return src, mnt, [], "d"
    if name == "source, deep":    # prismfs mount src src/a/b/c
        src = os.path.join(w, "src")
        mnt = os.path.join(src, "a", "b", "c")
        _write(os.path.join(src, "a", "b", "sibling"), "x\n")
        _covered(mnt)
        return src, mnt, [], "a/b/c"
    if name == "over source":     # prismfs mount DIR DIR: always worked, keep it
        src = os.path.join(w, "src")
        _covered(src)
        return src, src, [], None
    if name == "over source, --map inside":   # the table's file is in the view
        src = os.path.join(w, "src")
        _covered(src)
        mapf = os.path.join(src, "map.json")
        with open(mapf, "w") as f:
            json.dump({"/g": {"target": "covered-dir"}}, f)
        return src, src, ["--map", mapf], None
    if name == "layers, in source":   # --upper U L L/m
        src = os.path.join(w, "L")
        mnt = os.path.join(src, "m")
        _write(os.path.join(src, "top"), "top\n")
        _covered(mnt)
        os.makedirs(os.path.join(w, "U"))
        return src, mnt, ["--upper", os.path.join(w, "U")], "m"
    if name == "layers, in a lower":  # --upper U --lower L2 L L2/n
        src = os.path.join(w, "L")
        low = os.path.join(w, "L2")
        mnt = os.path.join(low, "n")
        _write(os.path.join(src, "top"), "top\n")
        _covered(mnt)
        os.makedirs(os.path.join(w, "U"))
        return src, mnt, ["--upper", os.path.join(w, "U"), "--lower", low], "n"
    if name in ("graft of an ancestor", "graft, absolute target"):
        # a graft whose target is an ancestor of the mount point; the
        # mount point itself is outside SOURCE
        src = os.path.join(w, "src")
        tree = os.path.join(src, "t") if name == "graft of an ancestor" else os.path.join(w, "t")
        mnt = os.path.join(tree, "sub", "mp")
        _write(os.path.join(src, "top"), "top\n")
        _covered(mnt)
        target = "t" if name == "graft of an ancestor" else tree
        mapf = os.path.join(w, "map.json")
        with open(mapf, "w") as f:
            json.dump({"/g": {"target": target}}, f)
        return src, mnt, ["--map", mapf], "g/sub/mp"
    if name == "graft targets through the mount point":
        # prismfs mount --map M src src/d, targets d, d/covered-dir, ...:
        # each is what the mount covers there, never the view itself
        src = os.path.join(w, "src")
        mnt = os.path.join(src, "d")
        _write(os.path.join(src, "top"), "top\n")
        os.makedirs(os.path.join(src, "covered-dir"))  # the view's own, a decoy
        _covered(mnt)
        mapf = os.path.join(w, "map.json")
        with open(mapf, "w") as f:
            json.dump({"/x": {"target": "d"}, "/y": {"target": "d/covered-dir"},
                       "/k/z": {"target": "d/covered-dir/deeper/leaf"},
                       "/w": {"target": "d/covered-dir/deeper"}}, f)
        return src, mnt, ["--map", mapf], "x"
    raise AssertionError(name)


SHAPES = ["source", "source, deep", "over source", "over source, --map inside", "layers, in source",
          "layers, in a lower", "graft of an ancestor", "graft, absolute target",
          "graft targets through the mount point"]


def _walk(top, depth):
    """Every name below top, to depth levels: lookups, stats, listings and
    opens of each file, the way find(1) and a backup tool go."""
    seen = {}
    stack = [(top, "", 0)]
    while stack:
        path, rel, d = stack.pop()
        for n in os.listdir(path):
            p = os.path.join(path, n)
            r = os.path.join(rel, n) if rel else n
            s = os.lstat(p)
            seen[r] = s
            if os.path.isdir(p) and not os.path.islink(p):
                if d + 1 < depth:
                    stack.append((p, r, d + 1))
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    f.read()
    return seen


def _unmount(how, mnt):
    if how == "prismfs unmount":
        args = ["prismfs unmount"]
        res = cli("unmount", mnt, timeout=60)
    else:
        args = how.split() + [mnt]
        res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, "%s %s failed (%d): %s" % (
        " ".join(args), mnt, res.returncode, res.stderr.strip())


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("shape", SHAPES)
def test_mount_inside_the_view_unmounts(workdir, mounter, shape, how):
    src, mnt, args, inner = _shape(shape, workdir)
    m = mounter(src, mnt, *args)
    shown = leaf = None
    if inner is not None:
        me = os.path.join(mnt, inner)
        shown = sorted(os.listdir(me))
        if "covered-dir" in shown:
            with open(os.path.join(me, "covered-dir", "deeper", "leaf")) as f:
                leaf = f.read()
    if shape == "graft targets through the mount point":
        shown = (shown, sorted(os.listdir(os.path.join(mnt, "y"))),
                 sorted(os.listdir(os.path.join(mnt, "w"))))
        with open(os.path.join(mnt, "k", "z")) as f:
            leaf = (leaf, f.read())
    # every name, several levels down: lookups, stats, listings, opens
    assert _walk(mnt, 8), "the view is empty"
    if shape.startswith("layers") and shown and "covered-dir" in shown:
        # a change through the mount point's name: copied up, not a loop
        _write(os.path.join(mnt, inner, "covered-dir", "new"), "new\n")
        assert "new" in os.listdir(os.path.join(mnt, inner, "covered-dir"))
    _unmount(how, mnt)
    assert wait_for(lambda: not is_mounted(mnt), 15), \
        "%s: the mount is still there after %s" % (shape, how)
    assert m.wait(30) == 0, "the daemon did not exit cleanly:\n%s" % m.stderr()
    m.check_clean_exit()
    assert mount_count(mnt) == 0
    # the mount point is its own directory again
    assert "covered-file" in os.listdir(mnt)
    if shape == "graft targets through the mount point":
        assert shown == (["covered-dir", "covered-file"], ["deeper"], ["leaf"]) and \
            leaf == ("leaf\n", "leaf\n"), (
                "targets through the mount point should be what it covers, the view "
                "showed %r, %r" % (shown, leaf))
    elif inner is not None:
        # the mount point's name showed the directory the mount covers
        assert shown == ["covered-dir", "covered-file"] and leaf == "leaf\n", (
            "%s: the mount point's name in the view should show what the mount "
            "covers, it showed %r" % (shape, shown))


@pytest.mark.parametrize("shape", ["source", "layers, in a lower", "graft of an ancestor"])
def test_mount_inside_the_view_background(workdir, bg, shape):
    """Background daemon (the usual case): prismfs unmount returns 0 once
    the daemon is gone, after programs walked through the mount point's
    name."""
    src, mnt, args, inner = _shape(shape, workdir)
    res = bg.mount(src, mnt, *args)
    assert res.returncode == 0, res.stderr
    _walk(mnt, 8)
    res = cli("unmount", mnt, timeout=60)
    assert res.returncode == 0, "prismfs unmount failed (%d): %s" % (res.returncode,
                                                                     res.stderr)
    assert not is_mounted(mnt)


@pytest.mark.parametrize("shape", ["layers, in source", "layers, in a lower"])
def test_copy_up_of_the_mount_point_takes_what_it_covers(workdir, mounter, shape):
    """On a layered mount whose mount point is a directory of a lower, the
    mount point's name is the directory the mount covers (a bind mount's
    view). Copying it up (a change below it) copies that directory's
    metadata — mode and xattrs — as overlayfs's copy-up does; the view's
    own root (what a walk of the name would reach once mounted) must not
    be taken instead, and the daemon must never ask itself (it can wait
    on its own request for ever)."""
    src, mnt, args, inner = _shape(shape, workdir)
    upper = args[args.index("--upper") + 1]
    os.setxattr(mnt, "user.who", b"covered")
    os.chmod(mnt, 0o751)
    os.setxattr(upper, "user.who", b"the view's root")
    os.chmod(upper, 0o755)
    m = mounter(src, mnt, *args)
    me = os.path.join(mnt, inner)
    assert os.getxattr(me, "user.who") == b"covered"
    _write(os.path.join(me, "covered-dir", "new"), "new\n")
    assert os.path.isdir(os.path.join(upper, inner)), "not copied up"
    got = (os.getxattr(os.path.join(upper, inner), "user.who"),
           oct(os.stat(os.path.join(upper, inner)).st_mode & 0o7777))
    assert got == (b"covered", "0o751"), (
        "the copied-up mount point should have what the mount covers: %r" % (got,))
    assert os.getxattr(me, "user.who") == b"covered"
    _unmount("prismfs unmount", mnt)
    assert m.wait(30) == 0, m.stderr()


@pytest.mark.parametrize("where", ["over source", "under the mount point"])
def test_mapping_pipe_inside_the_mount_point_refused(workdir, bg, where):
    """A mapping pipe inside the mount point is, once mounted, the view's
    pipe, and its reader would hold the mount open for good: refused before
    mounting, in one line, nothing mounted."""
    src = os.path.join(workdir, "src")
    mnt = src if where == "over source" else os.path.join(workdir, "mnt")
    os.makedirs(os.path.join(mnt, "sub"))
    os.makedirs(src, exist_ok=True)
    pipe = os.path.join(mnt, "sub", "table.pipe")
    os.mkfifo(pipe)
    res = bg.mount(src, mnt, "--map", pipe)
    mounted = is_mounted(mnt)
    assert not mounted, "mounted with its mapping pipe inside the mount point"
    assert_one_error_line(res, "prismfs mount --map PIPE inside MOUNTPOINT")
    assert "pipe" in res.stderr and "inside" in res.stderr, res.stderr


# A mapping target that reaches the mount point by another way than its own
# spelling: a symlink into it, a symlinked ancestor of it, a ".." climbing
# into it. Resolving such a target must never enter the mount itself (the
# daemon would send requests to itself: a key "/" through it asks itself
# for its own root without end, and any fd it keeps there holds the mount
# busy). README ("Mappings"): an absolute target that reaches the mount
# point, however spelled, means the source there (as one spelled under the
# mount point); a relative one reaches the name of the mount point in
# SOURCE, which is the directory the mount covers. The symlink on the way
# is swapped in while mounted (the attack an unprivileged user who can
# write the directory holding it would make), before the view looked.
ROUTES = ["abs: symlink into it", "abs: symlinked ancestor", "abs: '..' into it",
          "rel: symlink into it", "rel: '..' into it"]
KEYS = ["file", "graft", "/"]


def _repoint(link, dest):
    tmp = link + ".new"
    os.symlink(dest, tmp)
    os.rename(tmp, link)


def _route(route, w):
    """(src, mnt, target of a directory holding `a`, swap, where the
    target's `a` is (checked after unmount), decoys that must stay as
    they were)."""
    src = os.path.join(w, "src")
    _write(os.path.join(src, "data", "a"), "source\n")
    _write(os.path.join(src, "other", "a"), "other\n")  # the view's /data
    mnt = os.path.join(w, "mnt") if route.startswith("abs") else os.path.join(src, "d")
    _write(os.path.join(mnt, "data", "a"), "covered\n")
    decoy = os.path.join(w, "decoy") if route.startswith("abs") else os.path.join(src, "decoy")
    if route == "abs: symlink into it":
        _write(os.path.join(decoy, "data", "a"), "decoy\n")
        link = os.path.join(w, "lnk")
        os.symlink(decoy, link)
        target, dest = os.path.join(link, "data"), mnt
    elif route == "abs: symlinked ancestor":
        _write(os.path.join(decoy, "mnt", "data", "a"), "decoy\n")
        link = os.path.join(w, "alias")
        os.symlink(decoy, link)
        target, dest = os.path.join(link, "mnt", "data"), w
    elif route == "abs: '..' into it":
        # lnk/.. is decoy/ before the swap, W after it
        _write(os.path.join(decoy, "mnt", "data", "a"), "decoy\n")
        os.makedirs(os.path.join(decoy, "y"))
        os.makedirs(os.path.join(w, "z"))
        link = os.path.join(w, "lnk")
        os.symlink(os.path.join(decoy, "y"), link)
        target, dest = link + "/../mnt/data", os.path.join(w, "z")
    elif route == "rel: symlink into it":
        _write(os.path.join(decoy, "data", "a"), "decoy\n")
        link = os.path.join(src, "lnk")
        os.symlink("decoy", link)
        target, dest = "lnk/data", "d"
    elif route == "rel: '..' into it":
        # a relative target has no "..": its symlink's text has
        _write(os.path.join(decoy, "data", "a"), "decoy\n")
        os.makedirs(os.path.join(src, "y"))
        link = os.path.join(src, "lnk")
        os.symlink("y/../decoy", link)
        target, dest = "lnk/data", "y/../d"
    else:
        raise AssertionError(route)
    shown = os.path.join(src, "data") if route.startswith("abs") else os.path.join(mnt, "data")
    return src, mnt, target, lambda: _repoint(link, dest), shown, decoy


# Run in a child with a deadline: a daemon that calls its own mount may
# never answer, and a hung test process could not be stopped.
_PROBE = r'''
import errno, json, os, sys
mnt, key, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
def rd(p):
    with open(p) as f:
        return f.read()
try:
    where = {"file": None, "graft": os.path.join(mnt, "g"), "/": mnt}[key]
    if where is None:
        out["read"] = rd(os.path.join(mnt, "f"))
        with open(os.path.join(mnt, "f"), "w") as f:
            f.write("written\n")
    else:
        out["list"] = sorted(os.listdir(where))
        out["read"] = rd(os.path.join(where, "a"))
        with open(os.path.join(where, "new"), "w") as f:
            f.write("written\n")
except OSError as e:
    out["error"] = errno.errorcode.get(e.errno, str(e.errno))
dev = os.stat(mnt).st_dev
held = []
for fd in os.listdir("/proc/%d/fd" % pid):
    p = "/proc/%d/fd/%s" % (pid, fd)
    try:
        if os.stat(p).st_dev == dev:
            held.append(os.readlink(p))
    except OSError:
        pass
out["held"] = held
print(json.dumps(out))
'''


# plain: every route with every key; layered (--upper): the same
# resolution, for a few of them
CASES = [(r, k, "plain") for r in ROUTES for k in KEYS] + [
    ("abs: symlink into it", "/", "layered"), ("abs: '..' into it", "file", "layered"),
    ("rel: '..' into it", "graft", "layered")]


@pytest.mark.parametrize("route,key,mode", CASES)
def test_target_reaching_the_mount_point_never_enters_it(workdir, mounter, route, key, mode):
    src, mnt, target, swap, shown, decoy = _route(route, workdir)
    extra = []
    if mode == "layered":
        upper = os.path.join(workdir, "U")
        os.makedirs(upper)
        extra = ["--upper", upper]
    before = {os.path.relpath(os.path.join(d, n), decoy): open(os.path.join(d, n)).read()
              for d, _, files in os.walk(decoy) for n in files}
    vkey = {"file": "/f", "graft": "/g", "/": "/"}[key]
    table = {vkey: {"target": target + "/a" if key == "file" else target},
             "/data": {"target": "other"}}
    mapf = os.path.join(workdir, "map.json")
    with open(mapf, "w") as f:
        json.dump(table, f)
    # each route meets each way of unmounting, and so does each key
    how = HOW[(ROUTES.index(route) + KEYS.index(key)) % len(HOW)]
    m = mounter(src, mnt, "--map", mapf, *extra)
    swap()
    probe = subprocess.Popen([sys.executable, "-c", _PROBE, mnt, key, str(m.pid)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, errs = probe.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # Every thread of such a daemon waits on its own mount, and so
        # does the probe, unkillably: only aborting the connection (what
        # umount -f does to a FUSE mount) lets them go.
        subprocess.run(["umount", "-f", mnt], capture_output=True, timeout=30)
        probe.kill()
        probe.communicate()
        pytest.fail("%s, key %s: the view did not answer within 60 s (the daemon "
                    "waits on its own mount)" % (route, vkey))
    assert probe.returncode == 0, errs
    got = json.loads(out)
    want = "source\n" if route.startswith("abs") else "covered\n"
    assert got.get("error") is None and got["read"] == want, (
        "%s, key %s: should show %r, got %r" % (route, vkey, want, got))
    if key == "graft":
        assert got["list"] == ["a"], got
    elif key == "/":
        assert "a" in got["list"] and "decoy" not in got["list"], got
    assert got["held"] == [], "the daemon holds fds on its own mount: %r" % got["held"]
    _unmount(how, mnt)
    assert wait_for(lambda: not is_mounted(mnt), 15), \
        "%s: the mount is still there after %s" % (route, how)
    assert m.wait(30) == 0, "the daemon did not exit cleanly:\n%s" % m.stderr()
    m.check_clean_exit()
    assert mount_count(mnt) == 0
    # what was written landed where the target was shown from (layered:
    # in the upper, at the view's path), nowhere else
    name = "a" if key == "file" else "new"
    if mode == "layered":
        with open(os.path.join(shown, "a")) as f:
            assert f.read() == want
        assert sorted(os.listdir(shown)) == ["a"]
        shown = os.path.join(upper, {"file": "", "graft": "g", "/": ""}[key])
        name = {"file": "f", "graft": "new", "/": "new"}[key]
    with open(os.path.join(shown, name)) as f:
        assert f.read() == "written\n"
    after = {os.path.relpath(os.path.join(d, n), decoy): open(os.path.join(d, n)).read()
             for d, _, files in os.walk(decoy) for n in files}
    assert after == before, "the decoy changed"
    for other in ("src/other", "src/d/data" if route.startswith("abs") else "src/data",
                  "mnt/data"):
        p = os.path.join(workdir, other)
        if os.path.isdir(p) and p != shown:
            assert sorted(os.listdir(p)) == ["a"], p
            with open(os.path.join(p, "a")) as f:
                assert f.read() != "written\n", p


@pytest.mark.parametrize("how", ["rename", "write in place"])
def test_map_file_inside_the_mount_point_is_read_as_given(workdir, mounter, how):
    """Mounted over SOURCE with its --map file inside: the file the table
    is read from is the one named at mount (what the mount covers), never
    the view's name for it. Here the table's own key "/" makes the view's
    /map.json another file (one/map.json, absent): a watcher reading
    through the mount would never see an update. The update is made on the
    covered file, through a directory fd opened before mounting."""
    src = os.path.join(workdir, "src")
    _write(os.path.join(src, "one", "a"), "one\n")
    _write(os.path.join(src, "two", "b"), "two\n")
    mapf = os.path.join(src, "map.json")
    with open(mapf, "w") as f:
        json.dump({"/": {"target": "one"}}, f)
    dfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        m = mounter(src, src, "--map", mapf)
        assert sorted(os.listdir(src)) == ["a"]
        data = json.dumps({"/": {"target": "two"}})
        if how == "rename":
            fd = os.open("map.json.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644,
                         dir_fd=dfd)
            os.write(fd, data.encode())
            os.close(fd)
            os.rename("map.json.tmp", "map.json", src_dir_fd=dfd, dst_dir_fd=dfd)
        else:
            fd = os.open("map.json", os.O_WRONLY | os.O_TRUNC, dir_fd=dfd)
            os.write(fd, data.encode())
            os.close(fd)
        assert wait_for(lambda: sorted(os.listdir(src)) == ["b"], 15), (
            "the table was not reloaded from the file named at mount: the view shows %r"
            % sorted(os.listdir(src)))
        _unmount("prismfs unmount", src)
        assert wait_for(lambda: not is_mounted(src), 15)
        assert m.wait(30) == 0, m.stderr()
        m.check_clean_exit()
    finally:
        os.close(dfd)
