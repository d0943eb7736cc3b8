"""The command line: help/version, refusing bad input with one line and
nothing mounted, status, and the mount options (--read-only, -o, --volatile,
--timeout, --threads, --log)."""
import errno
import json
import os
import stat
import subprocess

import pytest

from conftest import PRISMFS, force_unmount, is_mounted, mounts_under
from prism_helpers import (SETPRIV, assert_one_error_line, bg, cli, make_dirs,  # noqa: F401
                           mount_count, mountinfo_entry, prismfs_daemons_for, proc_state,
                           status_json, wait_for)


def nothing_left(workdir, what):
    """No mount and no prismfs daemon anywhere under workdir."""
    mps = mounts_under(os.path.realpath(workdir))
    assert not mps, "%s: something was mounted anyway: %s" % (what, mps)
    if not wait_for(lambda: not prismfs_daemons_for(workdir), 3):
        raise AssertionError("%s: a prismfs process is still running: %s"
                             % (what, prismfs_daemons_for(workdir)))


# --------------------------------------------------------------------------
# help and version

def test_version():
    res = cli("--version")
    assert res.returncode == 0, "prismfs --version exited %d: %s" % (res.returncode, res.stderr)
    assert "prismfs 0.1.0" in res.stdout, "prismfs --version printed %r" % res.stdout


def test_help():
    res = cli("--help")
    assert res.returncode == 0, "prismfs --help exited %d: %s" % (res.returncode, res.stderr)
    for word in ("mount", "unmount", "status"):
        assert word in res.stdout, "prismfs --help does not mention %r:\n%s" % (word, res.stdout)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_mount_help(flag):
    res = cli("mount", flag)
    assert res.returncode == 0, "prismfs mount %s exited %d: %s" % (flag, res.returncode,
                                                                     res.stderr)
    out = res.stdout
    assert "mount" in out and "SOURCE" in out.upper(), "no usage line on stdout:\n%s" % out
    for opt in ("--foreground", "--read-only", "--log", "--log-format", "--timeout",
                "--volatile", "--threads", "-o"):
        assert opt in out, "prismfs mount %s does not document %s:\n%s" % (flag, opt, out)


# --------------------------------------------------------------------------
# bad input: one line, non-zero, nothing mounted

def _bad_cases(w):
    src, mnt = os.path.join(w, "src"), os.path.join(w, "mnt")
    afile = os.path.join(w, "afile")
    missing = os.path.join(w, "missing")
    return {
        "missing source": ["mount", missing, mnt],
        "missing source (foreground)": ["mount", "-f", missing, mnt],
        "source is a file": ["mount", afile, mnt],
        "source is a file (foreground)": ["mount", "-f", afile, mnt],
        "missing mount point": ["mount", src, missing],
        "missing mount point (foreground)": ["mount", "-f", src, missing],
        "no arguments to mount": ["mount"],
        "only a source": ["mount", src],
        "an extra argument": ["mount", src, mnt, os.path.join(w, "extra")],
        "bad --log-format": ["mount", "--log-format", "xml", "--log",
                             os.path.join(w, "log"), src, mnt],
        "--log-format without a value": ["mount", src, mnt, "--log-format"],
        "--log without a value": ["mount", src, mnt, "--log"],
        "--log in a missing directory": ["mount", "--log", os.path.join(missing, "log"),
                                         src, mnt],
        "--threads not a number": ["mount", "--threads", "many", src, mnt],
        "--threads zero": ["mount", "--threads", "0", src, mnt],
        "--timeout not a number": ["mount", "--timeout", "soon", src, mnt],
        "--timeout negative": ["mount", "--timeout", "-5", src, mnt],
        "unknown -o option": ["mount", "-o", "no_such_fuse_option", src, mnt],
        "no command": [],
        "unknown command": ["frobnicate"],
        "unmount without a mount point": ["unmount"],
        "status without a mount point": ["status"],
    }


BAD_CASES = sorted(_bad_cases("/w"))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input(workdir, case):
    make_dirs(workdir, "src", "mnt")
    with open(os.path.join(workdir, "src", "hello"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(workdir, "afile"), "w") as f:
        f.write("not a directory\n")
    args = _bad_cases(workdir)[case]
    try:
        res = cli(*args, timeout=15)
    finally:
        stray = mounts_under(os.path.realpath(workdir))
    assert not stray, "%s: prismfs %s mounted something: %s" % (case, " ".join(args), stray)
    assert_one_error_line(res, "prismfs %s (%s)" % (" ".join(args), case))
    nothing_left(workdir, case)
    assert os.listdir(os.path.join(workdir, "mnt")) == [], "the mount point was changed"


@pytest.mark.parametrize("opt", ["--no-such-option", "-Z"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_unknown_option_is_usage_error(workdir, opt, where):
    src, mnt = make_dirs(workdir, "src", "mnt")
    args = ["mount", opt, src, mnt] if where == "before" else ["mount", src, mnt, opt]
    res = cli(*args, timeout=15)
    assert not mounts_under(os.path.realpath(workdir)), "an unknown option still mounted"
    assert_one_error_line(res, "prismfs %s" % " ".join(args))
    assert res.returncode == 2, "an unknown option should exit with status 2 (usage), got %d" % (
        res.returncode)
    nothing_left(workdir, "unknown option")


def test_unknown_top_level_option():
    res = cli("--no-such-option")
    assert_one_error_line(res, "prismfs --no-such-option")
    assert res.returncode == 2, "an unknown option should exit with status 2, got %d" % (
        res.returncode)


@pytest.mark.parametrize("foreground", [False, True])
def test_busy_mount_point_is_refused(workdir, mounter, foreground):
    src, src2, mnt = make_dirs(workdir, "src", "src2", "mnt")
    with open(os.path.join(src, "first"), "w") as f:
        f.write("1")
    with open(os.path.join(src2, "second"), "w") as f:
        f.write("2")
    m = mounter(src, mnt)
    args = ["mount"] + (["-f"] if foreground else []) + [src2, mnt]
    try:
        res = cli(*args, timeout=15)
    finally:
        n = mount_count(mnt)
        if n > 1:  # clean up a second mount stacked on ours before failing
            force_unmount(mnt)
    assert n == 1, "a second mount was stacked on a busy mount point (%d mounts)" % n
    assert_one_error_line(res, "prismfs %s on a busy mount point" % " ".join(args))
    assert sorted(os.listdir(mnt)) == ["first"], "the first mount no longer answers"
    assert m.proc.poll() is None, "the first daemon died"
    assert wait_for(lambda: prismfs_daemons_for(src2) == [], 3), \
        "a daemon for the refused mount is still running"


def test_no_access_to_dev_fuse(workdir):
    st = os.stat("/dev/fuse")
    if st.st_mode & 0o006:
        pytest.skip("/dev/fuse is accessible to other users here (mode %o)"
                    % stat.S_IMODE(st.st_mode))
    src, mnt = make_dirs(workdir, "src", "mnt")
    os.chown(src, 65534, 65534)
    os.chown(mnt, 65534, 65534)
    check = subprocess.run([SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups",
                            "test", "-x", PRISMFS])
    if check.returncode != 0:
        pytest.skip("the prismfs binary %s is not executable by nobody" % PRISMFS)
    for fg in ([], ["-f"]):
        cmd = [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups",
               PRISMFS, "mount", *fg, src, mnt]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=15,
                                 stdin=subprocess.DEVNULL, cwd="/")
        finally:
            stray = mounts_under(os.path.realpath(workdir))
            for mp in stray:
                force_unmount(mp)
        assert not stray, "nobody managed to mount without access to /dev/fuse: %s" % stray
        assert_one_error_line(res, "prismfs mount %sas nobody without access to /dev/fuse"
                              % ("-f " if fg else ""))
        nothing_left(workdir, "no access to /dev/fuse")


# --------------------------------------------------------------------------
# status

def test_status_of_foreground_mount(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    m = mounter(src, mnt)
    res = cli("status", mnt)
    assert res.returncode == 0, "prismfs status exited %d: %s" % (res.returncode, res.stderr)
    for what, value in (("pid", str(m.pid)), ("source", os.path.realpath(src)),
                        ("mountpoint", os.path.realpath(mnt))):
        assert value in res.stdout, "prismfs status does not show the %s %s:\n%s" % (
            what, value, res.stdout)
    obj = status_json(mnt)
    assert isinstance(obj.get("pid"), int), "status --json: pid should be a number, got %r" % (
        obj.get("pid"),)
    assert obj["pid"] == m.pid, "status --json reports pid %r, the daemon is %d" % (
        obj["pid"], m.pid)
    assert obj.get("source") == os.path.realpath(src), "status --json source is %r" % (
        obj.get("source"),)
    assert obj.get("mountpoint") == os.path.realpath(mnt), "status --json mountpoint is %r" % (
        obj.get("mountpoint"),)


def test_status_relative_paths_are_absolute(workdir, bg):
    make_dirs(workdir, "src", "mnt")
    res = bg.mount("src", "mnt", cwd=workdir)
    assert res.returncode == 0, "mount with relative paths failed (%d): %s" % (
        res.returncode, res.stderr)
    assert is_mounted(os.path.join(workdir, "mnt")), "nothing mounted"
    obj = status_json(os.path.join(workdir, "mnt"))
    assert obj.get("source") == os.path.realpath(os.path.join(workdir, "src")), \
        "status --json should give the absolute source, got %r" % (obj.get("source"),)
    assert obj.get("mountpoint") == os.path.realpath(os.path.join(workdir, "mnt")), \
        "status --json should give the absolute mount point, got %r" % (obj.get("mountpoint"),)
    res = cli("status", "--json", "mnt/", cwd=workdir)
    assert res.returncode == 0, "status of a relative path with a trailing slash failed: %s" % (
        res.stderr)
    res = cli("unmount", "mnt/", cwd=workdir)
    assert res.returncode == 0, "unmount of a relative path failed (%d): %s" % (
        res.returncode, res.stderr)
    assert not is_mounted(os.path.join(workdir, "mnt")), "still mounted after unmount"


@pytest.mark.parametrize("target", ["plain directory", "missing path"])
@pytest.mark.parametrize("json_flag", [False, True])
def test_status_of_non_mount(workdir, target, json_flag):
    d = make_dirs(workdir, "plain")[0] if target == "plain directory" else \
        os.path.join(workdir, "missing")
    args = ["status"] + (["--json"] if json_flag else []) + [d]
    res = cli(*args)
    assert_one_error_line(res, "prismfs %s on a %s" % (" ".join(args), target))


# --------------------------------------------------------------------------
# mount options

def _populate(src):
    os.makedirs(os.path.join(src, "dir"))
    with open(os.path.join(src, "file"), "w") as f:
        f.write("content\n")
    os.setxattr(os.path.join(src, "file"), "user.tag", b"v")
    os.symlink("file", os.path.join(src, "link"))


def _snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("opts", [("--read-only",), ("-o", "ro")], ids=["read-only", "o-ro"])
def test_read_only(workdir, mounter, opts):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _populate(src)
    before = _snapshot(src)
    mounter(src, mnt, *opts)
    p = lambda *a: os.path.join(mnt, *a)  # noqa: E731
    # reads work
    with open(p("file")) as f:
        assert f.read() == "content\n", "reading through a read-only mount failed"
    assert sorted(os.listdir(mnt)) == ["dir", "file", "link"]
    assert os.readlink(p("link")) == "file"
    assert os.getxattr(p("file"), "user.tag") == b"v"
    # every modifying call fails with EROFS
    attempts = {
        "mkdir": lambda: os.mkdir(p("newdir")),
        "create": lambda: os.open(p("newfile"), os.O_CREAT | os.O_WRONLY, 0o644),
        "open for writing": lambda: os.open(p("file"), os.O_WRONLY),
        "open read-write": lambda: os.open(p("file"), os.O_RDWR),
        "truncate": lambda: os.truncate(p("file"), 0),
        "unlink": lambda: os.unlink(p("file")),
        "rmdir": lambda: os.rmdir(p("dir")),
        "rename": lambda: os.rename(p("file"), p("renamed")),
        "link": lambda: os.link(p("file"), p("hardlink")),
        "symlink": lambda: os.symlink("x", p("newlink")),
        "mkfifo": lambda: os.mkfifo(p("fifo")),
        "chmod": lambda: os.chmod(p("file"), 0o600),
        "chown": lambda: os.chown(p("file"), 1, 1),
        "utime": lambda: os.utime(p("file"), (1, 1)),
        "setxattr": lambda: os.setxattr(p("file"), "user.new", b"x"),
        "removexattr": lambda: os.removexattr(p("file"), "user.tag"),
    }
    wrong = []
    for name, fn in attempts.items():
        try:
            r = fn()
            if isinstance(r, int):
                os.close(r)
            wrong.append("%s succeeded" % name)
        except OSError as e:
            if e.errno != errno.EROFS:
                wrong.append("%s failed with %s instead of EROFS"
                             % (name, errno.errorcode.get(e.errno, e.errno)))
    assert not wrong, "on a read-only mount: " + "; ".join(wrong)
    assert _snapshot(src) == before, "the source changed under a read-only mount"


def test_o_options_repeatable_and_comma_lists(workdir, mounter):
    src, mnt, mnt2 = make_dirs(workdir, "src", "mnt", "mnt2")
    mounter(src, mnt, "-o", "allow_other", "-o", "default_permissions")
    mounter(src, mnt2, "-o", "allow_other,default_permissions")
    for mp in (mnt, mnt2):
        ent = mountinfo_entry(mp)
        assert ent is not None, "no mountinfo entry for %s" % mp
        opts = set(ent[0]) | set(ent[2])
        for want in ("allow_other", "default_permissions"):
            assert want in opts, "%s is not among the mount options of %s: %s" % (
                want, mp, sorted(opts))


@pytest.mark.parametrize("args", [
    ("--threads", "1"), ("--threads", "8"), ("--timeout", "5"), ("--timeout", "0.5"),
    ("--foreground",), ("-o", "default_permissions"), ("--log-format", "json"),
], ids=lambda a: " ".join(a))
def test_options_accepted(workdir, mounter, args):
    src, mnt = make_dirs(workdir, "src", "mnt")
    m = mounter(src, mnt, *args)
    with open(os.path.join(mnt, "f"), "w") as f:
        f.write("x" * 1000)
    os.mkdir(os.path.join(mnt, "d"))
    assert sorted(os.listdir(mnt)) == ["d", "f"]
    with open(os.path.join(src, "f")) as f:
        assert f.read() == "x" * 1000, "the write did not reach the source"
    assert m.stop() == 0, "prismfs %s exited %r: %s" % (" ".join(args), m.returncode,
                                                         m.stderr())
    m.check_clean_exit()


def test_foreground_long_option_stays_in_foreground(workdir):
    src, mnt = make_dirs(workdir, "src", "mnt")
    # Not through Mount.start (which adds -f): only --foreground here.
    errf = open(os.path.join(workdir, "fg.err"), "w+")
    p = subprocess.Popen([PRISMFS, "mount", "--foreground", src, mnt],
                         stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    try:
        assert wait_for(lambda: is_mounted(mnt) or p.poll() is not None, 20), "no mount"
        assert p.poll() is None, "prismfs mount --foreground returned (%r) while mounted" % (
            p.returncode)
        assert is_mounted(mnt), "nothing mounted"
        os.stat(mnt)
        res = cli("unmount", mnt)
        assert res.returncode == 0, "unmount failed: %s" % res.stderr
        assert p.wait(20) == 0, "the foreground daemon exited %r" % p.returncode
    finally:
        if p.poll() is None:
            force_unmount(mnt)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        force_unmount(mnt)
        errf.close()


@pytest.mark.parametrize("opt", [("--volatile",), ("--timeout", "0")], ids=["volatile",
                                                                            "timeout0"])
def test_changes_behind_the_mount_are_seen(workdir, mounter, opt):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "a.txt"), "w") as f:
        f.write("one")
    mounter(src, mnt, *opt)
    m = lambda n: os.path.join(mnt, n)  # noqa: E731
    s = lambda n: os.path.join(src, n)  # noqa: E731
    with open(m("a.txt")) as f:
        assert f.read() == "one"
    assert os.stat(m("a.txt")).st_size == 3
    with pytest.raises(FileNotFoundError):
        os.stat(m("later.txt"))
    # change the source behind the mount
    with open(s("a.txt"), "w") as f:
        f.write("second version")
    with open(s("later.txt"), "w") as f:
        f.write("later")
    os.mkdir(s("newdir"))
    assert os.stat(m("a.txt")).st_size == len("second version"), \
        "the size changed behind the mount is not seen"
    assert os.path.exists(m("later.txt")), "a file created behind the mount is not seen " \
        "(negative lookup cached)"
    assert sorted(os.listdir(mnt)) == ["a.txt", "later.txt", "newdir"]
    os.chmod(s("later.txt"), 0o600)
    assert os.stat(m("later.txt")).st_mode & 0o777 == 0o600, "a chmod behind the mount " \
        "is not seen"
    os.unlink(s("later.txt"))
    os.rmdir(s("newdir"))
    assert not os.path.exists(m("later.txt")), "a file removed behind the mount is still seen"
    assert sorted(os.listdir(mnt)) == ["a.txt"]
    if opt == ("--volatile",):
        with open(m("a.txt")) as f:
            assert f.read() == "second version", "stale file content on a --volatile mount"
        with open(s("a.txt"), "w") as f:
            f.write("3rd")
        with open(m("a.txt")) as f:
            assert f.read() == "3rd", "stale file content on a --volatile mount"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_to_stderr(workdir, mounter, fmt):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "hello"), "w") as f:
        f.write("hi")
    m = mounter(src, mnt, "--log", "-", "--log-format", fmt)
    os.stat(os.path.join(mnt, "hello"))
    try:
        os.stat(os.path.join(mnt, "nothere"))
    except FileNotFoundError:
        pass
    assert m.stop() == 0
    m.check_clean_exit()
    out = m.stderr()
    lines = out.split("\n")
    if fmt == "text":
        header = "# prismfs 0.1.0 op log: source=%s mountpoint=%s" % (
            os.path.realpath(src), os.path.realpath(mnt))
        assert header in lines, "no header line %r on stderr:\n%s" % (header, out[:2000])
        assert any(" -> lookup /hello" in l for l in lines), "lookup of /hello not logged"
        assert any(l.endswith(" <- lookup /nothere = -ENOENT") for l in lines), \
            "the failed lookup of /nothere is not logged with -ENOENT:\n" + out[:3000]
        assert any(l.startswith("# prismfs op log end: records=") for l in lines), \
            "no end line on stderr:\n" + out[-2000:]
        return
    objs = []
    for l in lines:
        if l.startswith("{"):
            try:
                objs.append(json.loads(l))
            except ValueError:
                raise AssertionError("a JSON log line on stderr does not parse: %r" % l)
    events = [o.get("event") for o in objs if "event" in o]
    assert events == ["start", "end"], "expected one start and one end event, got %r" % events
    assert objs[0].get("source") == os.path.realpath(src)
    assert any(o.get("op") == "lookup" and o.get("path") == "/hello" and o.get("result") == 0
               for o in objs), "lookup of /hello not logged"
    assert any(o.get("op") == "lookup" and o.get("path") == "/nothere" and
               o.get("errno") == "ENOENT" for o in objs), "failed lookup of /nothere not logged"


# --------------------------------------------------------------------------
# command-line hygiene: unknown commands, help per command, -o values,
# debug output, generic mount flags, finding a renamed mount, what commit
# says, times in status

@pytest.mark.parametrize("args", [
    ["rewind", "mnt"], ["rewind"], ["frobnicate", "mnt", "-f"], ["statsu", "mnt"],
    ["rewind", "--help"], ["rewind", "src", "mnt"],
], ids=lambda a: " ".join(a))
def test_unknown_command_is_usage_error(workdir, args):
    """A first word that is no command and no existing path is a mistyped
    command (exit 2), never a SOURCE that does not exist."""
    make_dirs(workdir, "src", "mnt")
    res = cli(*args, cwd=workdir, timeout=15)
    assert_one_error_line(res, "prismfs %s" % " ".join(args))
    assert res.returncode == 2, "prismfs %s exited %d, not 2 (bad usage)" % (
        " ".join(args), res.returncode)
    assert "unknown command '%s'" % args[0] in res.stderr, (
        "prismfs %s should name the unknown command: %r" % (" ".join(args), res.stderr))
    nothing_left(workdir, "unknown command")


@pytest.mark.parametrize("form", ["absolute paths", "existing relative SOURCE",
                                  "label with -o lowerdir=", "relative SOURCE with -o"])
def test_mount_helper_form_still_mounts(workdir, bg, form):
    """mount(8)'s helper convention, `prismfs SOURCE MOUNTPOINT [-o OPTS]`,
    keeps working (mount.fuse3 runs it so)."""
    src, mnt, upper = make_dirs(workdir, "src", "mnt", "U")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("helper\n")
    args = {
        "absolute paths": [src, mnt],
        "existing relative SOURCE": ["src", "mnt"],
        "label with -o lowerdir=": ["none", "mnt", "-o", "lowerdir=%s,upperdir=%s" % (src, upper)],
        "relative SOURCE with -o": ["src", "mnt", "-o", "default_permissions"],
    }[form]
    bg.mountpoints.append(os.path.realpath(mnt))
    res = cli(*args, cwd=workdir)
    assert res.returncode == 0, "prismfs %s failed (%d): %s" % (" ".join(args), res.returncode,
                                                                res.stderr)
    with open(os.path.join(mnt, "f")) as f:
        assert f.read() == "helper\n"
    res = cli("unmount", mnt)
    assert res.returncode == 0, "unmount failed: %s" % res.stderr


HELP_TOPICS = {"mount": "prismfs mount", "unmount": "prismfs unmount",
               "umount": "prismfs unmount", "status": "prismfs status",
               "commit": "prismfs commit", "discard": "prismfs discard",
               "recover": "prismfs recover"}


@pytest.mark.parametrize("cmd", sorted(HELP_TOPICS))
def test_help_of_each_command(cmd):
    """`prismfs help CMD` and `prismfs CMD --help` print CMD's own help."""
    general = cli("--help").stdout
    outs = []
    for args in (["help", cmd], [cmd, "--help"], [cmd, "-h"]):
        res = cli(*args)
        assert res.returncode == 0, "prismfs %s exited %d: %s" % (" ".join(args),
                                                                  res.returncode, res.stderr)
        assert res.stderr == "", "prismfs %s wrote to stderr: %r" % (" ".join(args), res.stderr)
        assert res.stdout.startswith("usage: "), "prismfs %s: no usage line:\n%s" % (
            " ".join(args), res.stdout)
        assert HELP_TOPICS[cmd] in res.stdout, "prismfs %s does not show %r:\n%s" % (
            " ".join(args), HELP_TOPICS[cmd], res.stdout)
        assert res.stdout != general, "prismfs %s printed the general help" % " ".join(args)
        outs.append(res.stdout)
    assert outs[0] == outs[1] == outs[2], "help %s and %s --help differ" % (cmd, cmd)


def test_help_without_topic_and_unknown_topic():
    assert cli("help").stdout == cli("--help").stdout
    # help's own help: the general help, which is what help prints
    for flag in ("--help", "-h"):
        res = cli("help", flag)
        assert res.returncode == 0 and res.stdout == cli("--help").stdout, res.stderr
    res = cli("help", "rewind")
    assert_one_error_line(res, "prismfs help rewind")
    assert res.returncode == 2 and "unknown command 'rewind'" in res.stderr, res.stderr


@pytest.mark.parametrize("opt", ["max_read=abc", "no_such_option", "foo=bar",
                                 "allow_other,max_read=x1", "nodiratime,bogus"])
@pytest.mark.parametrize("foreground", [False, True])
def test_bad_o_value_is_usage_error(workdir, opt, foreground):
    src, mnt = make_dirs(workdir, "src", "mnt")
    args = ["mount"] + (["-f"] if foreground else []) + ["-o", opt, src, mnt]
    res = cli(*args, timeout=15)
    assert_one_error_line(res, "prismfs %s" % " ".join(args))
    assert res.returncode == 2, "a bad -o option should exit 2 (usage), got %d: %s" % (
        res.returncode, res.stderr)
    bad = [o for o in opt.split(",") if o not in ("allow_other", "nodiratime")][0]
    assert bad in res.stderr, "the error does not name -o %s: %r" % (bad, res.stderr)
    for q in ("`", "'", '"'):
        assert q not in res.stderr, "stray quote %s in %r" % (q, res.stderr)
    nothing_left(workdir, "bad -o")


@pytest.mark.parametrize("opts", ["subtype=other", "fsname=elsewhere",
                                  "fsname=x,subtype=y", "subtype=prismfs2"])
def test_renamed_mount_is_still_found(workdir, bg, opts):
    """-o subtype= (type fuse.NAME) and fsname= (the source column) change
    how /proc/mounts shows the mount, not whether status/unmount find it."""
    src, mnt = make_dirs(workdir, "src", "mnt")
    res = bg.mount(src, mnt, "-o", opts)
    assert res.returncode == 0, "mount -o %s failed: %s" % (opts, res.stderr)
    ent = [ln.split() for ln in open("/proc/self/mounts") if
           ln.split()[1] == os.path.realpath(mnt)]
    assert ent, "nothing mounted"
    if "subtype=" in opts:
        want = "fuse." + opts.split("subtype=")[1].split(",")[0]
        assert ent[-1][2] == want, "type %s, expected %s" % (ent[-1][2], want)
    res = cli("status", mnt)
    assert res.returncode == 0, "status of a mount with -o %s failed: %s" % (opts, res.stderr)
    obj = status_json(mnt)
    pid = obj["pid"]
    bg.remember_pid(pid)
    res = cli("unmount", mnt)
    assert res.returncode == 0, "unmount of a mount with -o %s failed: %s" % (opts, res.stderr)
    assert not is_mounted(mnt), "still mounted"
    assert wait_for(lambda: proc_state(pid) in (None, "Z"), 10), "the daemon did not exit"


def proc_state_of_task(pid, tid):
    try:
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2]


def test_renamed_dead_mount_is_still_cleared(workdir, bg):
    """A renamed mount whose daemon was killed: status says the daemon is
    gone, unmount clears it, as for a mount of type fuse.prismfs."""
    import signal
    src, mnt = make_dirs(workdir, "src", "mnt")
    res = bg.mount(src, mnt, "-o", "subtype=other,fsname=elsewhere")
    assert res.returncode == 0, res.stderr
    pid = status_json(mnt)["pid"]
    bg.remember_pid(pid)
    os.kill(pid, signal.SIGKILL)

    def all_threads_dead():
        # a zombie leader's other threads may still hold its sockets open
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except FileNotFoundError:
            return True
        return all(proc_state_of_task(pid, t) in (None, "Z", "X") for t in tasks)
    assert wait_for(all_threads_dead, 20), "the daemon did not die"
    res = cli("status", mnt)
    assert_one_error_line(res, "status of a dead renamed mount")
    assert "gone" in res.stderr, res.stderr
    res = cli("unmount", mnt)
    assert res.returncode == 0, "unmount of a dead renamed mount failed: %s" % res.stderr
    assert not is_mounted(mnt), "the dead mount is still there"


@pytest.mark.parametrize("flag", [["-d"], ["-o", "debug"], ["-o", "allow_other,debug"]],
                         ids=lambda a: " ".join(a))
def test_debug_gives_libfuse_trace_in_foreground(workdir, flag):
    """-d / -o debug: libfuse's request trace on stderr, and (as libfuse's
    own -d) the command stays in the foreground without -f."""
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    errpath = os.path.join(workdir, "stderr")
    with open(errpath, "w") as err:
        p = subprocess.Popen([PRISMFS, "mount", *flag, src, mnt], stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err)
    try:
        assert wait_for(lambda: is_mounted(mnt) or p.poll() is not None, 20), "never mounted"
        assert p.poll() is None, "prismfs %s returned (%r): not in the foreground: %s" % (
            " ".join(flag), p.returncode, open(errpath).read())
        os.stat(os.path.join(mnt, "f"))
        os.listdir(mnt)

        def traced():
            t = open(errpath).read()
            return "opcode: LOOKUP" in t and "unique:" in t
        assert wait_for(traced, 10), "no libfuse trace on stderr:\n%s" % open(errpath).read()[-2000:]
    finally:
        if is_mounted(mnt):
            cli("unmount", mnt)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    assert p.returncode == 0, "prismfs -d exited %d" % p.returncode
    for m in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert m not in open(errpath).read(), "sanitizer report:\n" + open(errpath).read()


@pytest.mark.parametrize("args", [
    ["mount", "-o", "upperdir=U", "none", "mnt"],
    ["mount", "-o", "upperdir=U,workdir=W", "none", "mnt"],
    ["overlay", "mnt", "-o", "upperdir=U,workdir=W"],
    ["mount", "-o", "upperdir=U", "missing", "mnt"],
], ids=lambda a: " ".join(a))
def test_upperdir_without_lowerdir_names_lowerdir(workdir, args):
    make_dirs(workdir, "mnt", "U", "W")
    res = cli(*args, cwd=workdir, timeout=15)
    assert_one_error_line(res, "prismfs %s" % " ".join(args))
    assert res.returncode == 2, "exit %d, not 2: %s" % (res.returncode, res.stderr)
    assert "lowerdir=" in res.stderr, "the error does not name the missing lowerdir=: %r" % (
        res.stderr)
    nothing_left(workdir, "upperdir without lowerdir")


GENERIC_FLAGS = ["nodiratime", "diratime", "strictatime", "nostrictatime", "lazytime",
                 "nolazytime", "norelatime", "relatime", "noatime", "atime", "nosymfollow",
                 "symfollow"]


@pytest.mark.parametrize("how", ["mount -o", "helper form"])
def test_generic_mount_flags_accepted(workdir, bg, how):
    """The flags mount(8) and xfstests pass are accepted, each one alone
    and all together (a remount line carries several)."""
    src = make_dirs(workdir, "src")[0]
    with open(os.path.join(src, "f"), "w") as f:
        f.write("flags\n")
    for i, opt in enumerate(GENERIC_FLAGS + [",".join(GENERIC_FLAGS)]):
        mnt = make_dirs(workdir, "m%d" % i)[0]
        if how == "mount -o":
            res = bg.mount(src, mnt, "-o", opt)
        else:
            bg.mountpoints.append(os.path.realpath(mnt))
            res = cli(src, mnt, "-o", "rw," + opt)
        assert res.returncode == 0, "-o %s refused (%d): %s" % (opt, res.returncode, res.stderr)
        with open(os.path.join(mnt, "f")) as f:
            assert f.read() == "flags\n"
        res = cli("unmount", mnt)
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("opts,follows", [("nosymfollow", False), ("symfollow", True),
                                          ("nosymfollow,symfollow", True),
                                          ("symfollow,nosymfollow", False)])
def test_nosymfollow_is_applied(workdir, bg, opts, follows):
    """nosymfollow as mount(8) documents it: symlinks on the mount are not
    followed when a path is resolved (ELOOP), readlink(2) still works."""
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "target"), "w") as f:
        f.write("t\n")
    os.symlink("target", os.path.join(src, "link"))
    res = bg.mount(src, mnt, "-o", opts)
    assert res.returncode == 0, "-o %s refused: %s" % (opts, res.stderr)
    assert os.readlink(os.path.join(mnt, "link")) == "target"
    if follows:
        with open(os.path.join(mnt, "link")) as f:
            assert f.read() == "t\n"
    else:
        with pytest.raises(OSError) as ei:
            open(os.path.join(mnt, "link")).close()
        assert ei.value.errno == errno.ELOOP, "opening a symlink under nosymfollow: %s" % ei.value
        assert "nosymfollow" in mountinfo_entry(mnt)[0], mountinfo_entry(mnt)
    assert cli("unmount", mnt).returncode == 0


def test_noatime_still_reaches_the_mount(workdir, bg):
    src, mnt = make_dirs(workdir, "src", "mnt")
    assert bg.mount(src, mnt, "-o", "noatime,nodiratime").returncode == 0
    ent = mountinfo_entry(mnt)
    assert "noatime" in ent[0], "noatime is not a flag of the mount: %s" % (ent[0],)
    assert cli("unmount", mnt).returncode == 0


def test_status_text_times_are_iso8601(workdir, mounter):
    import re
    import datetime
    src, mnt = make_dirs(workdir, "src", "mnt")
    mounter(src, mnt)
    res = cli("status", mnt)
    assert res.returncode == 0, res.stderr
    obj = status_json(mnt)
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
    fields = dict(ln.split(None, 1) for ln in res.stdout.splitlines() if len(ln.split(None, 1)) == 2)
    started = fields.get("started", "").strip()
    assert iso.match(started), "status shows started as %r, not ISO 8601" % started
    when = datetime.datetime.strptime(started[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    assert abs(when.timestamp() - obj["started"]) < 1, (started, obj["started"])
    for key, value in fields.items():
        if key.endswith("_at") or key in ("started",):
            value = value.strip()
            assert value == "null" or iso.match(value), "%s is %r, not ISO 8601" % (key, value)


@pytest.mark.parametrize("atomic", [False, True])
def test_commit_and_discard_say_what_they_did(workdir, bg, atomic):
    """prismfs commit / discard print one line saying what they did, in the
    words `prismfs unmount --action` uses."""
    import re
    lower, upper, lower2, upper2, mnt = make_dirs(workdir, "L", "U", "L2", "U2", "mnt")
    with open(os.path.join(upper, "new"), "w") as f:
        f.write("n\n")
    args = ["commit", "--upper", upper, "--lower", lower] + (["--atomic"] if atomic else [])
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    want = "committed %s to %s%s" % (os.path.realpath(upper), os.path.realpath(lower),
                                     " atomically" if atomic else "")
    assert res.stdout.strip() == want, "prismfs commit said %r, expected %r" % (res.stdout,
                                                                                  want)
    assert os.path.exists(os.path.join(lower, "new"))
    # the same words as an unmount that commits
    res = bg.mount(lower2, mnt, "--upper", upper2)
    assert res.returncode == 0, res.stderr
    with open(os.path.join(mnt, "x"), "w") as f:
        f.write("x")
    res = cli("unmount", "--action", "commit-atomic" if atomic else "commit", mnt)
    assert res.returncode == 0, res.stderr
    pat = r"^committed (\S+) to (\S+)%s$" % (" atomically" if atomic else "")
    assert re.match(pat, res.stdout.strip()), res.stdout
    with open(os.path.join(upper, "gone"), "w") as f:
        f.write("g")
    res = cli("discard", "--upper", upper)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "discarded the changes in %s" % os.path.realpath(upper), \
        res.stdout
    assert os.listdir(upper) == []
