"""Copy-on-write mounts from the command line and through mount(8): the layer
options, the work directory, refusing bad options before mounting, and what
becomes of the upper at unmount (prismfs unmount --action, --on-unmount, a
plain umount, a commit that fails).

mount(8) runs its helpers without PATH (util-linux sanitizes the
environment), so mount.fuse3's `/bin/sh -c 'prismfs none MNT -o ...'` finds
prismfs on the shell's default path (/usr/local/sbin first).  To run that real
chain — mount(8) -> /sbin/mount.fuse3 -> sh -> prismfs — against the binary
under test without installing it, those tests run in a private mount
namespace where a directory holding a `prismfs` link to $PRISMFS_BIN is bound
over /usr/local/sbin; the system and its /etc/fstab stay untouched (fstab
lines come from a file given to mount -T).  Every mount made here, in the
namespace or not, is unmounted in teardown, and the namespace ends with it.
"""
import json
import os
import re
import signal
import stat
import subprocess
import tempfile

import pytest

from conftest import PRISMFS, SANITIZER_MARKERS, TEST_ROOT, is_mounted
from prism_helpers import (assert_one_error_line, bg, cli, make_dirs,  # noqa: F401
                           run_on_a_terminal,
                           process_gone, status_json, stderr_lines, wait_for)

SIBLING_SUFFIXES = (".prismfs-new", ".prismfs-commit", ".prismfs-commit.tmp", ".prismfs-inplace",
                    ".prismfs-inplace.tmp")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def read(path):
    with open(path) as f:
        return f.read()


def tree(root):
    """{relative path: content or '<dir>'} below root, without following links."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs:
            out[os.path.relpath(os.path.join(d, n), root)] = "<dir>"
        for n in files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                out[rel] = read(p)
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = "<chr %d,%d>" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                out[rel] = "<%o>" % stat.S_IFMT(st.st_mode)
    return out


def commit_debris(lower):
    parent, name = os.path.split(lower)
    return sorted(n for n in os.listdir(parent)
                  if n.startswith("." + name) and n.endswith(SIBLING_SUFFIXES))


class Layered:
    """L (SOURCE, the top lower), L2 (a lower below it), U (upper), M (mount
    point) in one directory, with a few files in the lowers."""

    def __init__(self, workdir):
        self.base = workdir
        self.L, self.L2, self.U, self.M = make_dirs(workdir, "L", "L2", "U", "M")
        write(os.path.join(self.L, "keep.txt"), "keep\n")
        write(os.path.join(self.L, "edit.txt"), "old\n")
        write(os.path.join(self.L, "gone.txt"), "doomed\n")
        write(os.path.join(self.L, "dir/inner.txt"), "inner\n")
        write(os.path.join(self.L2, "deep.txt"), "from L2\n")
        self.lower_before = tree(self.L)

    def default_work(self):
        return os.path.join(self.base, ".U.prismfs-work")

    def change(self):
        """Changes through the mount: edit, create, delete."""
        with open(os.path.join(self.M, "edit.txt"), "w") as f:
            f.write("new\n")
        write(os.path.join(self.M, "added.txt"), "added\n")
        os.unlink(os.path.join(self.M, "gone.txt"))

    def expected_after_commit(self):
        t = dict(self.lower_before)
        t["edit.txt"] = "new\n"
        t["added.txt"] = "added\n"
        del t["gone.txt"]
        return t


@pytest.fixture
def lay(workdir):
    la = Layered(workdir)
    try:
        yield la
    finally:
        subprocess.run(["chattr", "-R", "-i", la.L], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def daemon_pid(mnt):
    pid = status_json(mnt).get("pid")
    assert isinstance(pid, int), "prismfs status gave no daemon pid"
    return pid


def assert_upper_empty(lay, what):
    assert os.listdir(lay.U) == [], "%s: the upper still holds %s" % (what, os.listdir(lay.U))


def assert_one_line_stdout(res, what, *words):
    lines = stderr_lines(res.stdout)
    assert len(lines) == 1, "%s: expected one line on stdout, got %r" % (what, res.stdout)
    for w in words:
        assert w in lines[0], "%s: %r should mention %r" % (what, lines[0], w)


# --------------------------------------------------------------------------
# options: refused with one line before anything is mounted

def test_layer_options_need_an_upper(workdir, lay):
    """The options of an upper need one (lowers alone are a read-only mount
    of them: test_layers_lowers.py), as does a single lowerdir=."""
    for args in (["--work", lay.U], ["--whiteout", "file"],
                 ["--on-unmount", "commit"], ["-o", "lowerdir=%s" % lay.L],
                 ["-o", "workdir=" + lay.U], ["--lower", lay.L2, "--work", lay.U],
                 ["-o", "lowerdir=%s:%s,on_unmount=discard" % (lay.L, lay.L2)]):
        src = "none" if args[-1].startswith("lowerdir") else lay.L
        res = cli("mount", *args, src, lay.M)
        assert_one_error_line(res, "mount %s without an upper" % " ".join(args))
        assert "upper" in res.stderr, res.stderr
        assert not is_mounted(lay.M), "mount %s without an upper mounted anyway" % args


@pytest.mark.parametrize("case", ["missing upper", "upper is a file", "missing work",
                                  "read-only", "-o ro", "lowerdir and SOURCE differ",
                                  "--lower and lowerdir", "bad --on-unmount"])
def test_bad_layer_options(workdir, lay, case):
    afile = os.path.join(workdir, "afile")
    write(afile, "x")
    missing = os.path.join(workdir, "missing")
    args = {
        "missing upper": ["--upper", missing, lay.L, lay.M],
        "upper is a file": ["--upper", afile, lay.L, lay.M],
        "missing work": ["--upper", lay.U, "--work", missing, lay.L, lay.M],
        "read-only": ["--upper", lay.U, "--read-only", lay.L, lay.M],
        "-o ro": ["-o", "ro,upperdir=" + lay.U, lay.L, lay.M],
        "lowerdir and SOURCE differ": ["-o", "lowerdir=%s,upperdir=%s" % (lay.L2, lay.U),
                                       lay.L, lay.M],
        "--lower and lowerdir": ["--lower", lay.L2, "-o",
                                 "lowerdir=%s,upperdir=%s" % (lay.L, lay.U), "none", lay.M],
        "bad --on-unmount": ["--upper", lay.U, "--on-unmount", "later", lay.L, lay.M],
    }[case]
    for fg in ([], ["-f"]):
        res = cli("mount", *fg, *args)
        assert_one_error_line(res, "mount with %s%s" % (case, " (foreground)" if fg else ""))
        assert not is_mounted(lay.M), "mount with %s mounted anyway" % case
    assert not os.path.exists(lay.default_work()), \
        "a refused mount left the work directory it made"
    assert tree(lay.L) == lay.lower_before


def test_help_documents_layers():
    out = cli("mount", "--help").stdout
    for opt in ("--upper", "--work", "--lower", "--whiteout", "--on-unmount", "lowerdir=",
                "upperdir=", "workdir="):
        assert opt in out, "prismfs mount --help does not document %s" % opt
    assert "--action" in cli("--help").stdout


# --------------------------------------------------------------------------
# the mount itself

def test_changes_land_in_the_upper(workdir, lay, mounter):
    mounter(lay.L, lay.M, "--upper", lay.U, "--lower", lay.L2)
    assert read(os.path.join(lay.M, "deep.txt")) == "from L2\n", "--lower is not shown"
    lay.change()
    assert read(os.path.join(lay.U, "added.txt")) == "added\n"
    assert read(os.path.join(lay.U, "edit.txt")) == "new\n"
    assert tree(lay.L) == lay.lower_before, "a layered mount changed SOURCE"
    assert sorted(os.listdir(lay.M)) == ["added.txt", "deep.txt", "dir", "edit.txt",
                                         "keep.txt"]


def test_default_work_directory(workdir, lay, mounter):
    mounter(lay.L, lay.M, "--upper", lay.U, "--lower", lay.L2)
    work = lay.default_work()
    st = os.lstat(work)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700, \
        "the work directory should be made beside the upper, mode 0700"
    layers = status_json(lay.M).get("layers")
    assert layers, "prismfs status shows no layers for a mount with --upper"
    assert layers["upper"] == os.path.realpath(lay.U)
    assert layers["work"] == os.path.realpath(work)
    assert layers["lowers"] == [os.path.realpath(lay.L), os.path.realpath(lay.L2)]
    assert layers["on_unmount"] == "preserve"


def test_work_directory_on_another_filesystem(workdir, lay):
    """An upper that is a filesystem of its own has no room for the work
    directory beside it: the mount asks for --work."""
    up = os.path.join(workdir, "tmpfs-upper")
    os.makedirs(up)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", up], check=True)
    try:
        res = cli("mount", "--upper", up, lay.L, lay.M)
        assert_one_error_line(res, "an upper that is a mount point, no --work")
        assert "--work" in res.stderr, res.stderr
        assert not is_mounted(lay.M)
        assert not os.path.exists(os.path.join(workdir, ".tmpfs-upper.prismfs-work"))
    finally:
        subprocess.run(["umount", up])


def test_relative_paths_in_the_background(workdir, lay, bg):
    """The daemon leaves the caller's working directory: relative layer paths
    must still name the same directories, at unmount as well."""
    res = bg.mount("L", "M", "--upper", "U", "--lower", "L2", cwd=workdir)
    assert res.returncode == 0, res.stderr
    lay.change()
    res = cli("unmount", "--action", "commit", lay.M)
    assert res.returncode == 0, res.stderr
    assert tree(lay.L) == lay.expected_after_commit()
    assert_upper_empty(lay, "a commit with relative paths")


def test_mount_helper_argv(workdir, lay, bg):
    """What mount.fuse3 runs: prismfs none MNT -o rw,lowerdir=...,dev,suid
    (no command word); it returns once the mount answers."""
    bg.mountpoints.append(os.path.realpath(lay.M))
    res = cli("none", lay.M, "-o", "rw,lowerdir=%s:%s,upperdir=%s,dev,suid"
              % (lay.L, lay.L2, lay.U))
    assert res.returncode == 0, res.stderr
    assert is_mounted(lay.M)
    layers = status_json(lay.M)["layers"]
    assert layers["upper"] == os.path.realpath(lay.U)
    assert layers["lowers"] == [os.path.realpath(lay.L), os.path.realpath(lay.L2)]


# --------------------------------------------------------------------------
# finalize at unmount

def test_unmount_preserve_by_default(workdir, lay, mounter):
    m = mounter(lay.L, lay.M, "--upper", lay.U)
    lay.change()
    upper = tree(lay.U)
    res = cli("unmount", lay.M)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "", "preserve should print nothing, got %r" % res.stdout
    assert m.wait(10) == 0
    m.check_clean_exit()
    assert tree(lay.U) == upper, "preserve changed the upper"
    assert tree(lay.L) == lay.lower_before


def test_unmount_action_discard(workdir, lay, mounter):
    m = mounter(lay.L, lay.M, "--upper", lay.U, "--on-unmount", "commit")
    lay.change()
    assert os.listdir(lay.U), "nothing reached the upper"
    res = cli("unmount", "--action", "discard", lay.M)
    assert res.returncode == 0, res.stderr
    assert_one_line_stdout(res, "unmount --action discard", "discard", lay.U)
    assert m.proc.poll() is not None, "prismfs unmount returned before the daemon ended"
    assert m.wait(10) == 0
    m.check_clean_exit()
    assert not is_mounted(lay.M)
    assert_upper_empty(lay, "--action discard (overriding --on-unmount commit)")
    assert os.listdir(lay.default_work()) == [], "discard left the work directory full"
    assert tree(lay.L) == lay.lower_before, "discard changed the lower"


@pytest.mark.parametrize("action", ["commit", "commit-atomic"])
def test_unmount_action_commit(workdir, lay, mounter, action):
    m = mounter(lay.L, lay.M, "--upper", lay.U)
    lay.change()
    res = cli("unmount", lay.M, "--action=" + action)
    assert res.returncode == 0, res.stderr
    assert_one_line_stdout(res, "unmount --action " + action, "committed", lay.L)
    assert m.wait(10) == 0
    m.check_clean_exit()
    assert tree(lay.L) == lay.expected_after_commit(), "--action %s" % action
    assert_upper_empty(lay, "--action " + action)
    assert commit_debris(lay.L) == [], "the commit left %s" % commit_debris(lay.L)


@pytest.mark.parametrize("how", ["umount", "fusermount3 -u", "SIGTERM"])
def test_on_unmount_commit_without_prismfs_unmount(workdir, lay, mounter, how):
    """However the mount ends, --on-unmount runs once the kernel let go."""
    m = mounter(lay.L, lay.M, "--upper", lay.U, "--on-unmount", "commit")
    assert status_json(lay.M)["layers"]["on_unmount"] == "commit"
    lay.change()
    if how == "SIGTERM":
        m.proc.send_signal(signal.SIGTERM)
    else:
        cmd = ["umount", lay.M] if how == "umount" else ["fusermount3", "-u", lay.M]
        subprocess.run(cmd, check=True, timeout=30)
    assert m.wait(60) == 0, m.stderr()
    m.check_clean_exit()
    assert tree(lay.L) == lay.expected_after_commit(), "--on-unmount commit after %s" % how
    assert_upper_empty(lay, "--on-unmount commit after " + how)


def test_failed_commit_keeps_the_upper(workdir, lay, mounter):
    m = mounter(lay.L, lay.M, "--upper", lay.U)
    lay.change()
    write(os.path.join(lay.M, "dir/blocked.txt"), "cannot land\n")
    upper = tree(lay.U)
    if subprocess.run(["chattr", "+i", os.path.join(lay.L, "dir")],
                      capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        res = cli("unmount", "--action", "commit", lay.M)
        assert_one_error_line(res, "unmount --action commit into an immutable directory")
        assert "dir" in res.stderr and "upper is kept" in res.stderr, res.stderr
        assert res.returncode == 1
        assert not is_mounted(lay.M), "a failed commit should still leave the mount unmounted"
        assert m.wait(10) == 1, "the daemon should exit 1 when its unmount action failed"
        err = m.stderr()
        for marker in SANITIZER_MARKERS:
            assert marker not in err, err
        assert "upper is kept" in err, "the daemon's stderr does not record the failure"
        assert tree(lay.U) == upper, "a failed commit changed the upper"
        assert not os.path.exists(os.path.join(lay.L, "dir/blocked.txt"))
        assert not os.path.exists(os.path.join(lay.base, ".U.prismfs-failed")), \
            "prismfs unmount reported the failure; no record should be left for later"
    finally:
        subprocess.run(["chattr", "-i", os.path.join(lay.L, "dir")])
    # Offline, the same commit then completes the job.
    res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.default_work())
    assert res.returncode == 0, res.stderr
    want = lay.expected_after_commit()
    want["dir/blocked.txt"] = "cannot land\n"
    assert tree(lay.L) == want


def test_action_on_a_mount_without_upper(workdir, lay, mounter):
    mounter(lay.L, lay.M)
    res = cli("unmount", "--action", "discard", lay.M)
    assert_one_error_line(res, "unmount --action on a mount without an upper")
    assert "--upper" in res.stderr, res.stderr
    assert is_mounted(lay.M), "a refused --action unmounted anyway"


def test_busy_unmount_forgets_its_action(workdir, lay, mounter):
    """--action belongs to the unmount that asked: when that unmount fails
    (busy), a later plain unmount must not discard."""
    m = mounter(lay.L, lay.M, "--upper", lay.U)
    lay.change()
    upper = tree(lay.U)
    holder = subprocess.Popen(["sleep", "30"], cwd=lay.M)
    try:
        res = cli("unmount", "--action", "discard", lay.M)
        assert_one_error_line(res, "unmount --action discard of a busy mount")
        assert "busy" in res.stderr
    finally:
        holder.kill()
        holder.wait()
    assert wait_for(lambda: status_json(lay.M)["layers"]["on_unmount"] == "preserve", 5), \
        "the failed unmount's --action is still pending"
    res = cli("unmount", lay.M)
    assert res.returncode == 0, res.stderr
    assert m.wait(10) == 0
    assert tree(lay.U) == upper, "a failed unmount's --action discard ran later"


def test_unmount_action_in_the_background(workdir, lay, bg):
    res = bg.mount(lay.L, lay.M, "--upper", lay.U, "--on-unmount", "discard")
    assert res.returncode == 0, res.stderr
    lay.change()
    pid = daemon_pid(lay.M)
    bg.remember_pid(pid)
    res = cli("unmount", "--action", "commit-atomic", lay.M)
    assert res.returncode == 0, res.stderr
    assert wait_for(lambda: process_gone(pid), 10), "the daemon is still running"
    assert tree(lay.L) == lay.expected_after_commit()
    assert_upper_empty(lay, "--action commit-atomic in the background")


def test_mount_recovers_an_interrupted_atomic_commit(workdir, lay, bg):
    """The next mount finishes (or rolls back) an atomic commit cut short."""
    write(os.path.join(lay.U, "edit.txt"), "committed\n")
    res = cli("commit", "--atomic", "--upper", lay.U, "--lower", lay.L,
              env=dict(os.environ, PRISMFS_TEST_CRASH="atomic-swapped"))
    assert res.returncode == -signal.SIGKILL, "the commit was not cut short: %s" % res.stderr
    assert commit_debris(lay.L), "the cut-short commit left no journal to recover"
    res = bg.mount(lay.L, lay.M, "--upper", lay.U)
    assert res.returncode == 0, res.stderr
    assert "finished the interrupted atomic commit" in res.stderr, res.stderr
    assert commit_debris(lay.L) == [], "the mount left %s" % commit_debris(lay.L)
    assert read(os.path.join(lay.L, "edit.txt")) == "committed\n"
    assert read(os.path.join(lay.M, "edit.txt")) == "committed\n"
    assert_upper_empty(lay, "recovery at mount")


# --------------------------------------------------------------------------
# what prismfs unmount shows while a commit runs, and the record a failed
# action leaves when nobody waited for it

PROGRESS_RE = re.compile(r"prismfs: commit: (\d+)/(\d+) files, ([0-9.]+ [KMG]iB)/([0-9.]+ [KMG]iB)")


def kib(n):
    return "%.1f KiB" % (n / 1024)


def many_files(lay, n, size):
    """n new files of size bytes each, written through the mount, in a few
    new directories (directories do not count as files in the progress)."""
    for i in range(n):
        write(os.path.join(lay.M, "many/d%d/f%d" % (i % 6, i)), "x" * size)


@pytest.mark.parametrize("action", ["commit", "commit-atomic"])
def test_unmount_commit_shows_progress_on_a_terminal(workdir, lay, mounter, action):
    """The daemon commits after the kernel lets go; prismfs unmount draws
    its progress (files and bytes, done and total) on its terminal, then
    clears the line and prints the result as before."""
    n, size = 120, 1000
    m = mounter(lay.L, lay.M, "--upper", lay.U, env={"PRISMFS_TEST_PROGRESS_MS": "0"})
    many_files(lay, n, size)
    rc, out, term = run_on_a_terminal(["unmount", "--action", action, lay.M])
    assert rc == 0, "prismfs unmount --action %s exited %d: %r" % (action, rc, term)
    assert_one_line_stdout(subprocess.CompletedProcess([], rc, out, ""),
                           "unmount --action " + action, "committed", lay.L)
    shown = PROGRESS_RE.findall(term)
    assert shown, "no progress line reached the terminal: %r" % term[:300]
    for done, total, bdone, btotal in shown:
        assert int(total) == n, "the progress line counts %s files, not %d: %r" % (
            total, n, term[:300])
        assert btotal == kib(n * size), "the progress line totals %s, not %s" % (
            btotal, kib(n * size))
        assert int(done) <= n
    assert any(int(d) > 0 for d, _, _, _ in shown), "no progress was ever shown: %r" % term
    dones = [int(d) for d, _, _, _ in shown]
    assert dones == sorted(dones), "files done went backwards: %s" % dones
    assert "\n" not in term.replace("\r\n", ""), "progress must stay on one line: %r" % term
    assert term.endswith("\r\x1b[K"), "the progress line is not cleared: %r" % term[-40:]
    assert m.wait(30) == 0
    m.check_clean_exit()
    assert_upper_empty(lay, "--action %s with a terminal" % action)
    assert read(os.path.join(lay.L, "many/d0/f0")) == "x" * size


def test_unmount_commit_no_progress_without_a_terminal(workdir, lay, mounter):
    m = mounter(lay.L, lay.M, "--upper", lay.U, "--on-unmount", "commit",
                env={"PRISMFS_TEST_PROGRESS_MS": "0"})
    many_files(lay, 60, 1000)
    res = cli("unmount", lay.M)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", "progress text without a terminal: %r" % res.stderr
    assert_one_line_stdout(res, "unmount with --on-unmount commit", "committed", lay.L)
    assert m.wait(30) == 0
    m.check_clean_exit()
    assert_upper_empty(lay, "--on-unmount commit")


def failure_record(lay):
    return os.path.join(lay.base, ".U.prismfs-failed")


@pytest.mark.parametrize("then", ["mount", "commit"])
def test_failed_on_unmount_commit_leaves_a_record(workdir, lay, bg, then):
    """A plain umount: nobody waits, the daemon is in the background (stderr
    /dev/null). Its failed commit leaves one line beside the upper; the next
    mount with that upper says it once and removes it, and a later commit
    that succeeds removes it too."""
    res = bg.mount(lay.L, lay.M, "--upper", lay.U, "--on-unmount", "commit")
    assert res.returncode == 0, res.stderr
    lay.change()
    write(os.path.join(lay.M, "dir/blocked.txt"), "cannot land\n")
    upper = tree(lay.U)
    pid = daemon_pid(lay.M)
    bg.remember_pid(pid)
    locked = os.path.join(lay.L, "dir")
    if subprocess.run(["chattr", "+i", locked], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        subprocess.run(["umount", lay.M], check=True, timeout=30)
        assert wait_for(lambda: process_gone(pid), 30), "the daemon is still running"
        rec = failure_record(lay)
        assert os.path.isfile(rec), "a failed --on-unmount commit left no record beside the upper"
        assert stat.S_IMODE(os.lstat(rec).st_mode) == 0o600
        line = read(rec)
        assert line.endswith("\n") and line.count("\n") == 1, "not one line: %r" % line
        for word in (os.path.realpath(lay.M), "commit at unmount", "dir", "upper is kept"):
            assert word in line, "the record %r does not mention %r" % (line, word)
        assert tree(lay.U) == upper, "a failed commit changed the upper"
        if then == "commit":
            # Still failing: the record stays.
            res = cli("commit", "--upper", lay.U, "--lower", lay.L)
            assert res.returncode == 1
            assert read(rec) == line, "a failed offline commit changed the record"
    finally:
        subprocess.run(["chattr", "-i", locked])
    if then == "mount":
        res = bg.mount(lay.L, lay.M, "--upper", lay.U)
        assert res.returncode == 0, res.stderr
        said = [ln for ln in stderr_lines(res.stderr) if "earlier mount failed" in ln]
        assert said == ["prismfs: the unmount action of an earlier mount failed: "
                        + line.rstrip("\n")], res.stderr
        assert not os.path.exists(rec), "the record stays after it was reported"
        assert read(os.path.join(lay.M, "dir/blocked.txt")) == "cannot land\n"
        res = cli("unmount", lay.M)
        assert res.returncode == 0, res.stderr
        res = bg.mount(lay.L, lay.M, "--upper", lay.U)
        assert res.returncode == 0, res.stderr
        assert res.stderr == "", "the record was reported twice: %r" % res.stderr
        assert tree(lay.U) == upper, "the upper changed"
    else:
        res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.default_work())
        assert res.returncode == 0, res.stderr
        assert not os.path.exists(rec), "a commit that succeeded left the failure record"
        want = lay.expected_after_commit()
        want["dir/blocked.txt"] = "cannot land\n"
        assert tree(lay.L) == want


# --------------------------------------------------------------------------
# mount(8) and fstab

class Namespace:
    """A private mount namespace where /usr/local/sbin holds a `prismfs`
    link to the binary under test, for mount(8) to find."""

    def __init__(self, workdir):
        self.bindir = os.path.join(workdir, "sbin")
        os.makedirs(self.bindir)
        os.symlink(os.path.realpath(PRISMFS), os.path.join(self.bindir, "prismfs"))
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" /usr/local/sbin && echo ready && exec sleep 1000000',
             self.bindir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            self.holder.kill()
            raise RuntimeError("cannot set up the mount namespace: %s"
                               % self.holder.stderr.read())

    def run(self, *cmd, timeout=60):
        """cmd inside the namespace; output through files, not pipes, so a
        daemon that kept an inherited descriptor cannot hang the test."""
        argv = ["nsenter", "-t", str(self.holder.pid), "-m", "--", *cmd]
        with tempfile.TemporaryFile(dir=TEST_ROOT) as out, \
                tempfile.TemporaryFile(dir=TEST_ROOT) as err:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                timeout=timeout).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))

    def sh(self, script, *args):
        """A shell script inside the namespace; args are $0, $1, ..."""
        return self.run("sh", "-c", script, *args)

    def fuse_mounts(self):
        out = []
        with open("/proc/%d/mountinfo" % self.holder.pid) as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                if parts[sep + 1].startswith("fuse"):
                    out.append(parts[4].replace("\\040", " "))
        return out

    def mounted(self, path):
        return os.path.realpath(path) in self.fuse_mounts()

    def daemon_pid(self, mnt):
        res = self.run(PRISMFS, "status", "--json", mnt)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)["pid"]

    def close(self, prefix):
        pids = []
        for mp in sorted(self.fuse_mounts(), key=len, reverse=True):
            if mp == prefix or mp.startswith(prefix + "/"):
                try:
                    pids.append(self.daemon_pid(mp))
                except Exception:
                    pass
                self.run("umount", "-l", mp)
        for pid in pids:
            if not wait_for(lambda: process_gone(pid), 10):
                os.kill(pid, signal.SIGKILL)
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def ns(workdir):
    if not os.path.isdir("/usr/local/sbin"):
        pytest.skip("no /usr/local/sbin to put prismfs on mount.fuse3's search path")
    helpers = [h for h in ("/sbin/mount.fuse.prismfs", "/sbin/mount.fuse")
               if os.path.exists(h)]
    assert helpers, ("mount(8) has no helper for fuse.prismfs (/sbin/mount.fuse from the "
                     "fuse3 package, or the link scripts/install.sh makes)")
    n = Namespace(workdir)
    try:
        yield n
    finally:
        n.close(os.path.realpath(workdir))


def overlay_opts(lay, work=None, extra=""):
    """The kernel spelling; without work, the work directory is made."""
    o = "lowerdir=%s:%s,upperdir=%s" % (lay.L, lay.L2, lay.U)
    if work:
        o += ",workdir=" + work
    return o + ("," + extra if extra else "")


def assert_is_binary_under_test(ns, mnt):
    pid = ns.daemon_pid(mnt)
    exe = os.path.realpath("/proc/%d/exe" % pid)
    assert exe == os.path.realpath(PRISMFS), (
        "mount(8) started %s, not the prismfs under test %s" % (exe, PRISMFS))
    return pid


def test_mount8_overlay_options(workdir, lay, ns):
    work = os.path.join(workdir, "W")
    os.makedirs(work)
    res = ns.run("mount", "-t", "fuse.prismfs", "-o", overlay_opts(lay, work), "none", lay.M)
    assert res.returncode == 0, "mount(8) failed: %s" % res.stderr
    assert ns.mounted(lay.M)
    assert_is_binary_under_test(ns, lay.M)
    res = ns.sh('cat "$0/deep.txt" && echo through > "$0/new.txt" && ls "$0"', lay.M)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("from L2\n"), "lowerdir's second layer is not shown"
    assert read(os.path.join(lay.U, "new.txt")) == "through\n", "the write missed the upper"
    assert not os.path.exists(os.path.join(lay.L, "new.txt")), "the write reached the lower"
    res = ns.run(PRISMFS, "unmount", lay.M)
    assert res.returncode == 0, res.stderr
    assert not ns.mounted(lay.M)
    assert read(os.path.join(lay.U, "new.txt")) == "through\n", "preserve lost the upper"


def test_fstab_line(workdir, lay, ns):
    fstab = os.path.join(workdir, "fstab")
    with open(fstab, "w") as f:
        f.write("# a test fstab, given to mount -T\n")
        f.write("none %s fuse.prismfs %s 0 0\n"
                % (lay.M, overlay_opts(lay, extra="defaults,nofail,x-test.note=1,"
                                                  "on_unmount=commit")))
    res = ns.run("mount", "-T", fstab, lay.M)
    assert res.returncode == 0, "mount -T %s failed: %s" % (fstab, res.stderr)
    assert ns.mounted(lay.M)
    pid = assert_is_binary_under_test(ns, lay.M)
    res = ns.sh('echo fstab > "$0/from-fstab.txt" && rm "$0/gone.txt"', lay.M)
    assert res.returncode == 0, res.stderr
    # A plain umount: nobody waits, the daemon commits on its own.
    res = ns.run("umount", lay.M)
    assert res.returncode == 0, res.stderr
    assert wait_for(lambda: process_gone(pid), 30), "the daemon did not end after umount"
    assert read(os.path.join(lay.L, "from-fstab.txt")) == "fstab\n", \
        "on_unmount=commit from fstab did not commit"
    assert not os.path.exists(os.path.join(lay.L, "gone.txt"))
    assert_upper_empty(lay, "on_unmount=commit after umount")


def test_mount8_bad_option_mounts_nothing(workdir, lay, ns):
    missing = os.path.join(workdir, "no-such-upper")
    o = "lowerdir=%s,upperdir=%s" % (lay.L, missing)
    res = ns.run("mount", "-t", "fuse.prismfs", "-o", o, "none", lay.M)
    assert res.returncode != 0, "mount(8) with a missing upperdir succeeded"
    lines = stderr_lines(res.stderr)
    assert len(lines) == 1 and lines[0].startswith("prismfs: "), (
        "mount(8) should pass on prismfs's one line, got %r" % res.stderr)
    assert missing in lines[0], lines[0]
    assert not ns.mounted(lay.M), "mount(8) with a bad option left a mount"


@pytest.mark.parametrize("action", ["discard", "commit"])
def test_mount8_then_unmount_action(workdir, lay, ns, action):
    res = ns.run("mount", "-t", "fuse.prismfs", "-o", overlay_opts(lay), "none", lay.M)
    assert res.returncode == 0, res.stderr
    res = ns.sh('echo new > "$0/edit.txt" && echo added > "$0/added.txt" && rm "$0/gone.txt"',
                lay.M)
    assert res.returncode == 0, res.stderr
    res = ns.run(PRISMFS, "unmount", "--action", action, lay.M)
    assert res.returncode == 0, res.stderr
    assert not ns.mounted(lay.M)
    want = lay.lower_before if action == "discard" else lay.expected_after_commit()
    assert tree(lay.L) == want, "--action %s" % action
    assert_upper_empty(lay, "--action " + action)
