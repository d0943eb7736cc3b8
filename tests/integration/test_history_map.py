"""History (issue 17) on a mount with a mapping table (--history with --map).

What a user expects (README, docs/HISTORY.md "With a mapping table"): the
journal names every change by the view's path it was made through;
MNT/.history/SNAP/P is what the mount showed at P when SNAP was taken,
through the table in force then (a later reload does not change the past);
prismfs log MNT P takes the view's path; restore of a view path puts back
what the view showed there; a path the table hides (then or now) is not
reachable under .history. The expected trees are recorded by walking the
mount itself at each snapshot (what the view showed), never from
prismfs's own records."""
import errno
import json
import os
import stat
import subprocess

import pytest

from map_helpers import make_mapped
from prism_helpers import assert_one_error_line, cli


def record(root):
    """{rel: (type, mode, uid, gid, size, content, mtime_ns)} of a tree as
    seen through it; a directory's size and mtime are not kept."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", None, st.st_uid, st.st_gid, None, os.readlink(p),
                            st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, None,
                            None)
            else:
                with open(p, "rb") as f:
                    data = f.read()
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size,
                            data, st.st_mtime_ns)
    return out


def same(got, want):
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    for k in want:
        assert got[k] == want[k], (k, got[k][:5], want[k][:5])


def write(p, data, mode="wb"):
    with open(p, mode) as f:
        f.write(data)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def snap(mnt, name):
    r = cli("snapshot", mnt, "--name", name)
    assert r.returncode == 0, r.stderr


def log_json(mnt, *args):
    r = cli("log", mnt, "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def populate(src):
    os.makedirs(os.path.join(src, "conf"))
    os.makedirs(os.path.join(src, "ds", "v1", "sub"))
    os.makedirs(os.path.join(src, "secret"))
    write(os.path.join(src, "conf", "app.json"), b"app 1\n")
    write(os.path.join(src, "conf", "cc"), b"#!cc\n")
    write(os.path.join(src, "ds", "v1", "a"), b"a 1\n")
    write(os.path.join(src, "ds", "v1", "sub", "deep"), b"deep 1\n")
    write(os.path.join(src, "secret", "key"), b"k\n")
    write(os.path.join(src, "plain"), b"plain 1\n")


TABLE = {
    "/config.json": {"target": "conf/app.json", "mode": "0640"},
    "/data": {"target": "ds/v1"},
    "/ds": {},
    "/secret": {},
    "/tools/bin/cc": {"target": "conf/cc"},
}


@pytest.fixture
def mapped(workdir, mounter):
    hdir = os.path.join(workdir, "hist")
    m = make_mapped(workdir, mounter, TABLE, "--history", hdir, populate=populate)
    m.hdir = hdir
    return m


def test_changes_through_mapped_names_are_journaled_by_their_view_path(mapped, workdir):
    m = mapped
    ext = os.path.join(workdir, "ext")
    os.mkdir(ext)
    m.update(dict(TABLE, **{"/ext": {"target": ext}}))
    write(m.p("config.json"), b"app 2\n")
    write(m.p("data", "new"), b"n\n")
    os.rename(m.p("data", "new"), m.p("data", "new2"))
    os.mkdir(m.p("data", "d"))
    os.chmod(m.p("data", "a"), 0o600)
    write(m.p("plain"), b"plain 2\n")
    write(m.p("ext", "f"), b"outside\n")
    rows = [x for x in log_json(m.mnt) if x["pid"] == os.getpid()]
    got = [(x["kind"], x["path"], x["path2"]) for x in rows]
    for want in [("open-write", "config.json", None), ("create", "data/new", None),
                 ("rename", "data/new", "data/new2"), ("mkdir", "data/d", None),
                 ("chmod", "data/a", None), ("open-write", "plain", None),
                 ("create", "ext/f", None)]:
        kinds = {want[0], "truncate"} if want[0] == "open-write" else {want[0]}
        assert any(g[0] in kinds and g[1:] == want[1:] for g in got), (want, got)
    # nothing is named by a path the view does not show
    assert not [g for g in got if g[1].split("/")[0] in ("ds", "conf")], got
    # the history's own names are there too, for who reads SOURCE
    src_of = {x["path"]: x["source_path"] for x in rows}
    assert src_of["config.json"] == "conf/app.json"
    assert src_of["data/d"] == "ds/v1/d"
    assert src_of["ext/f"] == os.path.join(ext, "f")
    # log MNT PATH takes the view's path
    assert {x["path"] for x in log_json(m.mnt, "config.json")} == {"config.json"}
    under = {x["path"] for x in log_json(m.mnt, "data")}
    assert under == {"data/new", "data/d", "data/a"}, under
    r = cli("log", m.mnt, os.path.join(m.mnt, "data", "new2"))
    assert r.returncode == 0 and " -> data/new2 " in r.stdout, r.stdout


def test_a_snapshot_shows_what_the_view_showed_then(mapped):
    m = mapped
    os.chmod(m.s("conf", "app.json"), 0o644)
    write(m.p("data", "sub", "more"), b"more\n")
    os.symlink("a", m.p("data", "link"))
    want = record(m.mnt)
    assert "ds" not in want and "secret" not in want and "tools/bin/cc" in want
    snap(m.mnt, "s1")
    write(m.p("config.json"), b"app 2, longer\n")
    write(m.p("data", "a"), b"a 2\n", "ab")
    os.rename(m.p("data", "sub"), m.p("data", "sub2"))
    os.unlink(m.p("data", "sub2", "deep"))
    os.unlink(m.p("data", "link"))
    write(m.p("data", "made-later"), b"x\n")
    write(m.p("tools", "bin", "cc"), b"#!cc 2\n")
    write(m.p("plain"), b"plain 2\n")
    hist = m.p(".history", "s1")
    same(record(hist), want)
    # the table's mode shows there too, not SOURCE's
    assert stat.S_IMODE(os.stat(os.path.join(hist, "config.json")).st_mode) == 0o640
    assert read(os.path.join(hist, "config.json")) == b"app 1\n"
    assert read(m.p("config.json")) == b"app 2, longer\n"


def test_restore_puts_back_what_the_view_showed(mapped):
    m = mapped
    snap(m.mnt, "s1")
    before = record(m.mnt)
    write(m.p("config.json"), b"app 2\n")
    write(m.p("data", "a"), b"a 2\n")
    write(m.p("data", "sub", "deep"), b"deep 2\n")
    write(m.p("data", "sub", "new"), b"new\n")
    write(m.p("data", "made-later"), b"x\n")
    r = cli("restore", m.mnt, "s1", "config.json", "data/a", "data/sub", "data/made-later")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed data/made-later" in r.stdout, r.stdout
    same(record(m.mnt), before)
    # in SOURCE, the targets hold it
    assert read(m.s("conf", "app.json")) == b"app 1\n"
    assert read(m.s("ds", "v1", "a")) == b"a 1\n"
    assert sorted(os.listdir(m.s("ds", "v1", "sub"))) == ["deep"]
    assert not [n for n in os.listdir(m.s("conf")) + os.listdir(m.s("ds", "v1"))
                if n.startswith(".prismfs-restore")]
    # journaled as the restorer's changes, by view path
    rows = log_json(m.mnt, "config.json")
    assert any(x["kind"] == "rename" and x["path2"] == "config.json" and x["comm"] == "prismfs"
               for x in rows), rows

    # everything: a name the table places (a key, a directory holding keys)
    # cannot be exchanged away (EBUSY), so what is beneath is restored
    write(m.p("config.json"), b"app 3\n")
    write(m.p("data", "sub", "deep"), b"deep 3\n")
    os.unlink(m.p("data", "a"))
    write(m.p("newtop"), b"new\n")
    os.mkdir(m.p("data", "newdir"))
    r = cli("restore", m.mnt, "s1")
    assert r.returncode == 0, r.stdout + r.stderr
    same(record(m.mnt), before)
    assert read(m.s("conf", "app.json")) == b"app 1\n"
    assert stat.S_IMODE(os.stat(m.s("conf", "app.json")).st_mode) == 0o644


def test_a_reload_between_snapshots_keeps_each_snapshot_in_its_own_table(mapped, mounter):
    m = mapped
    write(m.s("conf", "other.json"), b"other 1\n")
    want1 = record(m.mnt)
    snap(m.mnt, "s1")
    t2 = {"/config.json": {"target": "conf/other.json"}, "/etc": {"target": "conf"},
          "/ds": {}, "/secret": {}}
    m.update(t2)
    want2 = record(m.mnt)
    assert "etc/app.json" in want2 and "data" not in want2
    snap(m.mnt, "s2")
    write(m.p("config.json"), b"other 2\n")            # conf/other.json now
    write(m.p("etc", "app.json"), b"app 2\n")
    same(record(m.p(".history", "s1")), want1)
    same(record(m.p(".history", "s2")), want2)
    assert read(m.p(".history", "s1", "config.json")) == b"app 1\n"
    assert read(m.p(".history", "s2", "config.json")) == b"other 1\n"
    # the journal names each change by the table of its time
    rows = log_json(m.mnt, "etc")
    assert [x["path"] for x in rows if x["kind"] in ("open-write", "truncate")] == \
        ["etc/app.json"], rows
    assert all(x["source_path"] == "conf/app.json" for x in rows), rows
    # and after a remount (the tables are kept with the history)
    m.mount.stop()
    m.mount.check_clean_exit()
    mounter(m.src, m.mnt, "--map", m.mapfile, "--history", m.hdir)
    same(record(m.p(".history", "s1")), want1)
    same(record(m.p(".history", "s2")), want2)


def test_hidden_paths_are_not_reachable_under_history(mapped):
    m = mapped
    snap(m.mnt, "s1")
    hist = m.p(".history", "s1")
    names = sorted(os.listdir(hist))
    assert names == ["conf", "config.json", "data", "plain", "tools"], names
    for p in ("secret", "secret/key", "ds", "ds/v1/a"):
        with pytest.raises(FileNotFoundError):
            os.stat(os.path.join(hist, p))
    # hidden now, shown then: hidden in the past too
    t = dict(TABLE, **{"/plain": {}, "/data/sub": {}})
    m.update(t)
    assert sorted(os.listdir(hist)) == ["conf", "config.json", "data", "tools"]
    assert "sub" not in os.listdir(os.path.join(hist, "data"))
    for p in ("plain", "data/sub", "data/sub/deep"):
        with pytest.raises(FileNotFoundError):
            os.stat(os.path.join(hist, p))
    # and every change under it is EROFS
    with pytest.raises(OSError) as e:
        write(os.path.join(hist, "config.json"), b"x")
    assert e.value.errno == errno.EROFS


def test_versions_of_a_view_path(mapped):
    m = mapped
    snap(m.mnt, "s1")
    write(m.p("config.json"), b"app 2\n")
    snap(m.mnt, "s2")
    write(m.p("config.json"), b"app 3, longer\n")
    r = cli("versions", m.mnt, "--json", "config.json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [(x["snapshot"], x["size"], x["path"], x["source_path"]) for x in got] == [
        ("s1", 6, "config.json", "conf/app.json"), ("s2", 6, "config.json", "conf/app.json")]
    # the same through the graft, with the name it had before a rename
    write(m.p("data", "a"), b"a 2, longer\n")
    os.rename(m.p("data", "a"), m.p("data", "b"))
    write(m.p("data", "b"), b"b\n")
    r = cli("versions", m.mnt, os.path.join(m.mnt, "data", "b"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and " size=4 " in lines[0] and lines[0].endswith(" as=data/a"), \
        lines
    # a hidden path is none of the mount's
    r = cli("versions", m.mnt, "ds/v1/a")
    assert_one_error_line(r, "versions of a hidden path")


def test_diff_names_the_view_paths(mapped):
    """zfs diff's shape; what changed is known from SOURCE's objects, each
    path shown through the table of the snapshot (or now) it belongs to."""
    m = mapped
    write(m.p("data", "b"), b"b\n")
    snap(m.mnt, "s1")
    write(m.p("config.json"), b"app 2\n")
    os.rename(m.p("data", "a"), m.p("data", "z"))
    os.unlink(m.p("data", "b"))
    write(m.p("data", "new"), b"n\n")
    os.chmod(m.p("plain"), 0o600)
    want = ["M\tconfig.json", "R\tdata/a -> data/z", "-\tdata/b", "+\tdata/new", "M\tplain"]
    r = cli("diff", m.mnt, "s1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == want, r.stdout
    snap(m.mnt, "s2")
    r = cli("diff", m.mnt, "s1", "s2", "--stat")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["1 created, 1 deleted, 2 modified, 1 renamed"], r.stdout


def test_export_writes_the_view_as_it_was(mapped):
    """The tar stream of SNAP is what the view showed then (untarred by
    tar(1) and compared with the walk recorded at the snapshot)."""
    m = mapped
    os.symlink("a", m.p("data", "link"))
    want = record(m.mnt)
    snap(m.mnt, "s1")
    write(m.p("config.json"), b"app 2, longer\n")
    os.rename(m.p("data", "a"), m.p("data", "z"))
    os.unlink(m.p("data", "link"))
    write(m.p("data", "new"), b"n\n")
    m.update(dict(TABLE, **{"/plain": {}}))
    tarfile = os.path.join(m.workdir, "s1.tar")
    r = cli("export", m.mnt, "s1", "-o", tarfile)
    assert r.returncode == 0, r.stderr
    dest = os.path.join(m.workdir, "untarred")
    os.makedirs(dest)
    r = subprocess.run(["tar", "-x", "-p", "-f", tarfile, "-C", dest], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = record(dest)
    # hidden now: hidden in the past too
    del want["plain"]
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    for k, w in want.items():
        g = got[k]
        assert g[:3] == w[:3] and (w[0] not in "fl" or g[5:] == w[5:]), (k, g[:5], w[:5])
