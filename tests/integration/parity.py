"""Parity harness: run the same sequence of operations on a native directory
and through a prismfs mount and compare the outcome step by step.

A *step* is a callable taking the base directory of one tree and returning a
comparable value (or raising OSError, recorded as ("errno", "ENAME")).  The
base handed to a step is a `Base`: a str (the tree's root path, so
os.path.join works) that also carries per-tree state (`fds`, `state`) so that
a sequence can open a descriptor in one step and use it in later ones.

    res = run_parity(view, [
        lambda b: os.mkdir(b.p("d")),
        lambda b: os.mkdir(b.p("d")),          # ("errno", "EEXIST") on both
        st("d"),                               # stat summary, no st_ino/times
    ])
    assert res[1] == err(errno.EEXIST)        # the native result, for sanity

Each step runs on the native tree, then on the mount; the first step whose
results differ fails the test with a message naming the step, both results,
and the agreeing steps before it.  run_parity returns the native results
(a `Results` list, also indexable by step label: res["mkdir again"]) so that
a test can also check that the native behaviour is the one it expects.

Steps may be given as (label, callable) to get a readable label; otherwise
the step's `label` attribute (set by the builders below) or the callable's
source line is used.

Helpers: write_file/read_file/pread_all; step builders st/fst (stat
summaries), same_inode, content (bytes, or digest() for big files),
listing, tree (recursive snapshot), opened/closed (fds kept in b.fds);
TimeWatch for timestamp relations.

Timestamps of two trees never match, so stat summaries leave them out; use
`TimeWatch` to compare *relations* ("mtime changed since the mark") or
`st(..., times=True)` right after setting times explicitly.  st_ino is never
compared across trees; `same_inode` compares it within one tree.
"""
import errno
import hashlib
import inspect
import os
import stat
import time

NATIVE, MOUNT = "native", "mount"


def err(code):
    """The recorded form of an OSError with this errno."""
    return ("errno", errno.errorcode.get(code, str(code)))


class Base(str):
    """The root directory of one tree plus per-tree state for a sequence."""

    def __new__(cls, path, tree):
        s = super().__new__(cls, path)
        s.tree = tree          # NATIVE or MOUNT
        s.fds = {}             # name -> fd, closed at the end of run_parity
        s.state = {}           # free-form per-tree scratch space
        return s

    def p(self, *parts):
        return os.path.join(str(self), *parts)

    def open(self, key, rel, flags, mode=0o644):
        """Open rel and remember the fd under key (closing an older one).
        Returns None: fd numbers are not comparable; use b.fd(key)."""
        fd = os.open(self.p(rel), flags, mode)
        if key in self.fds:
            os.close(self.fds.pop(key))
        self.fds[key] = fd

    def fd(self, key):
        return self.fds[key]

    def close(self, key):
        os.close(self.fds.pop(key))

    def close_all(self):
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()


# ---------------------------------------------------------------- file helpers

def write_file(path, data=b"", mode=0o644, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """Create/overwrite path with data; returns the number of bytes written."""
    fd = os.open(path, flags, mode)
    try:
        n = 0
        view = memoryview(data)
        while n < len(data):
            n += os.write(fd, view[n:])
        return n
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def pread_all(fd, size, offset):
    """pread until size bytes or EOF."""
    out = bytearray()
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


# ---------------------------------------------------------------- summaries

_TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk",
          stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock", stat.S_IFCHR: "chr",
          stat.S_IFBLK: "blk"}


def stat_summary(s, blocks=False, times=False, dir_size=False):
    """The tree-independent part of a stat result: type, permission bits,
    st_nlink, st_uid, st_gid, st_size (not for directories unless dir_size:
    their size is a filesystem detail), st_rdev for device nodes, and
    optionally st_blocks and the explicitly settable times (times=True:
    atime and mtime in ns; times="mtime": mtime only).  st_ino, st_dev and
    ctime are never included."""
    fmt = stat.S_IFMT(s.st_mode)
    d = {"type": _TYPES.get(fmt, oct(fmt)),
         "mode": oct(stat.S_IMODE(s.st_mode)),
         "nlink": s.st_nlink,
         "uid": s.st_uid,
         "gid": s.st_gid}
    if fmt != stat.S_IFDIR or dir_size:
        d["size"] = s.st_size
    if fmt in (stat.S_IFCHR, stat.S_IFBLK):
        d["rdev"] = (os.major(s.st_rdev), os.minor(s.st_rdev))
    if blocks:
        d["blocks"] = s.st_blocks
    if times:
        if times != "mtime":
            d["atime_ns"] = s.st_atime_ns
        d["mtime_ns"] = s.st_mtime_ns
    return d


def st(rel=".", follow=False, **kw):
    """Step: summary of lstat(rel) (stat(rel) with follow=True)."""
    def step(b):
        f = os.stat if follow else os.lstat
        return stat_summary(f(b.p(rel)), **kw)
    step.label = "%s(%r)" % ("stat" if follow else "lstat", rel)
    return step


def fst(key, **kw):
    """Step: summary of fstat(fd) for the fd remembered under key."""
    def step(b):
        return stat_summary(os.fstat(b.fd(key)), **kw)
    step.label = "fstat(%s)" % key
    return step


def same_inode(rel1, rel2):
    """Step: whether two names share st_ino (and st_dev) within the tree."""
    def step(b):
        s1, s2 = os.lstat(b.p(rel1)), os.lstat(b.p(rel2))
        return (s1.st_ino, s1.st_dev) == (s2.st_ino, s2.st_dev)
    step.label = "same_inode(%r, %r)" % (rel1, rel2)
    return step


def digest(data):
    """How content() reports data: the bytes themselves up to 4 KiB, else
    ("sha256", length, hexdigest)."""
    return data if len(data) <= 4096 else ("sha256", len(data), hashlib.sha256(data).hexdigest())


def content(rel):
    """Step: the bytes of a file (see digest(): sha256 for big ones)."""
    def step(b):
        with open(b.p(rel), "rb") as f:
            return digest(f.read())
    step.label = "content(%r)" % rel
    return step


def listing(rel="."):
    """Step: sorted os.listdir(rel)."""
    def step(b):
        return sorted(os.listdir(b.p(rel)))
    step.label = "listdir(%r)" % rel
    return step


def opened(key, rel, flags, mode=0o644):
    """Step: open rel into the fd slot key; returns None (fd numbers are not
    comparable)."""
    def step(b):
        b.open(key, rel, flags, mode)
    step.label = "open(%r, %s, %s) as %s" % (rel, _flags_str(flags), oct(mode), key)
    return step


def closed(key):
    def step(b):
        b.close(key)
    step.label = "close(%s)" % key
    return step


def _flags_str(flags):
    names = []
    acc = flags & 3
    names.append({os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}.get(acc, str(acc)))
    for n in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_DIRECTORY", "O_NOFOLLOW",
              "O_DIRECT", "O_SYNC", "O_DSYNC", "O_NONBLOCK", "O_PATH", "O_CLOEXEC"):
        v = getattr(os, n, 0)
        if v and flags & v == v:
            names.append(n)
    return "|".join(names)


def snapshot(base, rel=".", xattrs=False, blocks=False, noatime=False, sample_over=None):
    """Recursive, tree-independent description of base/rel: for each path a
    stat summary, plus the content hash of regular files, the target of
    symlinks, hard-link groups (first path sharing the inode) and optionally
    user.* xattrs. noatime: a record taken between two steps, which must
    not move the atimes a later step compares: files and directories are
    read with O_NOATIME, and symlinks not at all (readlink(2) sets their
    atime and has no such flag: no target, their size is its length).
    sample_over: a file larger than this many bytes is hashed by its first
    and last MiB only (with its size: a bound on a record's cost)."""
    root = os.path.join(base, rel)
    out = {}
    first = {}

    def visit(path, relp):
        s = os.lstat(path)
        d = stat_summary(s, blocks=blocks)
        key = (s.st_dev, s.st_ino)
        if s.st_nlink > 1 and not stat.S_ISDIR(s.st_mode):
            d["link_group"] = first.setdefault(key, relp)
        if stat.S_ISREG(s.st_mode):
            fd = os.open(path, os.O_RDONLY | (os.O_NOATIME if noatime else 0))
            with open(fd, "rb") as f:
                if sample_over is not None and s.st_size > sample_over:
                    head = f.read(1 << 20)
                    f.seek(s.st_size - (1 << 20))
                    d["sha256"] = "sampled:" + hashlib.sha256(head + f.read()).hexdigest()
                else:
                    d["sha256"] = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(s.st_mode) and not noatime:
            d["target"] = os.readlink(path)
        if xattrs and not stat.S_ISLNK(s.st_mode):
            d["xattrs"] = {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))
                           if n.startswith("user.")}
        out[relp] = d
        if stat.S_ISDIR(s.st_mode):
            if noatime:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
                try:
                    names = os.listdir(fd)
                finally:
                    os.close(fd)
            else:
                names = os.listdir(path)
            for name in sorted(names):
                visit(os.path.join(path, name), os.path.join(relp, name) if relp != "." else name)

    visit(root, ".")
    return out


def tree(rel=".", **kw):
    """Step: snapshot() of base/rel."""
    def step(b):
        return snapshot(b, rel, **kw)
    step.label = "snapshot(%r)" % rel
    return step


class TimeWatch:
    """Relations of a file's timestamps to a mark, comparable across trees.

    `w.mark` (a step) sets atime/mtime of rel to a fixed past value, records
    ctime, and waits long enough for a later ctime update to be visible at
    the filesystem's timestamp granularity.  `w.check` (a step) returns
    {"atime"/"mtime": "marked" | "changed", "ctime": "same" | "changed"};
    `w.check_mtime` leaves atime out (reads may or may not update it)."""

    MARK_NS = 1_000_000_000_123_456_789  # 2001-09-09T01:46:40.123456789Z

    def __init__(self, rel=".", follow=True):
        self.rel = rel
        self.follow = follow
        self.mark = self._step(self._mark, "mark")
        self.check = self._step(lambda b: self._rel(b, True), "check")
        self.check_mtime = self._step(lambda b: self._rel(b, False), "check_mtime")

    def _step(self, fn, what):
        def step(b):
            return fn(b)
        step.label = "TimeWatch(%r).%s" % (self.rel, what)
        return step

    def _stat(self, b):
        return os.stat(b.p(self.rel)) if self.follow else os.lstat(b.p(self.rel))

    def _mark(self, b):
        os.utime(b.p(self.rel), ns=(self.MARK_NS, self.MARK_NS), follow_symlinks=self.follow)
        b.state[("timewatch", self.rel)] = self._stat(b).st_ctime_ns
        time.sleep(0.025)

    def _rel(self, b, with_atime):
        s = self._stat(b)
        ctime0 = b.state[("timewatch", self.rel)]
        d = {"mtime": "marked" if s.st_mtime_ns == self.MARK_NS else "changed",
             "ctime": "same" if s.st_ctime_ns == ctime0 else
                      ("changed" if s.st_ctime_ns > ctime0 else "went back")}
        if with_atime:
            d["atime"] = "marked" if s.st_atime_ns == self.MARK_NS else "changed"
        return d


# ---------------------------------------------------------------- the runner

def _trees(target):
    if isinstance(target, (tuple, list)):
        return target[0], target[1]
    return target.native, target.path


def _label(s):
    lab = getattr(s, "label", None)
    if lab:
        return lab
    func = getattr(s, "__func__", s)
    name = getattr(func, "__name__", repr(s))
    if name == "<lambda>":
        try:
            src = inspect.getsource(func).strip()
            i = src.find("lambda")
            src = src[i:] if i >= 0 else src
            return src if len(src) <= 160 else src[:157] + "..."
        except (OSError, TypeError):
            pass
    return name


def _unpack(s):
    if isinstance(s, tuple):
        return s[1], s[0]
    return s, _label(s)


def _norm(v):
    if isinstance(v, os.stat_result):
        return stat_summary(v)
    return v


def run_step(fn, base):
    """Run one step on one tree; OSError becomes ("errno", "ENAME")."""
    try:
        return _norm(fn(base))
    except OSError as e:
        return err(e.errno)


def _short(v, limit=600):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "...(%d chars)" % len(r)


def _diff(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        lines = ["      %r: native=%s mount=%s" % (k, _short(a.get(k, "<missing>"), 200),
                                                   _short(b.get(k, "<missing>"), 200))
                 for k in keys if a.get(k, "<missing>") != b.get(k, "<missing>")]
        return "\n    differing keys:\n" + "\n".join(lines[:40])
    return ""


class ParityError(AssertionError):
    pass


class Results(list):
    """The native results of run_parity, indexable by position or by step
    label (res["label"]: the first step with that label)."""

    def __init__(self, labelled):
        super().__init__(r for _, r in labelled)
        self.labels = [lab for lab, _ in labelled]

    def __getitem__(self, k):
        if isinstance(k, str):
            try:
                return list.__getitem__(self, self.labels.index(k))
            except ValueError:
                raise KeyError("no step labelled %r" % k) from None
        return list.__getitem__(self, k)

    def all(self, label):
        return [r for lab, r in zip(self.labels, self) if lab == label]


def run_parity(target, steps, native_first=True):
    """Run steps on both trees of target (a View, or a (native, mount) pair
    of directories), step by step, native first (mount first with
    native_first=False).  Fails with a message at the first divergence;
    returns the native results (Results: a list also indexable by step
    label).  Only OSError is recorded as a result: any other exception is a
    bug in the test and propagates."""
    a, b = _trees(target)
    ta, tb = Base(a, NATIVE), Base(b, MOUNT)
    done = []
    try:
        for i, s in enumerate(steps):
            fn, label = _unpack(s)
            if native_first:
                ra = run_step(fn, ta)
                rb = run_step(fn, tb)
            else:
                rb = run_step(fn, tb)
                ra = run_step(fn, ta)
            if ra != rb:
                hist = "\n".join("    #%d %s -> %s" % (j, lab, _short(r, 160))
                                 for j, (lab, r) in enumerate(done))
                raise ParityError(
                    "parity divergence at step #%d: %s\n  native (%s): %s\n  mount  (%s): %s%s\n"
                    "  agreeing steps before it:\n%s"
                    % (i, label, a, _short(ra), b, _short(rb), _diff(ra, rb), hist or "    (none)"))
            done.append((label, ra))
            hook = getattr(target, "after_step", None)
            if hook is not None:
                hook(i)
    finally:
        ta.close_all()
        tb.close_all()
    return Results(done)
