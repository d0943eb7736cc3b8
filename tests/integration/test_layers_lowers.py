"""A mount of lowers only (no upper), as the kernel mounts lowerdir=A:B
alone: read-only (every change fails with EROFS, the layers stay as they
were), the view merging the lowers with whiteouts and opaque directories.
Compared with kernel overlayfs mounted on the same layers. Data-only lower
layers (lowerdir=A:B::C) are test_layers_dataonly.py's; what the kernel
refuses of their spelling is refused here in one line."""
import os
import subprocess

import pytest

from conftest import Mount
from layer_helpers import (Untouched, assert_same, mkdir, mkfile, mkwhiteout, mksymlink,
                           set_opaque, snapshot, walk)
from prism_helpers import cli, run_as, status_json


@pytest.fixture
def three(workdir):
    """Layers L1 (top), L2, L3 and mount points K (kernel) and P (prismfs);
    whatever is mounted is unmounted in teardown."""
    if os.geteuid() != 0:
        pytest.skip("compared with mount -t overlay (root)")
    base = os.path.join(workdir, "lowers")
    d = {n: os.path.join(base, n) for n in ("L1", "L2", "L3", "K", "P")}
    for p in d.values():
        os.makedirs(p)
        os.chmod(p, 0o755)
    mounts = []
    d["mounts"] = mounts
    yield d
    failure = None
    for m in mounts:
        try:
            if isinstance(m, Mount):
                m.stop()
                m.check_clean_exit()
        except Exception as e:  # unmount everything before reporting
            failure = failure or e
        finally:
            if isinstance(m, Mount):
                m.cleanup()
            elif os.path.ismount(m):
                subprocess.run(["umount", "-l", m], capture_output=True)
    if failure:
        raise failure


def build(d):
    L1, L2, L3 = (lambda *p, n=n: os.path.join(d[n], *p) for n in ("L1", "L2", "L3"))
    # the bottom layer
    mkfile(L3("f1"), b"bottom f1", mtime_ns=1_600_000_000_000_000_001)
    mkfile(L3("d/a"), b"bottom a")
    mkfile(L3("d/b"), b"bottom b", mode=0o600, uid=7, gid=8)
    mkfile(L3("o/x"), b"hidden by the opaque o above")
    mkfile(L3("w"), b"whited out in L2")
    mkfile(L3("wd/inner"), b"whited-out directory")
    mkdir(L3("r/sub"))
    mkfile(L3("hl"), b"hard linked")
    os.link(L3("hl"), L3("d/hl2"))
    mksymlink(L3("s"), "f1")
    os.mkfifo(L3("p"))
    mkfile(L3("deep/er/est"), b"deep")
    # the middle layer
    mkwhiteout(L2("w"))
    mkfile(L2("o/y"), b"opaque dir's own")
    set_opaque(L2("o"))
    mkfile(L2("d/c"), b"middle c")
    mkfile(L2("f1"), b"middle f1 replaces the bottom one", mode=0o640)
    mkfile(L2("r"), b"a file over a lower directory")
    mkfile(L2("deep/er/mid"), b"mid")
    mkwhiteout(L2("d/b"))
    mkfile(L2("d/b2"), b"beside a whiteout")
    # the top layer
    mkwhiteout(L1("wd"))
    mkfile(L1("d/a"), b"top a", mode=0o604)
    mkdir(L1("e/deep"), mode=0o700)
    mkfile(L1("deep/er/top"), b"top")
    mkfile(L1("t"), b"top only")
    mkdir(L1("d"), mode=0o775)
    mkdir(L1("deep"), mode=0o711)


def mount_both(d, prism_args=None):
    opts = "lowerdir=%s:%s:%s" % (d["L1"], d["L2"], d["L3"])
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, d["K"]], check=True)
    d["mounts"].append(d["K"])
    m = Mount("none" if prism_args is None else d["L1"], d["P"],
              ["-o", opts] if prism_args is None else prism_args)
    d["mounts"].append(m)
    m.start()
    return m


def inodes(root):
    out = {}
    for rel in walk(root):
        st = os.lstat(os.path.normpath(os.path.join(root, rel)))
        out[rel] = st.st_ino
    return out


@pytest.mark.parametrize("spelling", ["lowerdir", "--lower"])
def test_view_is_the_kernels(three, spelling):
    """Names, types, modes, owners, times, contents, hard links and inode
    numbers as kernel overlayfs shows them: whiteouts hide, opaque
    directories stop the merge, a file over a directory replaces it."""
    d = three
    build(d)
    untouched = Untouched(d["L1"], d["L2"], d["L3"])
    args = None if spelling == "lowerdir" else ["--lower", d["L2"], "--lower", d["L3"]]
    mount_both(d, args)
    want, got = snapshot(d["K"]), snapshot(d["P"])
    assert_same(want, got, "the lowers-only mount differs from the kernel's")
    assert "w" not in got["entries"] and "o/x" not in got["entries"], sorted(got["entries"])
    assert "d/b" not in got["entries"] and "wd" not in got["entries"]
    kino, pino = inodes(d["K"]), inodes(d["P"])
    wrong = ["%s: kernel %d, prismfs %d" % (k, kino[k], pino[k]) for k in sorted(kino)
             if k != "." and kino[k] != pino[k]]
    assert not wrong, "inode numbers differ:\n" + "\n".join(wrong)
    st = status_json(d["P"])
    assert st["read_only"] is True, st
    assert st["layers"]["upper"] is None and len(st["layers"]["lowers"]) == 3, st["layers"]
    untouched.check()


CHANGES = r'''
import errno, json, os, sys
M = json.load(sys.stdin)
p = lambda *x: os.path.join(M, *x)
def e(fn, *a, **kw):
    try:
        r = fn(*a, **kw)
        if fn is os.open:
            os.close(r)
        return "ok"
    except OSError as x:
        return errno.errorcode[x.errno]
def write(path):
    with open(path, "r+b") as f:
        f.write(b"x")
out = {
 "read": e(lambda: open(p("t"), "rb").read()),
 "write": e(write, p("t")),
 "open_wronly": e(os.open, p("d/c"), os.O_WRONLY),
 "open_trunc": e(os.open, p("t"), os.O_RDONLY | os.O_TRUNC),
 "create": e(os.open, p("new"), os.O_WRONLY | os.O_CREAT, 0o644),
 "create_existing": e(os.open, p("t"), os.O_WRONLY | os.O_CREAT, 0o644),
 "tmpfile": e(os.open, M, os.O_WRONLY | os.O_TMPFILE, 0o600),
 "mkdir": e(os.mkdir, p("nd")),
 "mkfifo": e(os.mkfifo, p("nf")),
 "symlink": e(os.symlink, "t", p("ns")),
 "link": e(os.link, p("t"), p("nl")),
 "unlink": e(os.unlink, p("t")),
 "unlink_missing": e(os.unlink, p("w")),
 "rmdir": e(os.rmdir, p("e/deep")),
 "rename": e(os.rename, p("t"), p("t2")),
 "rename_dir": e(os.rename, p("d"), p("d2")),
 "chmod": e(os.chmod, p("t"), 0o600),
 "chown": e(os.chown, p("t"), 0, 0),
 "utime": e(os.utime, p("t"), ns=(1, 1)),
 "truncate": e(os.truncate, p("t"), 0),
 "setxattr": e(os.setxattr, p("t"), "user.x", b"1"),
 "removexattr": e(os.removexattr, p("t"), "user.none"),
 "access_w": os.access(p("t"), os.W_OK),
 "access_r": os.access(p("t"), os.R_OK),
 "listdir_private": e(os.listdir, p("e/deep")),
}
print(json.dumps(out))
'''


def test_changes_fail_with_erofs(three):
    """Every change fails as on the kernel's mount (EROFS, or what the
    kernel checks first), for root and for another user; nothing reaches
    the layers."""
    d = three
    build(d)
    untouched = Untouched(d["L1"], d["L2"], d["L3"])
    mount_both(d)
    for uid in (0, 65534):
        want = run_as(uid, uid, [], CHANGES, d["K"])
        got = run_as(uid, uid, [], CHANGES, d["P"])
        assert got == want, "uid %d: kernel %r, prismfs %r" % (uid, want, got)
    assert want["write"] == "EROFS" and want["access_r"] is True
    assert run_as(0, 0, [], CHANGES, d["P"])["mkdir"] == "EROFS"
    untouched.check()


def test_fstab_options_as_the_kernel_takes_them(three):
    """An overlay line with its type changed: lowerdir=A:B with ro and the
    kernel overlay options prismfs accepts."""
    d = three
    build(d)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir=%s:%s,"
                    "redirect_dir=off,index=off,xino=auto" % (d["L1"], d["L2"]), d["K"]],
                   check=True)
    d["mounts"].append(d["K"])
    m = Mount("none", d["P"], ["-o", "ro,lowerdir=%s:%s,redirect_dir=off,index=off,xino=auto"
                               % (d["L1"], d["L2"])])
    d["mounts"].append(m)
    m.start()
    assert_same(snapshot(d["K"]), snapshot(d["P"]), "lowerdir=L1:L2 differs from the kernel's")


@pytest.mark.parametrize("case", ["regular after data-only", "trailing ::", "one lowerdir",
                                  "work without upper"])
def test_refused_in_one_line(three, case):
    d = three
    opts = {"regular after data-only": "lowerdir=%s::%s:%s" % (d["L1"], d["L2"], d["L3"]),
            "trailing ::": "lowerdir=%s::" % d["L1"],
            "one lowerdir": "lowerdir=%s" % d["L1"],
            "work without upper": "lowerdir=%s:%s,workdir=%s" % (d["L1"], d["L2"], d["L3"])}
    res = cli("mount", "-o", opts[case], "none", d["P"])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, (case, res.returncode, res.stderr)
    assert len(lines) == 1, lines
    want = {"regular after data-only": "data-only", "trailing ::": "empty directory",
            "one lowerdir": "lowerdir=A:B", "work without upper": "workdir="}[case]
    assert want in lines[0], lines[0]
    assert not os.path.ismount(d["P"])
    assert os.listdir(d["L1"]) == [] and os.listdir(d["L3"]) == []


def test_reads_pass_through_the_kernel(three):
    """Nothing is ever copied up, so lower files are read with kernel
    passthrough where the mount has it (the data path the plain mirror
    uses), and read the same either way."""
    d = three
    build(d)
    mount_both(d)
    with open(os.path.join(d["P"], "d", "a"), "rb") as f:
        assert f.read() == b"top a"
        st = status_json(d["P"])
        if st["data_path"] == "kernel passthrough":
            assert st["backing_ids_open"] >= 1, st
    with open(os.path.join(d["P"], "deep", "er", "est"), "rb") as f:
        assert f.read() == b"deep"


def random_layers(d, seed):
    """Three layers drawn from one small name space, so that names meet
    across layers: files, directories (some opaque), symlinks and
    whiteouts, at two levels."""
    import random
    rnd = random.Random(seed)
    names = ["a", "b", "c", "d", "e"]
    opaque = set()
    order = ("L3", "L2", "L1")

    def below(depth, rel):
        """A layer under this one has the name, and none stops the merge
        on the way (a whiteout with nothing to hide is what the kernel
        never writes, and lists where a directory is not merged)."""
        parent = os.path.dirname(rel)
        if parent and (order[depth], parent) in opaque:
            return False
        return any(os.path.lexists(os.path.join(d[order[k]], rel)) for k in range(depth))

    for depth, layer in enumerate(order):
        root = d[layer]
        for top in names:
            for sub in [None] + names[:3]:
                rel = top if sub is None else os.path.join(top, sub)
                p = os.path.join(root, rel)
                if sub is not None and not os.path.isdir(os.path.join(root, top)):
                    continue
                if os.path.lexists(p) or rnd.random() < 0.35:
                    continue
                kind = rnd.choice(["file", "file", "dir", "dir", "link", "wh", "wh"]
                                  if below(depth, rel) else ["file", "dir", "dir", "link"])
                if kind == "file":
                    mkfile(p, ("%s %s %d" % (layer, rel, seed)).encode(),
                           mode=rnd.choice([0o644, 0o600, 0o755]))
                elif kind == "dir":
                    mkdir(p, mode=rnd.choice([0o755, 0o700, 0o775]))
                    if depth and rnd.random() < 0.3:
                        set_opaque(p)
                        opaque.add((layer, rel))
                elif kind == "link":
                    mksymlink(p, rnd.choice(names))
                else:
                    mkwhiteout(p)


@pytest.mark.parametrize("seed", range(16))
def test_random_layers_as_the_kernel_shows_them(three, seed):
    d = three
    random_layers(d, seed)
    mount_both(d)
    assert_same(snapshot(d["K"]), snapshot(d["P"]), "seed %d: the view differs" % seed)
    kino, pino = inodes(d["K"]), inodes(d["P"])
    wrong = ["%s: kernel %d, prismfs %d" % (k, kino[k], pino[k]) for k in sorted(kino)
             if k != "." and kino[k] != pino.get(k)]
    assert not wrong, "seed %d: inode numbers differ:\n%s" % (seed, "\n".join(wrong))
