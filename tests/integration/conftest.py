"""Fixtures that mount the real prismfs through /dev/fuse.

Every mount made here is unmounted in teardown, even when the test fails, and
a session that finds a stale mount of its own (under TEST_ROOT) removes it
before starting.  The binary under test is $PRISMFS_BIN (default:
build/prismfs); the test command runs the whole suite once against the normal
build and once against the AddressSanitizer + UBSan build.
"""
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PRISMFS = os.environ.get("PRISMFS_BIN", os.path.join(REPO, "build", "prismfs"))
# Not under /tmp/pytest-of-root (mode 0700): unprivileged users must be able
# to reach the test trees. Each run works below its own directory, named by
# its pid, so a run can tell its own stale mounts from another live run's.
TESTS_BASE = os.environ.get("PRISMFS_TEST_ROOT", "/tmp/prismfs-tests")
TEST_ROOT = os.path.join(TESTS_BASE, "run-%d" % os.getpid())
# The whole suite runs once per data path: the test command sets this to
# "on" (kernel passthrough) and "off" (every byte through the daemon).
PASSTHROUGH = os.environ.get("PRISMFS_TEST_PASSTHROUGH")
# "on" or "off": how the daemon takes requests (io_uring or /dev/fuse). The
# test command also sets the kernel's enable_uring to match, so that mounts
# started without this fixture (default --uring auto) follow it too.
URING = os.environ.get("PRISMFS_TEST_URING")
# Set (to a small number) for a run where nearly every node's fd is closed
# and reopened from its file handle between requests.
NODE_FDS = os.environ.get("PRISMFS_TEST_NODE_FDS")
# PRISMFS_TEST_HISTORY=1: every plain mount (also with --map) journals its changes
# (--history, issue 17), to run the other tests through the history store.
HISTORY = os.environ.get("PRISMFS_TEST_HISTORY") == "1"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "ERROR: UndefinedBehaviorSanitizer")


def mounts_under(prefix):
    """Mount points of FUSE mounts at or below prefix (from mountinfo)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            fstype = parts[sep + 1]
            mp = parts[4].replace("\\040", " ")
            if fstype.startswith("fuse") and (mp == prefix or mp.startswith(prefix + "/")):
                out.append(mp)
    return out


def is_mounted(path):
    return os.path.realpath(path) in mounts_under(os.path.realpath(path))


def force_unmount(path):
    for cmd in (["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


FUSECTL = "/sys/fs/fuse/connections"


def fuse_connection(path):
    """The FUSE connection number of the mount at path (the minor of its
    device in mountinfo), or None; read without touching the mount, which
    may not answer."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[sep + 1].startswith("fuse") and parts[4].replace("\\040", " ") == real:
                return int(parts[2].split(":")[1])
    return None


def abort_connection(conn):
    """Abort a FUSE connection through fusectl, as an administrator would for
    a mount whose daemon cannot finish dying (a thread of it blocked in the
    kernel on a request that waits for the daemon itself). Every request of
    it then fails with ENOTCONN, which lets the process exit."""
    if conn is None:
        return
    mounted_here = False
    if not os.path.exists(os.path.join(FUSECTL, str(conn))):
        if subprocess.run(["mount", "-t", "fusectl", "none", FUSECTL],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            mounted_here = True
    try:
        with open(os.path.join(FUSECTL, str(conn), "abort"), "w") as f:
            f.write("1")
    except OSError:
        pass
    finally:
        if mounted_here:
            subprocess.run(["umount", FUSECTL], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_sessionstart(session):
    os.makedirs(TESTS_BASE, exist_ok=True)
    os.chmod(TESTS_BASE, 0o755)
    # Stale mounts of earlier, killed runs (their pid is gone): remove them
    # and their trees before starting. Live runs beside us are left alone.
    for entry in os.listdir(TESTS_BASE):
        if not entry.startswith("run-"):
            continue
        try:
            pid = int(entry[4:])
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        d = os.path.realpath(os.path.join(TESTS_BASE, entry))
        for mp in sorted(mounts_under(d), key=len, reverse=True):
            force_unmount(mp)
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(TEST_ROOT, exist_ok=True)
    os.chmod(TEST_ROOT, 0o755)


def pytest_sessionfinish(session, exitstatus):
    for mp in sorted(mounts_under(os.path.realpath(TEST_ROOT)), key=len, reverse=True):
        force_unmount(mp)
    shutil.rmtree(TEST_ROOT, ignore_errors=True)


@pytest.fixture
def workdir():
    """A fresh directory reachable by every user (mode 0755)."""
    d = os.path.join(TEST_ROOT, uuid.uuid4().hex[:12])
    os.makedirs(d)
    os.chmod(d, 0o755)
    yield d
    for mp in sorted(mounts_under(os.path.realpath(d)), key=len, reverse=True):
        force_unmount(mp)
    shutil.rmtree(d, ignore_errors=True)


class Mount:
    """One prismfs daemon run in the foreground (-f) so that its stderr and
    exit status are observable (sanitizer reports land there)."""

    def __init__(self, source, mountpoint, args=(), env=None, prefix=()):
        self.prefix = list(prefix)  # argv run before prismfs (it must exec it)
        self.source = source
        self.mountpoint = mountpoint
        self.args = list(args)
        self.env = env
        self.proc = None
        self.stderr_path = None
        self.returncode = None

    def start(self, timeout=20):
        fd, self.stderr_path = tempfile.mkstemp(prefix="prismfs-stderr-", dir=TEST_ROOT)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        extra = []
        if PASSTHROUGH and not any(a.startswith("--passthrough") for a in self.args):
            extra = ["--passthrough", PASSTHROUGH]
        if URING and not any(a.startswith("--uring") for a in self.args):
            extra += ["--uring", URING]
        if NODE_FDS and not any(a.startswith("--node-fds") for a in self.args):
            extra += ["--node-fds", NODE_FDS]
        if HISTORY and not any(a.startswith(("--history", "--upper", "--mirror",
                                             "-o", "--lower"))
                               for a in self.args):
            extra += ["--history", tempfile.mkdtemp(prefix="history-", dir=TEST_ROOT)]
        self.proc = subprocess.Popen(
            [*self.prefix, PRISMFS, "mount", "-f", *extra, *self.args, self.source,
             self.mountpoint],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env)
        os.close(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("prismfs exited with %d before mounting: %s"
                                   % (self.proc.returncode, self.stderr()))
            if is_mounted(self.mountpoint):
                os.stat(self.mountpoint)  # blocks until INIT is answered
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("prismfs did not mount within %ss: %s" % (timeout, self.stderr()))

    def stderr(self):
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=30):
        """Clean unmount through the CLI; returns the daemon's exit status."""
        if self.proc is None:
            return self.returncode
        if is_mounted(self.mountpoint):
            subprocess.run([PRISMFS, "unmount", self.mountpoint],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout)
        return self.wait(timeout)

    def wait(self, timeout=30):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.proc = None
        return self.returncode

    def kill(self):
        conn = fuse_connection(self.mountpoint)
        force_unmount(self.mountpoint)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                # A daemon killed while a thread of it waits in the kernel
                # on its own mount never finishes exiting: abort the
                # connection so the test run does not hang with it.
                abort_connection(conn)
                self.proc.wait()
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self.proc = None

    def check_clean_exit(self):
        """Assert exit 0 and no sanitizer report."""
        err = self.stderr()
        for m in SANITIZER_MARKERS:
            assert m not in err, "sanitizer report from prismfs:\n" + err
        assert self.returncode == 0, "prismfs exited %r:\n%s" % (self.returncode, err)

    def cleanup(self):
        try:
            if self.proc is not None:
                try:
                    self.stop()
                except Exception:
                    self.kill()
        finally:
            force_unmount(self.mountpoint)
            if self.stderr_path and os.path.exists(self.stderr_path):
                os.unlink(self.stderr_path)


@pytest.fixture
def dirs(workdir):
    """A mirror and a mount point for a cached mount (--mirror), both empty."""
    mirror = os.path.join(workdir, "mirror")
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mirror)
    os.makedirs(mnt)
    return mirror, mnt


@pytest.fixture
def trees(workdir):
    """An empty source and mount point: (src, mnt)."""
    src = os.path.join(workdir, "src")
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(src)
    os.makedirs(mnt)
    return src, mnt


@pytest.fixture
def mounter(workdir):
    """Factory: mounter(source, mountpoint, *args) -> started Mount.  Each
    mount is stopped in teardown and must have exited cleanly (0, no
    sanitizer report) unless the test already stopped it itself."""
    made = []

    def make(source, mountpoint, *args, env=None, prefix=()):
        m = Mount(source, mountpoint, args, env=env, prefix=prefix)
        made.append(m)
        return m.start()

    yield make
    failures = []
    for m in made:
        try:
            if m.proc is not None:
                m.stop()
                m.check_clean_exit()
        except Exception as e:  # report after every mount is cleaned up
            failures.append(e)
        finally:
            m.cleanup()
    if failures:
        raise failures[0]


def _stat_tree(root):
    """Every path below root with its lstat (times to the ns, no atime):
    changes when anything in the tree does. Directories are listed with
    O_NOATIME, as parity.snapshot(noatime=True) reads: a later step may
    compare their atimes."""
    out = {}

    def visit(path):
        s = os.lstat(path)
        out[path] = (s.st_mode, s.st_ino, s.st_nlink, s.st_uid, s.st_gid, s.st_size,
                     s.st_rdev, s.st_mtime_ns, s.st_ctime_ns)
        if stat.S_ISDIR(s.st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
            try:
                names = os.listdir(fd)
            finally:
                os.close(fd)
            for n in names:
                visit(os.path.join(path, n))

    visit(root)
    return out


class View:
    """What a test drives: `path` is the mount, `native` a plain directory
    with the same initial content for parity comparisons, `backing` the
    source as seen without prismfs (None when mounted over the source)."""

    def __init__(self, mount, path, source, backing, native, mode):
        self.mount = mount
        self.path = path
        self._source = source
        self._backing = backing
        self.native = native
        self.mode = mode
        # history mode: (snapshot name, the native tree when it was taken)
        self.snaps = []

    def take_snapshot(self, name):
        """history mode: snapshot the mount and remember what the native
        tree (the same content) holds at that moment, for check_snapshots."""
        from parity import snapshot
        if self.mount.proc is None or not is_mounted(self.path):
            return  # the test ended the mount itself
        res = run_cli("snapshot", self.path, "--name", name)
        assert res.returncode == 0, "prismfs snapshot %s failed: %s" % (self.path, res.stderr)
        self.snaps.append((name, snapshot(self.native, noatime=True, sample_over=SAMPLE_OVER)))

    def after_step(self, i):
        """Called by parity.run_parity after each agreeing step: on a history
        mount, a snapshot after every step that changed the tree (as the
        native tree's lstat tells: a step that only reads takes none), so
        that every change of an object that already existed first saves
        its previous version."""
        if self.mode != "history":
            return
        now = _stat_tree(self.native)
        if now != getattr(self, "_last_stat", None):
            self._last_stat = now
            self.take_snapshot("step%d" % i)

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def settle(self):
        """Make the backing directory current: a no-op but for a cached
        mount, whose mirror gets the changes in the background."""
        if self.mode == "cached" and self.mount.proc is not None:
            # (once the mount has ended, everything was written back)
            res = run_cli("sync", self.path)
            assert res.returncode == 0, "prismfs sync %s failed: %s" % (self.path, res.stderr)

    # A test that looks at the backing directory sees it current: reading
    # either name first writes everything pending back (cached mode).
    @property
    def backing(self):
        if self._backing is not None:
            self.settle()
        return self._backing

    @property
    def source(self):
        self.settle()
        return self._source


def _make_view(mode, workdir, mounter, args=(), populate=None):
    src = os.path.join(workdir, "src")
    native = os.path.join(workdir, "native")
    os.makedirs(src)
    os.makedirs(native)
    for d in (src, native):
        os.chmod(d, 0o755)
        if populate:
            populate(d)
    if mode in ("plain", "cached", "history"):
        mnt = os.path.join(workdir, "mnt")
        os.makedirs(mnt)
        if mode == "cached":
            # The memory cache over a mirror: src is the mirror (Mount's
            # argv ends `--mirror SOURCE MNT`).
            args = (*args, "--mirror")
        if mode == "history":
            # A plain mount journaling into a fresh DIR outside SOURCE.
            args = ("--history", os.path.join(workdir, "history"), *args)
        m = mounter(src, mnt, *args)
        v = View(m, mnt, src, src, native, mode)
        if mode == "history":
            v.take_snapshot("setup")
        return v
    m = mounter(src, src, *args)
    return View(m, src, src, None, native, mode)


@pytest.fixture(params=["plain", "oversrc", "cached", "history"])
def view(request, workdir, mounter):
    """The same suite runs against a plain mount, a mount over its own
    source, a cached mount (--mirror: the view lives in memory and is
    written back to the source, its mirror), and a plain mount with
    --history (a snapshot at setup and after every step of run_parity:
    a mount with history answers system calls exactly as one without)."""
    v = _make_view(request.param, workdir, mounter)
    yield v
    if v.mode == "cached":
        check_mirror_converged(v)
    if v.mode == "history":
        key = (os.path.basename(str(request.node.fspath)), request.node.originalname)
        if key in HISTORY_PAST_UNCHECKED:
            request.config._prismfs_past_unchecked = getattr(
                request.config, "_prismfs_past_unchecked", []) + [(request.node.nodeid, key)]
        else:
            check_snapshots(v)


# History-mode tests whose parity steps run and must agree, but whose
# snapshots are not compared with .history after them: a limit of the
# history, each with the reason (listed at the end of the run).
HISTORY_PAST_UNCHECKED = {
}


def _past_form(tree, then):
    """A tree as .history shows it: hard links are separate files there
    (docs/HISTORY.md, Browse), so no link groups nor link counts (each
    name of a file with hard links is compared for what it held, as any
    file); symlink targets are left out (the record of the native tree
    does not read them: parity.snapshot, noatime), their sizes are
    compared."""
    return {k: {f: x for f, x in d.items() if f not in ("link_group", "nlink", "target")}
            for k, d in tree.items()}


# Files past this size are compared by their first and last MiB in the
# history mode's records (a 1 GiB sparse file read whole per snapshot,
# natively and through .history, cost half a minute).
SAMPLE_OVER = 64 << 20


def check_snapshots(v):
    """Each snapshot taken through the test, browsed under .history after
    the test changed the live tree, is the native tree of its moment
    (names, types, modes, owners, sizes, content, device numbers; see
    _past_form for what is not compared)."""
    from parity import snapshot
    if v.mount.proc is None or not is_mounted(v.path):
        return  # the test ended the mount itself
    for name, want in v.snaps:
        got = _past_form(snapshot(os.path.join(v.path, ".history", name),
                                  sample_over=SAMPLE_OVER), want)
        want = _past_form(want, want)
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        assert not diff, ("snapshot %s under .history differs from the tree it was taken "
                          "of:\n" % name) + "\n".join(
            "  %s: then=%r past=%r" % (k, want.get(k), got.get(k)) for k in diff[:20])


def check_mirror_converged(v):
    """The mirror of a cached view, once written back, holds what the view
    shows: every name, type, mode, owner, size, content, link target, hard
    link group and user xattr (times left out). Checked after the test, on
    whatever it left, while the mount is still up."""
    from parity import snapshot
    if v.mount.proc is None or not is_mounted(v.path):
        return  # the test ended the mount itself
    v.settle()
    want = snapshot(v.path, xattrs=True)
    got = snapshot(v._source, xattrs=True)
    got = {k: d for k, d in got.items() if ".prismfs-conflict-" not in k}
    diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    assert not diff, "the mirror differs from the view after prismfs sync:\n" + "\n".join(
        "  %s: view=%r mirror=%r" % (k, want.get(k), got.get(k)) for k in diff[:20])


# Parity tests that cannot apply to a cached mount, each with the reason.
# (Whole files with no cached mode: test_ops_oversrc.py, which is about a
# mount over its own source, and the layered and --volatile variants of
# test_data_random.py and test_tree_random.py, which are about those mounts.)
# They are deselected from the cached mode only (and listed at the end of
# the run), never skipped as if they had passed. Keys are a test file and a
# test name (without its parameters).
CACHED_EXCLUDED = {
    # The view's objects are the memory filesystem's: their inode numbers
    # are its, not the mirror's (a file made in the cache has no mirror
    # inode until it is written back, and the write-back makes a new one).
    ("test_ops_identity.py", "test_ino_of_new_files_matches_source"):
        "inode numbers are the memory filesystem's, not the mirror's",
    ("test_ops_identity.py", "test_ino_of_preexisting_files_matches_source"):
        "inode numbers are the memory filesystem's, not the mirror's",
    ("test_ops_identity.py", "test_root_ino_matches_source"):
        "inode numbers are the memory filesystem's, not the mirror's",
    # A new mount makes a new memory filesystem: nothing of the old one's
    # inode numbers survives (the mirror's are not shown either, above).
    ("test_ops_identity.py", "test_ino_stable_across_remount"):
        "each mount has its own memory filesystem and inode numbers",
    # statfs answers for the filesystem the view writes into: the memory
    # filesystem bounded by --cache-size, not the mirror's disk.
    ("test_ops_special.py", "test_statfs"):
        "statfs reports the cache (its --cache-size), not the mirror's filesystem",
}


def _cached_param(item):
    cs = getattr(item, "callspec", None)
    if cs is None:
        return False
    return "cached" in (cs.params.get("view"), cs.params.get("mode"), cs.params.get("ro"))


def pytest_collection_modifyitems(config, items):
    keep, dropped = [], []
    for item in items:
        key = (os.path.basename(str(item.fspath)), item.originalname)
        if key in CACHED_EXCLUDED and _cached_param(item):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        config._prismfs_cached_excluded = dropped


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    unchecked = getattr(config, "_prismfs_past_unchecked", [])
    if unchecked:
        terminalreporter.section(
            "history mount: .history not compared after (conftest.HISTORY_PAST_UNCHECKED)")
        for nodeid, key in unchecked:
            terminalreporter.write_line("%s: %s" % (nodeid, HISTORY_PAST_UNCHECKED[key]))
    dropped = getattr(config, "_prismfs_cached_excluded", [])
    if dropped:
        terminalreporter.section("not run on a cached mount (conftest.CACHED_EXCLUDED)")
        for item in dropped:
            key = (os.path.basename(str(item.fspath)), item.originalname)
            terminalreporter.write_line("%s: %s" % (item.nodeid, CACHED_EXCLUDED[key]))


@pytest.fixture
def make_view(workdir, mounter):
    """make_view(mode, *args, populate=fn) for tests that need options."""
    made = []

    def make(mode, *args, populate=None):
        v = _make_view(mode, workdir, mounter, args, populate)
        made.append(v)
        return v
    yield make
    for v in made:
        if v.mode == "cached":
            check_mirror_converged(v)


def run_cli(*args, timeout=60, **kw):
    return subprocess.run([PRISMFS, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


# The session's S3 server (one Ceph RGW per run, started by the first test
# that asks for it), for every test file that uses it.
from s3server import s3bucket, s3server  # noqa: E402,F401 (fixtures)
