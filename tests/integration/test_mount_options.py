"""Every option of `prismfs mount` as -o key[=value] (issue 18, item 5), and
the kernel overlay options (item 4): an -o form has the effect of its long
form, seen on a real mount (EROFS, the mapping table applied, the upper's
whiteouts, status); a kernel overlay option is accepted where its value
means what prismfs does (and the mount then behaves so) and refused where
not, with exit status 2, one line naming it, nothing mounted and nothing
written; fuse-overlayfs's `prismfs -o lowerdir=... MOUNTPOINT`, mount(8)
with -t fuse.prismfs, and a kernel overlay fstab line with its type changed
work.  The mount(8) tests run the real chain (mount -> mount.fuse3 -> sh ->
prismfs) in a private mount namespace (see test_layers_mount.py); every
mount is unmounted in teardown."""
import errno
import json
import os
import struct
import subprocess

import pytest

from conftest import PRISMFS, mounts_under
from prism_helpers import (assert_one_error_line, bg, cli, make_dirs,  # noqa: F401
                           status_json, stderr_lines, wait_for)
from test_layers_mount import Namespace


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def read(path):
    with open(path) as f:
        return f.read()


class Dirs:
    """SOURCE (also the lower), an upper, a work directory, a mirror, and a
    mount point per spelling, so both forms run side by side."""

    def __init__(self, workdir):
        self.w = workdir
        (self.S, self.U, self.W, self.D, self.M1, self.M2) = make_dirs(
            workdir, "S", "U", "W", "D", "M1", "M2")
        write(os.path.join(self.S, "a.txt"), "a\n")
        write(os.path.join(self.S, "real.txt"), "real\n")
        write(os.path.join(self.S, "secret.txt"), "secret\n")
        write(os.path.join(self.S, "dir/in.txt"), "in\n")
        write(os.path.join(self.D, "m.txt"), "mirrored\n")


@pytest.fixture
def dirs(workdir):
    return Dirs(workdir)


def mount_o(bg, d, mnt, opts, kind):
    """The mount(8) helper form: prismfs SOURCE MOUNTPOINT -o OPTS."""
    bg.mountpoints.append(os.path.realpath(mnt))
    return cli("none" if kind == "mirror" else d.S, mnt, "-o", opts, timeout=30)


def errno_of(fn):
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
    return "ok"


# Each case: id, long-form arguments, -o items, kind (plain, layered, mirror)
# and a check returning what the mount did; it must be the same for both
# spellings and what the option means (want).
def c_read_only(d, m, u):
    return errno_of(lambda: write(os.path.join(m, "new.txt"), "x"))


def c_map(d, m, u):
    return (read(os.path.join(m, "alias.txt")),
            errno_of(lambda: os.stat(os.path.join(m, "secret.txt"))))


def c_log(d, m, u, fmt):
    os.stat(os.path.join(m, "a.txt"))
    log = os.path.join(d.w, "ops-%s.log" % os.path.basename(m))
    cli("unmount", m)
    lines = [ln for ln in read(log).splitlines() if ln.strip()]
    if fmt == "json":
        return all(isinstance(json.loads(ln), dict) for ln in lines) and bool(lines)
    return any("a.txt" in ln for ln in lines)


def c_status(*keys):
    def check(d, m, u):
        s = status_json(m)
        out = {}
        for k in keys:
            v = s
            for part in k.split("."):
                v = v[part]
            out[k] = v
        return out
    return check


def c_volatile(d, m, u):
    before = os.stat(os.path.join(m, "a.txt")).st_size
    with open(os.path.join(d.S, "a.txt"), "a") as f:
        f.write("behind the mount\n")
    after = os.stat(os.path.join(m, "a.txt")).st_size
    with open(os.path.join(d.S, "a.txt"), "w") as f:
        f.write("a\n")
    return (before, after, status_json(m)["timeout"])


def c_whiteout(d, m, u):
    os.unlink(os.path.join(m, "a.txt"))
    return (os.path.exists(os.path.join(m, "a.txt")), sorted(os.listdir(u)))


def c_on_unmount(d, m, u):
    write(os.path.join(m, "new.txt"), "x")
    res = cli("unmount", m)
    assert res.returncode == 0, res.stderr
    return sorted(os.listdir(u))


def c_mirror(d, m, u):
    s = status_json(m)["cache"]
    return (read(os.path.join(m, "m.txt")), s["mirror"] == os.path.realpath(d.D),
            s["cache_size"], s["max_dirty"], s["lazy_load"], s["write_back_delay"])


CASES = [
    ("read_only", ["--read-only"], "read_only", "plain", c_read_only, "EROFS"),
    ("map", ["--map", "{w}/map.json"], "map={w}/map.json", "plain", c_map,
     ("real\n", "ENOENT")),
    ("log", ["--log", "{w}/ops-{m}.log"], "log={w}/ops-{m}.log", "plain",
     lambda d, m, u: c_log(d, m, u, "text"), True),
    ("log_format", ["--log", "{w}/ops-{m}.log", "--log-format", "json"],
     "log={w}/ops-{m}.log,log_format=json", "plain", lambda d, m, u: c_log(d, m, u, "json"),
     True),
    ("timeout", ["--timeout", "7"], "timeout=7", "plain", c_status("timeout"), {"timeout": 7.0}),
    ("passthrough", ["--passthrough", "off"], "passthrough=off", "plain",
     c_status("passthrough_option", "data_path"),
     {"passthrough_option": "off", "data_path": "daemon"}),
    ("uring", ["--uring", "off"], "uring=off", "plain", c_status("uring_option", "requests"),
     {"uring_option": "off", "requests": "/dev/fuse"}),
    ("node_fds", ["--node-fds", "100"], "node_fds=100", "plain",
     c_status("node_fds.budget"), {"node_fds.budget": 100}),
    ("volatile", ["--volatile"], "volatile", "plain", c_volatile, (2, 19, 0.0)),
    ("whiteout", ["--upper", "{U}", "--work", "{W}", "--whiteout", "file"],
     "upperdir={U},workdir={W},whiteout=file", "layered", c_whiteout,
     (False, [".wh.a.txt"])),
    ("on_unmount", ["--upper", "{U}", "--work", "{W}", "--on-unmount", "discard"],
     "upperdir={U},workdir={W},on_unmount=discard", "layered", c_on_unmount, []),
    ("mirror", ["--mirror", "{D}", "--cache-size", "64M", "--cache-max-dirty", "8M",
                "--lazy-load", "off", "--write-back", "0"],
     "mirror={D},cache_size=64M,cache_max_dirty=8M,lazy_load=off,write_back=0", "mirror",
     c_mirror, ("mirrored\n", True, 64 << 20, 8 << 20, False, 0.0)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_o_form_does_what_the_long_form_does(dirs, bg, case):
    name, long_args, o_items, kind, check, want = case
    d = dirs
    with open(os.path.join(d.w, "map.json"), "w") as f:
        json.dump({"/alias.txt": {"target": "real.txt"}, "/secret.txt": {}}, f)
    got = []
    for form, mnt in (("long", d.M1), ("-o", d.M2)):
        # each spelling gets a fresh upper: the first may have written one
        for n in os.listdir(d.U):
            subprocess.run(["rm", "-rf", os.path.join(d.U, n)], check=True)
        subst = dict(w=d.w, m=os.path.basename(mnt), U=d.U, W=d.W, D=d.D)
        if form == "long":
            args = [a.format(**subst) for a in long_args]
            if kind == "mirror":
                bg.mountpoints.append(os.path.realpath(mnt))
                res = cli("mount", *args, mnt, timeout=30)
            else:
                res = bg.mount(d.S, mnt, *args)
        else:
            res = mount_o(bg, d, mnt, o_items.format(**subst), kind)
        assert res.returncode == 0, "%s form of %s: mount failed: %s" % (form, name, res.stderr)
        got.append(check(d, mnt, d.U))
        cli("unmount", mnt)
    assert got[0] == want, "--%s did not do what it means: %r" % (name, got[0])
    assert got[1] == got[0], "-o %s did %r, its long form %r" % (o_items, got[1], got[0])


def test_map_max_as_o(dirs, bg):
    """map_max= caps a mapping pipe's messages as --map-max does."""
    d = dirs
    reasons = []
    for form, mnt in (("long", d.M1), ("-o", d.M2)):
        fifo = os.path.join(d.w, "pipe-" + os.path.basename(mnt))
        os.mkfifo(fifo)
        if form == "long":
            res = bg.mount(d.S, mnt, "--map", fifo, "--map-max", "1K")
        else:
            res = mount_o(bg, d, mnt, "map=%s,map_max=1K" % fifo, "plain")
        assert res.returncode == 0, "%s form: %s" % (form, res.stderr)
        big = json.dumps({"/alias.txt": {"target": "real.txt"}, "/pad": {"target": "x" * 1500}})
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the daemon holds it open
        try:
            os.write(fd, struct.pack(">I", len(big)) + big.encode())
        finally:
            os.close(fd)
        assert wait_for(lambda: status_json(mnt)["mapping"]["rejected"] == 1, 10), (
            "%s form: a message over map_max was not rejected" % form)
        reasons.append(status_json(mnt)["mapping"]["last_rejected_reason"])
        assert not os.path.exists(os.path.join(mnt, "alias.txt"))
    assert "1024-byte cap" in reasons[0], reasons[0]
    assert reasons[1] == reasons[0]


def test_threads_as_o(dirs, bg):
    """threads= is parsed as --threads (status shows no thread count): the
    same bounds, and a valid value mounts."""
    d = dirs
    for bad in ("threads=0", "threads=many"):
        res = cli(d.S, d.M1, "-o", bad)
        assert_one_error_line(res, "-o " + bad)
        assert res.returncode == 2 and bad.split("=")[1] in res.stderr, res.stderr
    res = mount_o(bg, d, d.M1, "threads=2", "plain")
    assert res.returncode == 0, res.stderr
    assert read(os.path.join(d.M1, "a.txt")) == "a\n"


@pytest.mark.parametrize("bad", ["read_only=1", "timeout", "log_format=xml", "lazy_load=maybe",
                                 "passthrough=sometimes", "cache_size=1K",
                                 "write_back=1"])
def test_bad_o_value_is_refused_in_one_line(dirs, bad):
    d = dirs
    res = cli(d.S, d.M1, "-o", bad)
    assert_one_error_line(res, "-o " + bad)
    assert res.returncode == 2, "exit %d for -o %s" % (res.returncode, bad)
    assert bad.split("=")[0] in res.stderr, res.stderr
    for q in ("`", "'", '"'):
        assert q not in res.stderr, "stray quote %s in %r" % (q, res.stderr)
    assert not mounts_under(os.path.realpath(d.w)), "a refused option mounted"


# --------------------------------------------------------------------------
# kernel overlay options

REFUSED = ["redirect_dir=sometimes", "index=on", "uuid=on",
           "nfs_export=on", "xino=sometimes", "metacopy=yes"]


@pytest.mark.parametrize("opt", REFUSED)
def test_kernel_option_prismfs_cannot_honour_is_refused(dirs, opt):
    d = dirs
    o = "lowerdir=%s,upperdir=%s,workdir=%s,%s" % (d.S, d.U, d.W, opt)
    res = cli("none", d.M1, "-o", o)
    assert_one_error_line(res, "-o " + opt)
    assert res.returncode == 2, "-o %s: exit %d, not 2" % (opt, res.returncode)
    assert opt in stderr_lines(res.stderr)[0], "the error does not name %s: %r" % (opt,
                                                                                  res.stderr)
    assert not mounts_under(os.path.realpath(d.w)), "-o %s mounted" % opt
    assert os.listdir(d.U) == [] and os.listdir(d.W) == [], "-o %s wrote to the layers" % opt


ACCEPTED = "redirect_dir=off,index=off,metacopy=off,xino=auto,uuid=null,nfs_export=off"


@pytest.mark.parametrize("extra", [ACCEPTED, "redirect_dir=nofollow,xino=off,uuid=off",
                                   "xino=on,uuid=auto"])
def test_kernel_options_accepted_mean_what_prismfs_does(dirs, bg, extra):
    d = dirs
    write(os.path.join(d.S, "dir/link1"), "linked\n")
    os.link(os.path.join(d.S, "dir/link1"), os.path.join(d.S, "dir/link2"))
    real = os.stat(os.path.join(d.S, "a.txt"))
    o = "lowerdir=%s,upperdir=%s,workdir=%s,%s" % (d.S, d.U, d.W, extra)
    res = mount_o(bg, d, d.M1, o, "layered")
    assert res.returncode == 0, "-o %s was refused: %s" % (extra, res.stderr)
    m = d.M1
    # redirect_dir=off/nofollow: a directory with lower parts does not move
    assert errno_of(lambda: os.rename(os.path.join(m, "dir"), os.path.join(m, "moved"))) \
        == "EXDEV"
    # index=off: a copy-up breaks a lower file's hard links
    with open(os.path.join(m, "dir/link1"), "a") as f:
        f.write("more\n")
    assert read(os.path.join(m, "dir/link2")) == "linked\n"
    assert os.stat(os.path.join(m, "dir/link1")).st_nlink == 1
    # xino, one filesystem: a lower object keeps its real inode number
    assert os.stat(os.path.join(m, "a.txt")).st_ino == real.st_ino
    # metacopy=off: a chmod copies the data up with the metadata
    os.chmod(os.path.join(m, "real.txt"), 0o600)
    assert read(os.path.join(d.U, "real.txt")) == "real\n"
    assert read(os.path.join(d.S, "dir/link1")) == "linked\n", "a lower changed"


def test_userxattr_keeps_the_layers_xattrs_in_user(dirs, bg):
    d = dirs
    o = "lowerdir=%s,upperdir=%s,workdir=%s,userxattr" % (d.S, d.U, d.W)
    res = mount_o(bg, d, d.M1, o, "layered")
    assert res.returncode == 0, res.stderr
    m = d.M1
    subprocess.run(["rm", "-rf", os.path.join(m, "dir")], check=True)
    os.mkdir(os.path.join(m, "dir"))
    assert os.listdir(os.path.join(m, "dir")) == [], "the new directory is not opaque"
    up = os.path.join(d.U, "dir")
    assert os.getxattr(up, "user.overlay.opaque") == b"y"
    with pytest.raises(OSError) as e:
        os.getxattr(up, "trusted.overlay.opaque")
    assert e.value.errno == errno.ENODATA, "userxattr still wrote trusted.overlay.opaque"
    # the layers' own xattrs stay out of the view, as the kernel's userxattr
    assert not [x for x in os.listxattr(os.path.join(m, "dir")) if x.startswith("user.overlay.")]


def test_fuse_overlayfs_synopsis(dirs, bg):
    d = dirs
    bg.mountpoints.append(os.path.realpath(d.M1))
    res = cli("-o", "lowerdir=%s,upperdir=%s,workdir=%s" % (d.S, d.U, d.W), d.M1)
    assert res.returncode == 0, "prismfs -o lowerdir=... MOUNTPOINT failed: %s" % res.stderr
    assert read(os.path.join(d.M1, "a.txt")) == "a\n"
    write(os.path.join(d.M1, "new.txt"), "up\n")
    assert read(os.path.join(d.U, "new.txt")) == "up\n"
    assert not os.path.exists(os.path.join(d.S, "new.txt"))
    assert status_json(d.M1)["layers"]["upper"] == os.path.realpath(d.U)


# --------------------------------------------------------------------------
# mount(8) and fstab

@pytest.fixture
def ns(workdir):
    if not os.path.isdir("/usr/local/sbin"):
        pytest.skip("no /usr/local/sbin to put prismfs on mount.fuse3's search path")
    assert [h for h in ("/sbin/mount.fuse.prismfs", "/sbin/mount.fuse") if os.path.exists(h)], (
        "mount(8) has no helper for fuse.prismfs (/sbin/mount.fuse from the fuse3 package, "
        "or the link scripts/install.sh makes)")
    n = Namespace(workdir)
    try:
        yield n
    finally:
        n.close(os.path.realpath(workdir))


def test_kernel_overlay_fstab_line(dirs, ns):
    """An overlay fstab line as the kernel takes it, its type changed."""
    d = dirs
    fstab = os.path.join(d.w, "fstab")
    with open(fstab, "w") as f:
        f.write("overlay %s fuse.prismfs noauto,x-systemd.requires=%s,lowerdir=%s,"
                "upperdir=%s,workdir=%s,redirect_dir=off,index=off,metacopy=off,xino=auto,"
                "uuid=null,userxattr,passthrough=off,timeout=5 0 0\n"
                % (d.M1, d.S, d.S, d.U, d.W))
    res = ns.run("mount", "-T", fstab, d.M1)
    assert res.returncode == 0, "mount -T with a kernel overlay line failed: %s" % res.stderr
    assert ns.mounted(d.M1)
    res = ns.sh('cat "$0/a.txt" && rm -r "$0/dir" && mkdir "$0/dir" && echo n > "$0/n.txt"',
                d.M1)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "a\n"
    assert read(os.path.join(d.U, "n.txt")) == "n\n"
    assert os.getxattr(os.path.join(d.U, "dir"), "user.overlay.opaque") == b"y"
    st = json.loads(ns.run(PRISMFS, "status", "--json", d.M1).stdout)
    assert (st["timeout"], st["passthrough_option"]) == (5.0, "off")
    res = ns.run("umount", d.M1)
    assert res.returncode == 0, res.stderr


def test_mount8_prismfs_options_and_mirror(dirs, ns):
    d = dirs
    res = ns.run("mount", "-t", "fuse.prismfs", "-o",
                 "mirror=%s,cache_size=32M,write_back=0,read_only" % d.D, "none", d.M1)
    assert res.returncode == 0, "mount(8) of a cached mount failed: %s" % res.stderr
    res = ns.sh('cat "$0/m.txt"; echo x > "$0/w.txt"', d.M1)
    assert res.stdout == "mirrored\n"
    assert "Read-only file system" in res.stderr, res.stderr
    st = json.loads(ns.run(PRISMFS, "status", "--json", d.M1).stdout)
    assert st["read_only"] is True and st["cache"]["cache_size"] == 32 << 20
    res = ns.run(PRISMFS, "unmount", d.M1)
    assert res.returncode == 0, res.stderr


def test_mount8_refused_kernel_option(dirs, ns):
    d = dirs
    o = "lowerdir=%s,upperdir=%s,workdir=%s,index=on" % (d.S, d.U, d.W)
    res = ns.run("mount", "-t", "fuse.prismfs", "-o", o, "overlay", d.M1)
    assert res.returncode != 0, "mount(8) with index=on succeeded"
    lines = stderr_lines(res.stderr)
    assert len(lines) == 1 and lines[0].startswith("prismfs: ") and "index=on" in lines[0], (
        "mount(8) should pass on prismfs's one line, got %r" % res.stderr)
    assert not ns.mounted(d.M1)
    assert os.listdir(d.U) == []
