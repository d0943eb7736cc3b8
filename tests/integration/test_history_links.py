"""History (issue 17 item 4): files with hard links under .history. A
snapshot is the tree as it was when taken: every name of a file shows what
the file held then, whichever of its names a later change went through
(POSIX link(2): the names are one file; a change through one is a change
of all). At each snapshot the test records the tree by reading it (every
name's content, mode, owner, size, mtime), then changes the files through
each of their names, and compares."""
import json
import os
import stat
import subprocess

from prism_helpers import cli
from test_history_browse import record, same, write


def snap(mnt, name, records, src):
    r = cli("snapshot", mnt, "--name", name)
    assert r.returncode == 0, r.stderr
    records[name] = record(src)


def check(mnt, records):
    for name, want in records.items():
        same(record(os.path.join(mnt, ".history", name)), want)


def test_every_name_of_a_hard_linked_file_shows_its_past(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    p = lambda *x: os.path.join(mnt, *x)
    os.makedirs(p("sub"))
    for first, others, data in [("x", ["y", "sub/z"], b"x's data at s1"),
                                ("p", ["q"], b"p and q at s1"),
                                ("r", ["s"], b"r and s at s1"),
                                ("u", ["v"], b"u and v at s1"),
                                ("m", ["n"], b"m and n at s1")]:
        write(p(first), data)
        for o in others:
            os.link(p(first), p(o))
    os.utime(p("x"), ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    records = {}
    snap(mnt, "s1", records, src)

    write(p("x"), b"overwritten through x")        # data, through one name
    os.chmod(p("p"), 0o600)                        # mode through p...
    write(p("q"), b" appended through q", "ab")    # ... data through q
    write(p("r"), b"rewritten through r")          # data through r...
    os.unlink(p("s"))                              # ... then s removed
    os.rename(p("u"), p("u2"))                     # u renamed...
    write(p("v"), b"rewritten through v")          # ... data through v
    os.truncate(p("n"), 2)                         # truncate through n
    check(mnt, records)

    snap(mnt, "s2", records, src)
    write(p("sub", "z"), b"through z, after s2")
    os.unlink(p("x"))
    os.link(p("y"), p("x2"))                        # a name made since: not at s2
    write(p("x2"), b"through x2, made after s2")
    os.utime(p("m"), ns=(1_600_000_000_000_000_001, 1_600_000_000_000_000_001))
    check(mnt, records)
    # prismfs export writes each name as it was too (as separate files)
    for name, want in records.items():
        out = os.path.join(workdir, name + ".tar")
        r = cli("export", mnt, name, "-o", out)
        assert r.returncode == 0, r.stderr
        dest = os.path.join(workdir, "x-" + name)
        os.makedirs(dest)
        r = subprocess.run(["tar", "-x", "-p", "-f", out, "-C", dest], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        got = record(dest)
        assert sorted(got) == sorted(want)
        for k in want:
            assert got[k][:6] == want[k][:6], (name, k, got[k][:6], want[k][:6])

    # nothing cached: the same after a remount
    m.stop()
    mounter(src, mnt, "--history", hdir)
    check(mnt, records)


def test_a_write_through_a_removed_name_is_no_change_of_it(workdir, trees, mounter):
    """f and g one file; f opened for writing, then unlinked: the writes
    through the descriptor change g. /proc names the descriptor "f
    (deleted)": no snapshot after the unlink has an f, and g shows at each
    snapshot what it held then."""
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    p = lambda *x: os.path.join(mnt, *x)
    write(p("f"), b"shared")
    os.link(p("f"), p("g"))
    records = {}
    fd = os.open(p("f"), os.O_RDWR)
    try:
        snap(mnt, "s1", records, src)
        os.unlink(p("f"))
        snap(mnt, "s2", records, src)
        os.pwrite(fd, b"S", 0)
        os.fsync(fd)
        snap(mnt, "s3", records, src)
        os.pwrite(fd, b"H", 1)
        os.fchmod(fd, 0o640)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert open(p("g"), "rb").read() == b"SHared"
    check(mnt, records)
    assert "f" not in os.listdir(p(".history", "s2"))
    assert "f" not in os.listdir(p(".history", "s3"))
    # no row names f after its removal
    r = cli("log", mnt, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    kinds = [x["kind"] for x in rows if x.get("path") == "f"]
    assert "unlink" in kinds, kinds
    assert kinds[kinds.index("unlink") + 1:] == [], kinds
    assert stat.S_IMODE(os.lstat(p(".history", "s3", "g")).st_mode) == \
        stat.S_IMODE(records["s3"]["g"][1])


def diff(mnt, *args):
    r = cli("diff", mnt, *args)
    assert r.returncode == 0, r.stderr
    return sorted(tuple(line.split("\t", 1)) for line in r.stdout.splitlines())


def test_a_write_through_a_removed_name_is_a_change_of_the_names_left(workdir, trees,
                                                                      mounter):
    """f and g one file; f opened for writing, then unlinked, and a new
    file made at f: the writes and the chmod through the descriptor change
    g (POSIX: the file lives on under g), so diff lists g as modified, and
    log has their rows, under g; the new f is another object, unchanged."""
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    p = lambda *x: os.path.join(mnt, *x)
    write(p("f"), b"shared")
    os.link(p("f"), p("g"))
    os.makedirs(p("d1", "sub"))
    os.makedirs(p("d2"))
    write(p("d1", "sub", "k"), b"k and l")     # the other name in another directory
    os.link(p("d1", "sub", "k"), p("d2", "l"))
    records = {}
    fd = os.open(p("f"), os.O_RDWR)
    fd2 = os.open(p("d1", "sub", "k"), os.O_WRONLY)
    try:
        os.unlink(p("f"))
        write(p("f"), b"another file")
        os.unlink(p("d1", "sub", "k"))
        snap(mnt, "s1", records, src)
        os.pwrite(fd, b"S", 0)
        os.fsync(fd)
        os.pwrite(fd2, b"K", 0)
        snap(mnt, "s2", records, src)
        os.pwrite(fd, b"H", 1)
        os.fchmod(fd, 0o640)
    finally:
        os.close(fd)
        os.close(fd2)
    snap(mnt, "s3", records, src)
    assert open(p("g"), "rb").read() == b"SHared"
    assert open(p("f"), "rb").read() == b"another file"
    assert open(p("d2", "l"), "rb").read() == b"K and l"
    check(mnt, records)
    assert diff(mnt, "s1", "s2") == [("M", "d2/l"), ("M", "g")]
    assert diff(mnt, "s2", "s3") == [("M", "g")]
    assert diff(mnt, "s1") == [("M", "d2/l"), ("M", "g")]
    r = cli("log", mnt, "--json", "--since", "s1")
    assert r.returncode == 0, r.stderr
    rows = [(x["kind"], x.get("path")) for x in json.loads(r.stdout)]
    assert ("write", "g") in rows and ("chmod", "g") in rows, rows
    assert ("write", "d2/l") in rows, rows
    assert all(path not in ("f", "d1/sub/k") for _, path in rows), rows
    r = cli("log", mnt, "g")
    assert r.returncode == 0, r.stderr
    assert "write" in r.stdout and "chmod" in r.stdout, r.stdout
