"""A mount point inside the tree the view shows: inside SOURCE, inside a
lower layer, or below a graft's target. The mount point is then also a name
of the view. Whatever a program does there, the mount can always be ended
by each of the three ways (prismfs unmount, fusermount3 -u, umount), and the
name shows the directory the mount covers, as a bind mount of the tree would
(mount(8), --bind: submounts are not carried along)."""
import json
import os
import subprocess

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
