"""Live path mappings: a change made through the mount is seen at every name
that shows it.

A mapped name (a file key, a graft, a key inside a graft's target, one
target shown at two keys, a key below a synthetic directory) shows the
object its target names *now*: when an operation through the mount changes
which object the target path names -- the target itself replaced (an
editor's `write tmp; mv tmp target`), renamed away, removed, made anew as
another kind of file, linked or symlinked in its place, exchanged; or an
ancestor directory of the target moved, exchanged or made anew -- the very
next stat, read or listing of the mapped name shows the new state, exactly
as the target's own path in the view does, although the kernel may keep
names for a day (--timeout default 86400). No retries: one look.

With --upper the table shapes the lower view (README, *With a mapping
table*): changes land in the upper at the view's paths and SOURCE never
changes, so every mapped name keeps showing its target in SOURCE while the
target's own path shows the change.

A reload sets every mapped name right too, also the keys the update left
as they were (their target changed meanwhile, here outside the mount).
"""
import errno
import os
import stat

import pytest

from map_helpers import ls, make_mapped, mkdirs, read_file, write_file
from sysx import RENAME_EXCHANGE, renameat2

# mapped name -> the target's own path in the view (and in SOURCE)
PAIRS = {
    "cfg": "etc/app.conf",
    "cfg2": "etc/app.conf",      # the same target at a second key, with its own mode
    "v/w/cfg": "etc/app.conf",   # ... and below synthetic directories
    "leaf": "etc/sub/leaf",      # two directories deep
    "g": "data",                 # a graft
    "g2": "data",                # the same directory grafted twice
    "gf": "data/f",              # a file key inside a graft's target
    "g/f": "data/f",             # ... and that file through the graft
    "g/d": "data/d",
    "ge": "empty",               # a graft of an empty directory
    "near/k": "near/t",          # a key beside its target
    "extf": "ext/file",          # an absolute target outside SOURCE, and
    "extf2": "ext/file",         # its own path in the view (a graft)
}
TABLE = {
    "/cfg": {"target": "etc/app.conf"},
    "/cfg2": {"target": "etc/app.conf", "mode": "0640"},
    "/v/w/cfg": {"target": "etc/app.conf"},
    "/leaf": {"target": "etc/sub/leaf"},
    "/g": {"target": "data"},
    "/g2": {"target": "data"},
    "/gf": {"target": "data/f"},
    "/ge": {"target": "empty"},
    "/near/k": {"target": "near/t"},
}


def table(workdir):
    """TABLE plus absolute targets in workdir/outside (made by populate)."""
    out = os.path.join(workdir, "outside")
    return dict(TABLE, **{"/ext": {"target": out}, "/extf": {"target": os.path.join(out, "file")},
                          "/extf2": {"target": os.path.join(out, "file")}})


def real(m, t):
    """Where the target t of PAIRS lives outside the mount."""
    if t.startswith("ext/"):
        return os.path.join(m.workdir, "outside", t[len("ext/"):])
    return m.s(t)


def populate(s):
    mkdirs(*(os.path.join(s, d) for d in ("etc", "etc/sub", "etc2", "etc2/sub", "data",
                                          "data/d", "data2", "empty", "spare", "near")))
    write_file(os.path.join(s, "etc/app.conf"), "old conf\n")
    write_file(os.path.join(s, "etc/other"), "other file\n")
    write_file(os.path.join(s, "etc/sub/leaf"), "old leaf\n")
    write_file(os.path.join(s, "etc2/app.conf"), "etc2 conf\n")
    write_file(os.path.join(s, "etc2/sub/leaf"), "etc2 leaf\n")
    write_file(os.path.join(s, "data/f"), "old f\n")
    write_file(os.path.join(s, "data/d/x"), "x\n")
    write_file(os.path.join(s, "data2/y"), "y\n")
    write_file(os.path.join(s, "spare/z"), "z\n")
    write_file(os.path.join(s, "near/t"), "old t\n")
    out = mkdirs(os.path.join(os.path.dirname(s), "outside"))
    write_file(os.path.join(out, "file"), "outside file\n")


def state(path, ino=True):
    """What one look at path shows (one lstat, then the content)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    kind = stat.S_IFMT(st.st_mode)
    out = {"type": {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
                    stat.S_IFIFO: "fifo"}.get(kind, oct(kind))}
    if ino:
        out["ino"] = st.st_ino
    if kind == stat.S_IFREG:
        out["size"] = st.st_size
        out["data"] = _read(path)
    elif kind == stat.S_IFDIR:
        out["list"] = _ls(path)
    elif kind == stat.S_IFLNK:
        out["link"] = os.readlink(path)
    return out


def _read(path):
    try:
        return read_file(path)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def _ls(path):
    try:
        return ls(path)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def save(p, rel, data):
    """An editor's atomic save: a new file beside it, renamed onto it."""
    tmp = os.path.join(os.path.dirname(p(rel)), ".#save")
    write_file(tmp, data)
    os.rename(tmp, p(rel))


def remake_etc(p):
    os.rename(p("etc"), p("etc.old"))
    os.mkdir(p("etc"))
    os.mkdir(p("etc/sub"))
    write_file(p("etc/app.conf"), "remade conf\n")
    write_file(p("etc/sub/leaf"), "remade leaf\n")


# Every operation through the mount that changes which object a target
# path (or a path inside a graft's target) names. Each is done on the
# target's own path, never on the mapped name.
OPS = {
    # the last component of a file target
    "save onto": lambda p: save(p, "etc/app.conf", "saved conf, longer\n"),
    "rename away": lambda p: os.rename(p("etc/app.conf"), p("etc/app.conf~")),
    "unlink": lambda p: os.unlink(p("etc/app.conf")),
    "unlink, create": lambda p: (os.unlink(p("etc/app.conf")),
                                 write_file(p("etc/app.conf"), "created anew\n")),
    "unlink, mkfifo": lambda p: (os.unlink(p("etc/app.conf")), os.mkfifo(p("etc/app.conf"))),
    "unlink, mkdir": lambda p: (os.unlink(p("etc/app.conf")), os.mkdir(p("etc/app.conf"))),
    "unlink, link": lambda p: (os.unlink(p("etc/app.conf")),
                               os.link(p("etc/other"), p("etc/app.conf"))),
    "unlink, symlink": lambda p: (os.unlink(p("etc/app.conf")),
                                  os.symlink("other", p("etc/app.conf"))),
    "exchange": lambda p: renameat2(p("etc/app.conf"), p("etc/other"), RENAME_EXCHANGE),
    "save onto, deeper": lambda p: save(p, "etc/sub/leaf", "saved leaf\n"),
    "save onto, beside its key": lambda p: save(p, "near/t", "saved t\n"),
    "save onto the mapped name": lambda p: save(p, "cfg", "saved through the key\n"),
    "rename onto from another directory": lambda p: os.rename(p("etc2/app.conf"),
                                                              p("etc/app.conf")),
    "save onto, absolute target": lambda p: save(p, "ext/file", "saved outside\n"),
    "save onto the mapped name, absolute target": lambda p: save(p, "extf", "saved\n"),
    # a file inside a graft's target
    "save inside a graft": lambda p: save(p, "data/f", "saved f\n"),
    "rmdir, mkdir inside a graft": lambda p: (os.unlink(p("data/d/x")), os.rmdir(p("data/d")),
                                              os.mkdir(p("data/d"))),
    # a graft's target directory
    "rename graft target away": lambda p: os.rename(p("data"), p("data.old")),
    "rename graft target away, mkdir": lambda p: (os.rename(p("data"), p("data.old")),
                                                  os.mkdir(p("data")),
                                                  write_file(p("data/n"), "n\n")),
    "rename a directory onto a graft target": lambda p: os.rename(p("spare"), p("empty")),
    "rmdir graft target": lambda p: os.rmdir(p("empty")),
    "rmdir graft target, mkdir": lambda p: (os.rmdir(p("empty")), os.mkdir(p("empty")),
                                            write_file(p("empty/n"), "n\n")),
    "exchange graft target": lambda p: renameat2(p("data"), p("data2"), RENAME_EXCHANGE),
    # an ancestor of a target
    "rename ancestor away": lambda p: os.rename(p("etc"), p("etc.old")),
    "rename ancestor away, make anew": remake_etc,
    "exchange ancestor": lambda p: renameat2(p("etc"), p("etc2"), RENAME_EXCHANGE),
    "replace middle ancestor": lambda p: (os.rename(p("etc/sub"), p("etc/sub.old")),
                                          os.rename(p("etc2/sub"), p("etc/sub"))),
}


def look_all(m, ino=True):
    return {k: state(m.p(k), ino) for k in PAIRS}


@pytest.mark.parametrize("op", list(OPS))
def test_mapped_names_follow_a_change_through_the_mount(workdir, mounter, op):
    m = make_mapped(workdir, mounter, table(workdir), populate=populate)
    # Prime the kernel's caches: every mapped name and every target's own
    # path, looked up, stat'ed, read or listed, twice.
    for _ in range(2):
        before = look_all(m)
        for t in set(PAIRS.values()):
            state(m.p(t))
    assert before["cfg"]["data"] == "old conf\n" and before["g"]["list"] == ["d", "f"], before
    OPS[op](m.p)
    got = look_all(m)
    want = {k: state(m.p(t)) for k, t in PAIRS.items()}
    wrong = {k: {"mapped name": got[k], "target's path": want[k]}
             for k in PAIRS if got[k] != want[k]}
    assert not wrong, "stale mapped names right after %r: %r" % (op, wrong)
    # and the operation did change what some of them show
    assert got != before, "sanity: %r changed nothing" % op


@pytest.mark.parametrize("op", list(OPS))
def test_layered_mapped_names_keep_showing_source(workdir, mounter, op):
    upper = mkdirs(os.path.join(workdir, "upper"))
    m = make_mapped(workdir, mounter, table(workdir), "--upper", upper, populate=populate)
    for _ in range(2):
        look_all(m, ino=False)
        targets = {t: state(m.p(t), False) for t in set(PAIRS.values())}
    refused = False
    try:
        OPS[op](m.p)
    except OSError as e:
        # a directory with a lower part cannot be renamed (EXDEV), as in overlayfs
        assert e.errno == errno.EXDEV, (op, e)
        refused = True
    got = look_all(m, ino=False)
    want = {k: state(real(m, t), False) for k, t in PAIRS.items()}
    own = {"save onto the mapped name": "cfg",
           "save onto the mapped name, absolute target": "extf"}.get(op)
    if own:  # that name itself: the upper's entry wins
        assert got[own]["data"] in ("saved through the key\n", "saved\n"), got[own]
        want[own] = got[own]
    wrong = {k: {"mapped name": got[k], "SOURCE's target": want[k]}
             for k in PAIRS if got[k] != want[k]}
    assert not wrong, "mapped names right after %r do not show SOURCE: %r" % (op, wrong)
    assert want["cfg2"]["data"] == "old conf\n", "sanity: SOURCE changed"
    after = {t: state(m.p(t), False) for t in set(PAIRS.values())}
    assert refused or own or after != targets, "sanity: %r changed nothing in the view" % op


def test_a_reload_sets_every_mapped_name_right(workdir, mounter):
    """Changes made outside the mount are the kernel's to see after
    --timeout, but a reload, even one that leaves these keys as they were,
    shows each mapped name's target as it is now."""
    m = make_mapped(workdir, mounter, table(workdir), populate=populate)
    for _ in range(2):
        look_all(m)
    s = m.s
    write_file(s("etc/.#new"), "changed outside\n")
    os.rename(s("etc/.#new"), s("etc/app.conf"))
    os.rename(s("data"), s("data.old"))
    os.mkdir(s("data"))
    write_file(s("data/f"), "new f\n")
    os.rename(s("etc/sub"), s("etc/sub.old"))
    m.update(dict(table(workdir), **{"/unrelated": {"target": "spare"}}))
    got = look_all(m)
    want = {k: state(m.p(t)) for k, t in PAIRS.items()}
    wrong = {k: {"mapped name": got[k], "target's path": want[k]}
             for k in PAIRS if got[k] != want[k]}
    assert not wrong, "stale mapped names right after the reload: %r" % wrong
    assert got["cfg"]["data"] == "changed outside\n" and got["g"]["list"] == ["f"], got
    assert got["leaf"] == "ENOENT", got
