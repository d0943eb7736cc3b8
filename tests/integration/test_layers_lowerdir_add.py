"""The kernel's newer layer options, lowerdir+=DIR and datadir+=DIR
(Documentation/filesystems/overlayfs.rst, "Multiple lower layers" and
"Data-only lower layers", since v6.8): one layer per option, appended in
order; the name is taken as it is (a ':' needs no escape, and no
backslash is removed); they may not follow lowerdir=, a regular layer
may not follow a data-only one, and datadir+= needs a lowerdir+=. Also
the legacy lowerdir=/upperdir=/workdir= with '\\:' and '\\,' escapes in
the names. Each compared with kernel overlayfs mounted on the same layers
by mount(8) (which passes the option string to mount(2) as it is)."""
import os
import subprocess

import pytest

from conftest import Mount
from layer_helpers import assert_same, mkfile, snapshot
from prism_helpers import cli, status_json
from test_layers_dataonly import build as build_dataonly
from test_layers_dataonly import read
from test_layers_lowers import build as build_three
from test_layers_lowers import three
from test_layers_mount import Namespace  # noqa: F401 (the ns fixture's class)
from test_layers_mount import ns

assert three and ns  # the fixtures, used by pytest

T = 1_600_000_000_000_000_123


def kernel_mount(d, opts):
    """mount -t overlay with opts; True if the kernel mounted it."""
    res = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, d["K"]],
                         capture_output=True, text=True)
    if res.returncode == 0:
        d["mounts"].append(d["K"])
    return res.returncode == 0


def prism_mount(d, opts, source="none"):
    m = Mount(source, d["P"], ["-o", opts])
    d["mounts"].append(m)
    m.start()
    return m


def refused(d, opts):
    """prismfs refuses opts in one line, exit 2, mounting nothing."""
    res = cli("mount", "-o", opts, "none", d["P"])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, (opts, res.returncode, res.stderr)
    assert len(lines) == 1, lines
    assert not os.path.ismount(d["P"])
    return lines[0]


def uppers(d):
    out = []
    for tag in ("k", "p"):
        u, w = (os.path.join(d["K"] + s, tag) for s in (".up", ".wk"))
        os.makedirs(u)
        os.makedirs(w)
        os.utime(u, ns=(T, T))  # the merged root shows the upper's times
        out.append((u, w))
    return out


@pytest.mark.parametrize("upper", [False, True], ids=["lowers-only", "with-upper"])
def test_lowerdir_add_as_the_kernels(three, upper):
    """lowerdir+=L1,lowerdir+=L2,lowerdir+=L3 merges as lowerdir=L1:L2:L3,
    the first option the top layer, read-only without an upper; a write
    through an upper lands in the upper, as the kernel's."""
    d = three
    build_three(d)
    opts = ",".join("lowerdir+=" + d[n] for n in ("L1", "L2", "L3"))
    (uk, wk), (up, wp) = uppers(d)
    assert kernel_mount(d, opts + (",upperdir=%s,workdir=%s" % (uk, wk) if upper else ""))
    prism_mount(d, opts + (",upperdir=%s,workdir=%s" % (up, wp) if upper else ""))
    assert_same(snapshot(d["K"]), snapshot(d["P"]), "lowerdir+= differs from the kernel's")
    assert len(status_json(d["P"])["layers"]["lowers"]) == 3
    for root, u in ((d["K"], uk), (d["P"], up)):
        try:
            with open(os.path.join(root, "new"), "w") as f:
                f.write("new")
            res = "written"
        except OSError as e:
            res = e.errno
        if upper:
            assert res == "written" and os.path.exists(os.path.join(u, "new"))
        else:
            assert res == 30  # EROFS
    for n in ("L1", "L2", "L3"):
        assert not os.path.exists(os.path.join(d[n], "new"))


def test_datadir_add_as_the_kernels(three):
    """lowerdir+=L1,datadir+=L2,datadir+=L3 is lowerdir=L1::L2::L3: the
    data-only layers never show, metacopy files of L1 reach their data."""
    d = three
    data = build_dataonly(d)
    opts = "lowerdir+=%s,datadir+=%s,datadir+=%s" % (d["L1"], d["L2"], d["L3"])
    assert kernel_mount(d, opts)
    prism_mount(d, opts)
    assert_same(snapshot(d["K"]), snapshot(d["P"]), "datadir+= differs from the kernel's")
    assert sorted(os.listdir(d["P"])) == ["a", "b", "both", "plain", "sub"]
    assert read(os.path.join(d["P"], "b")) == data["g"]
    lay = status_json(d["P"])["layers"]
    assert len(lay["lowers"]) == 3 and lay["data_only"] == 2, lay


def test_names_taken_as_they_are(three):
    """With lowerdir+= a ':' in a name needs no escape, and a backslash is
    part of the name (the kernel unescapes nothing there): a directory
    named 'b\\,c' is given as lowerdir+=.../b\\,c."""
    d = three
    base = os.path.dirname(d["L1"])
    colon, bs = os.path.join(base, "x:y"), os.path.join(base, "b\\,c")
    mkfile(os.path.join(colon, "in_colon"), b"colon")
    mkfile(os.path.join(bs, "in_backslash"), b"backslash")
    mkfile(os.path.join(d["L1"], "top"), b"top")
    opts = "lowerdir+=%s,lowerdir+=%s,lowerdir+=%s" % (d["L1"], colon, bs)
    assert kernel_mount(d, opts)
    prism_mount(d, opts)
    assert sorted(os.listdir(d["K"])) == ["in_backslash", "in_colon", "top"]
    assert_same(snapshot(d["K"]), snapshot(d["P"]), "names differ from the kernel's")


def test_legacy_escapes_as_the_kernels(three):
    """lowerdir= splits at ':' and takes '\\:' as a colon in a name; every
    layer option's value may hold '\\,' for a comma (the kernel's option
    splitting); upperdir= and workdir= are unescaped too."""
    d = three
    base = os.path.dirname(d["L1"])
    colon, comma = os.path.join(base, "x:y"), os.path.join(base, "p,q")
    mkfile(os.path.join(colon, "in_colon"), b"colon")
    mkfile(os.path.join(comma, "in_comma"), b"comma")
    mkfile(os.path.join(d["L1"], "top"), b"top")
    ups = []
    for tag in ("k", "p"):
        u, w = os.path.join(base, "up,%s:u" % tag), os.path.join(base, "wk,%s" % tag)
        os.makedirs(u)
        os.makedirs(w)
        os.utime(u, ns=(T, T))
        ups.append((u, w))

    def esc(p):
        return p.replace(":", "\\:").replace(",", "\\,")
    low = "lowerdir=%s:%s:%s" % (esc(d["L1"]), esc(colon), esc(comma))
    (uk, wk), (up, wp) = ups
    assert kernel_mount(d, "%s,upperdir=%s,workdir=%s" % (low, esc(uk), esc(wk)))
    prism_mount(d, "%s,upperdir=%s,workdir=%s" % (low, esc(up), esc(wp)))
    assert sorted(os.listdir(d["K"])) == ["in_colon", "in_comma", "top"]
    assert_same(snapshot(d["K"]), snapshot(d["P"]), "escapes differ from the kernel's")
    for root, u in ((d["K"], uk), (d["P"], up)):
        with open(os.path.join(root, "new"), "w") as f:
            f.write("new")
        assert os.path.exists(os.path.join(u, "new")), u


@pytest.mark.parametrize("case", ["plus after lowerdir=", "regular after data-only",
                                  "datadir+= alone"])
def test_refused_as_the_kernel(three, case):
    """What the kernel refuses, prismfs refuses in one line."""
    d = three
    opts = {"plus after lowerdir=": "lowerdir=%s:%s,lowerdir+=%s" % (d["L1"], d["L2"], d["L3"]),
            "regular after data-only": "lowerdir+=%s,datadir+=%s,lowerdir+=%s"
                                       % (d["L1"], d["L2"], d["L3"]),
            "datadir+= alone": "datadir+=%s,datadir+=%s" % (d["L1"], d["L2"])}[case]
    assert not kernel_mount(d, opts), "the kernel mounted %s" % opts
    line = refused(d, opts)
    want = {"plus after lowerdir=": "cannot follow lowerdir=",
            "regular after data-only": "cannot follow data-only",
            "datadir+= alone": "needs a lowerdir+="}[case]
    assert want in line, line


@pytest.mark.parametrize("case", ["lowerdir= after plus", "empty", "with --data-lower",
                                  "with --lower"])
def test_refused_mixtures(three, case):
    """Beyond the kernel: a lowerdir= after lowerdir+= (the kernel's would
    replace the layers; prismfs refuses, as lowerdir= twice), an empty
    name, and the plus options beside the long options for layers."""
    d = three
    args = {"lowerdir= after plus": ["-o", "lowerdir+=%s,lowerdir=%s:%s"
                                     % (d["L1"], d["L2"], d["L3"])],
            "empty": ["-o", "lowerdir+=%s,lowerdir+=" % d["L1"]],
            "with --data-lower": ["-o", "lowerdir+=%s,datadir+=%s" % (d["L1"], d["L2"]),
                                  "--data-lower", d["L3"]],
            "with --lower": ["-o", "lowerdir+=%s" % d["L1"], "--lower", d["L2"]]}[case]
    res = cli("mount", *args, "none", d["P"])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, (case, res.returncode, res.stderr)
    want = {"lowerdir= after plus": "cannot follow lowerdir+=", "empty": "needs a directory",
            "with --data-lower": "not both", "with --lower": "not both"}[case]
    assert want in lines[0], lines[0]
    assert not os.path.ismount(d["P"])


def test_fstab_line_with_lowerdir_add(three, ns, workdir):
    """An overlay fstab line in the lowerdir+= spelling, its type changed to
    fuse.prismfs, mounts through mount(8) and shows what the kernel's does."""
    d = three
    build_three(d)
    (uk, wk), (up, wp) = uppers(d)
    lows = ",".join("lowerdir+=" + d[n] for n in ("L1", "L2"))
    assert kernel_mount(d, "%s,upperdir=%s,workdir=%s" % (lows, uk, wk))
    fstab = os.path.join(workdir, "fstab")
    with open(fstab, "w") as f:
        f.write("overlay %s fuse.prismfs %s,upperdir=%s,workdir=%s,nofail 0 0\n"
                % (d["P"], lows, up, wp))
    res = ns.run("mount", "-T", fstab, d["P"])
    assert res.returncode == 0, res.stderr
    try:
        res = ns.run("sh", "-c", 'cat "$0/d/a"; echo x > "$0/new"', d["P"])
        assert res.returncode == 0, res.stderr
        with open(os.path.join(d["K"], "d", "a")) as f:
            assert res.stdout == f.read()
        assert os.path.exists(os.path.join(up, "new"))
    finally:
        assert ns.run("umount", d["P"]).returncode == 0


def test_fuse_overlayfs_synopsis(three):
    """prismfs [mount] -o lowerdir+=...,upperdir=...,workdir=... MOUNTPOINT (no
    SOURCE: the first lowerdir+= is it), and a lone datadir+= there is
    refused naming what is missing."""
    d = three
    build_three(d)
    (uk, wk), (up, wp) = uppers(d)
    lows = ",".join("lowerdir+=" + d[n] for n in ("L1", "L2", "L3"))
    assert kernel_mount(d, "%s,upperdir=%s,workdir=%s" % (lows, uk, wk))
    # mount -f -o OPTS MOUNTPOINT: the options stand where SOURCE would
    m = Mount("%s,upperdir=%s,workdir=%s" % (lows, up, wp), d["P"], ["-o"])
    d["mounts"].append(m)
    m.start()
    assert_same(snapshot(d["K"]), snapshot(d["P"]), "the synopsis differs from the kernel's")
    m.stop()
    res = cli("-o", "datadir+=%s" % d["L1"], d["P"])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, (res.returncode, res.stderr)
    assert "needs a lowerdir+=" in lines[0], lines[0]
