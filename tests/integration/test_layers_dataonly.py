"""Data-only lower layers, as the kernel mounts lowerdir=L1::D1::D2
(Documentation/filesystems/overlayfs.rst, "Data-only lower layers"): the
layers after the first "::" never show in the merged namespace; a metacopy
file of a regular lower (overlay.metacopy, empty) whose overlay.redirect is
an absolute path reaches its data there, the first data-only layer with a
regular file at that path winning. Its metadata (mode, owner, size, times,
xattrs) is the metacopy file's. Compared with kernel overlayfs mounted on
the same layers (the lowers of test_layers_lowers.py's `three`: L1 is the
regular lower, L2 and L3 the data-only ones), read-only and with an upper
of each backend's own."""
import errno
import os
import shutil
import subprocess

import pytest

from conftest import Mount
from layer_helpers import Untouched, assert_same, entry, mkfile, snapshot
from prism_helpers import cli, status_json
from test_layers_lowers import three

assert three  # the fixture, used by pytest

T = 1_600_000_000_000_000_123


def meta(path, redirect, size, ns="trusted", mode=0o644, xattrs=None):
    """A metacopy file as overlay's tools write one: no data of its own
    (sparse, of its data's size), overlay.metacopy empty, and an absolute
    overlay.redirect into the data-only layers."""
    mkfile(path, b"", mode=mode, mtime_ns=T, xattrs=xattrs)
    os.truncate(path, size)
    os.setxattr(path, ns + ".overlay.metacopy", b"")
    os.setxattr(path, ns + ".overlay.redirect", redirect.encode())
    os.utime(path, ns=(T, T))


def build(d, ns="trusted"):
    """L1: metacopy files into L2 (data-only) and L3 (data-only, below);
    L2 and L3 also hold names that must never show."""
    L1, L2, L3 = (lambda *p, n=n: os.path.join(d[n], *p) for n in ("L1", "L2", "L3"))
    data = {"x/f": b"data of f in the first data layer\n" * 50,
            "g": b"g only in the second data layer\n",
            "both": b"both: the first data layer's\n"}
    mkfile(L2("x/f"), data["x/f"])
    mkfile(L2("both"), data["both"])
    mkfile(L2("only_in_data"), b"never shown")
    mkfile(L3("g"), data["g"])
    mkfile(L3("both"), b"both: the second's, hidden by the first's\n")
    mkfile(L3("x/other"), b"never shown either")
    meta(L1("a"), "/x/f", len(data["x/f"]), ns, mode=0o600, xattrs={"user.k": b"v"})
    meta(L1("b"), "/g", len(data["g"]), ns)
    meta(L1("both"), "/both", len(data["both"]), ns)
    meta(L1("sub/c"), "/x/f", len(data["x/f"]), ns, mode=0o640)
    mkfile(L1("plain"), b"a regular file of L1")
    return data


def prism_args(d, spelling, extra=()):
    if spelling == "lowerdir":
        return "none", ["-o", "lowerdir=%s::%s::%s" % (d["L1"], d["L2"], d["L3"])] + list(extra)
    return d["L1"], ["--data-lower", d["L2"], "--data-lower", d["L3"]] + list(extra)


def mount_kernel(d, at, opts=""):
    o = "lowerdir=%s::%s::%s" % (d["L1"], d["L2"], d["L3"]) + ("," + opts if opts else "")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", o, at], check=True)
    d["mounts"].append(at)


def mount_prism(d, at, spelling="lowerdir", extra=()):
    src, args = prism_args(d, spelling, extra)
    m = Mount(src, at, args)
    d["mounts"].append(m)
    m.start()
    return m


def blocks(root, names):
    return {n: (os.stat(os.path.join(root, n)).st_size, os.stat(os.path.join(root, n)).st_blocks)
            for n in names}


def errno_of(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return e.errno
    return 0


def read(p):
    with open(p, "rb") as f:
        return f.read()


@pytest.mark.parametrize("ns,spelling", [("trusted", "lowerdir"), ("trusted", "--data-lower"),
                                         ("user", "lowerdir")])
def test_view_is_the_kernels(three, ns, spelling):
    """Listing (no data-only name shows), types, modes, owners, sizes,
    times, xattrs and contents as the kernel shows them; the data of a
    name in both data-only layers is the first's; a read-only mount."""
    d = three
    data = build(d, ns)
    untouched = Untouched(d["L1"], d["L2"], d["L3"])
    opts = "userxattr" if ns == "user" else ""
    mount_kernel(d, d["K"], opts)
    mount_prism(d, d["P"], spelling, ["-o", opts] if opts else [])
    want, got = snapshot(d["K"]), snapshot(d["P"])
    assert_same(want, got, "the data-only layers show differently from the kernel's")
    assert sorted(os.listdir(d["P"])) == ["a", "b", "both", "plain", "sub"]
    for name, rel in (("a", "x/f"), ("b", "g"), ("both", "both"), ("sub/c", "x/f")):
        assert read(os.path.join(d["P"], name)) == data[rel], name
    names = ["a", "b", "both", "sub/c"]
    assert blocks(d["P"], names) == blocks(d["K"], names)
    with open(os.path.join(d["P"], "a"), "rb") as f:  # reads at an offset
        f.seek(100)
        assert f.read(40) == data["x/f"][100:140]
    assert errno_of(os.stat, os.path.join(d["P"], "only_in_data")) == errno.ENOENT
    assert errno_of(os.stat, os.path.join(d["P"], "x")) == errno.ENOENT
    for p in (d["K"], d["P"]):
        assert errno_of(os.chmod, os.path.join(p, "a"), 0o644) == errno.EROFS
    lay = status_json(d["P"])["layers"]
    assert len(lay["lowers"]) == 3 and lay["data_only"] == 2, lay
    untouched.check()


def test_missing_data_as_the_kernel(three):
    """A metacopy file whose redirect finds nothing in the data-only
    layers still shows (stat as the kernel's, blocks guessed from the
    size); opening it fails with the kernel's errno. A relative redirect
    with a '/' is invalid: the lookup fails as the kernel's does, and its
    directory still lists the name (readdirplus gives it no attributes)."""
    d = three
    build(d)
    meta(os.path.join(d["L1"], "miss"), "/nowhere/f", 5000)
    meta(os.path.join(d["L1"], "bad", "rel"), "x/f", 10)
    mount_kernel(d, d["K"])
    mount_prism(d, d["P"])
    for root in (d["K"], d["P"]):
        assert "miss" in os.listdir(root)
    assert blocks(d["P"], ["miss"]) == blocks(d["K"], ["miss"])
    ke = errno_of(read, os.path.join(d["K"], "miss"))
    assert ke != 0
    assert errno_of(read, os.path.join(d["P"], "miss")) == ke
    ke = errno_of(os.stat, os.path.join(d["K"], "bad", "rel"))
    assert ke != 0
    assert errno_of(os.stat, os.path.join(d["P"], "bad", "rel")) == ke
    # ... and its directory still lists it (the name fails alone)
    for root in (d["K"], d["P"]):
        assert os.listdir(os.path.join(root, "bad")) == ["rel"]
        assert subprocess.run(["ls", "-l", os.path.join(root, "bad")],
                              capture_output=True).returncode == 1  # rel: ls's "minor problem"


def with_upper(d, tag):
    u, w = os.path.join(d["K"] + ".up", tag), os.path.join(d["K"] + ".wk", tag)
    os.makedirs(u)
    os.makedirs(w)
    return u, w


@pytest.mark.parametrize("metacopy", [False, True])
def test_changes_as_the_kernels(three, metacopy):
    """With an upper (one per backend): a write copies the data up from
    the data-only layer (the upper file whole, no overlay.metacopy); a
    truncating open, chmod (a metadata-only copy with metacopy=on, the
    data still read from the data-only layer), and the missing data's
    errno on a write or chmod, all as the kernel's."""
    d = three
    data = build(d)
    meta(os.path.join(d["L1"], "miss"), "/nowhere/f", 5000)
    untouched = Untouched(d["L1"], d["L2"], d["L3"])
    uk, wk = with_upper(d, "k")
    up, wp = with_upper(d, "p")
    mc = ",metacopy=on" if metacopy else ""
    mount_kernel(d, d["K"], "upperdir=%s,workdir=%s%s" % (uk, wk, mc))
    mount_prism(d, d["P"], extra=["-o", "upperdir=%s,workdir=%s%s" % (up, wp, mc)])
    results = {}
    for root in (d["K"], d["P"]):
        r = results[root] = {}
        with open(os.path.join(root, "a"), "ab") as f:
            f.write(b"appended\n")
        with open(os.path.join(root, "both"), "wb") as f:
            f.write(b"new")
        r["chmod"] = errno_of(os.chmod, os.path.join(root, "b"), 0o604)
        r["b"] = read(os.path.join(root, "b"))
        r["miss write"] = errno_of(lambda p: open(p, "ab").close(), os.path.join(root, "miss"))
        r["miss trunc"] = errno_of(lambda p: open(p, "wb").close(), os.path.join(root, "miss"))
        r["miss chmod"] = errno_of(os.chmod, os.path.join(root, "miss"), 0o600)
        r["a"] = read(os.path.join(root, "a"))
    assert results[d["P"]] == results[d["K"]]
    assert results[d["P"]]["a"] == data["x/f"] + b"appended\n"
    assert results[d["P"]]["b"] == data["g"]
    names = ["a", "b", "both", "plain", "sub/c"]  # all but miss: it has no content

    def seen(root):  # a written file's mtime is the time of its write
        return {n: {k: v for k, v in entry(os.path.join(root, n)).items()
                    if not (k == "mtime_ns" and n in ("a", "both"))} for n in names}
    assert_same(seen(d["K"]), seen(d["P"]), "after the changes")
    for u in (uk, up):
        assert read(os.path.join(u, "a")) == data["x/f"] + b"appended\n"
        assert read(os.path.join(u, "both")) == b"new"
        for name in ("a", "both"):
            for pre in ("trusted", "user"):
                assert errno_of(os.getxattr, os.path.join(u, name),
                                pre + ".overlay.metacopy") == errno.ENODATA
    if metacopy:  # chmod left the data below, in both uppers
        for u in (uk, up):
            assert errno_of(os.getxattr, os.path.join(u, "b"), "trusted.overlay.metacopy") == 0
    untouched.check()


def test_reads_the_kernels_upper(three):
    """An upper the kernel wrote with metacopy=on (a metadata-only copy of
    a lower metacopy file: its data two layers down) reads the same
    through prismfs."""
    d = three
    data = build(d)
    uk, wk = with_upper(d, "k")
    mount_kernel(d, d["K"], "upperdir=%s,workdir=%s,metacopy=on" % (uk, wk))
    os.chmod(os.path.join(d["K"], "a"), 0o640)
    os.chmod(os.path.join(d["K"], "sub", "c"), 0o600)
    want = snapshot(d["K"])
    subprocess.run(["umount", d["K"]], check=True)
    d["mounts"].remove(d["K"])
    mount_prism(d, d["P"], extra=["-o", "upperdir=%s,workdir=%s,metacopy=on" % (uk, wk)])
    assert_same(want, snapshot(d["P"]), "the kernel's upper through prismfs")
    assert read(os.path.join(d["P"], "a")) == data["x/f"]


@pytest.mark.parametrize("atomic", [[], ["--atomic"]], ids=["in-place", "atomic"])
def test_commit(three, atomic):
    """Commit into L1: a file written whole replaces its metacopy file
    (L1 holds its data then, no redirect), the untouched metacopy files
    still reach their data; a metadata-only copy whose data is in a
    data-only layer is refused in one line, nothing changed."""
    d = three
    data = build(d)
    up, wp = with_upper(d, "p")
    m = mount_prism(d, d["P"], extra=["-o", "upperdir=%s,workdir=%s,metacopy=on" % (up, wp)])
    with open(os.path.join(d["P"], "a"), "ab") as f:
        f.write(b"more")
    m.stop()
    m.check_clean_exit()
    d["mounts"].remove(m)
    m.cleanup()
    res = cli("commit", "--upper", up, "--lower", d["L1"], "--lower", d["L2"],
              "--lower", d["L3"], "--work", wp, *atomic)
    assert res.returncode == 0, res.stderr
    assert read(os.path.join(d["L1"], "a")) == data["x/f"] + b"more"
    assert errno_of(os.getxattr, os.path.join(d["L1"], "a"),
                    "trusted.overlay.metacopy") == errno.ENODATA

    os.makedirs(up, exist_ok=True)
    m = mount_prism(d, d["P"], extra=["-o", "upperdir=%s,workdir=%s,metacopy=on" % (up, wp)])
    assert read(os.path.join(d["P"], "a")) == data["x/f"] + b"more"
    assert read(os.path.join(d["P"], "b")) == data["g"]
    assert read(os.path.join(d["P"], "sub", "c")) == data["x/f"]
    os.chmod(os.path.join(d["P"], "b"), 0o600)
    m.stop()
    m.check_clean_exit()
    d["mounts"].remove(m)
    m.cleanup()
    before = Untouched(d["L1"], up)
    for how in ([], ["--atomic"]):
        res = cli("commit", "--upper", up, "--lower", d["L1"], "--lower", d["L2"],
                  "--lower", d["L3"], "--work", wp, *how)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode != 0 and len(lines) == 1, (res.returncode, res.stderr)
        assert "data-only" in lines[0], lines[0]
        before.check()


def test_refused_in_one_line(three):
    d = three
    for args in (["-o", "lowerdir=%s::%s:%s" % (d["L1"], d["L2"], d["L3"]), "none"],
                 ["-o", "lowerdir=%s::%s" % (d["L1"], d["L2"]), "--data-lower", d["L3"],
                  "none"],
                 ["--data-lower", "", d["L1"]]):
        res = cli("mount", *args, d["P"])
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1, (args, res.returncode, res.stderr)
        assert not os.path.ismount(d["P"])
