"""A layered mount with a mapping table (--map with --upper): the table shapes
what SOURCE shows (targets, grafts, hidden paths, synthetic directories), the
upper is keyed by the virtual path, and an upper entry wins over anything
below it.

Every test builds SOURCE (S), a lower below it (L2), a directory outside
SOURCE that the table names by an absolute target (E), the upper (U), the
work directory (W) and the mount point (M), mounts them through the
`mounter` fixture (unmounted in teardown, even on failure; the daemon must
then exit 0 without a sanitizer report), makes real system calls on M and
looks at U, S and E directly.  Decided semantics (README, "Copy-on-write
layers"):

- a change to a mapped path copies up to U at its virtual path; SOURCE and
  the target stay untouched; other places showing the same lower object keep
  showing it;
- the table applies to SOURCE only; --lower layers are taken at the virtual
  path, except that a hidden path hides every lower layer;
- what the user makes at a hidden path is the user's own: it shows (an upper
  entry always wins), while lower content there stays hidden;
- synthetic directories (virtual parents) are lower directories shown as
  drwxr-xr-x owned by the daemon, copied up with exactly those attributes;
- an upper written through a table holds virtual paths: commit and
  commit-atomic are refused (at unmount, at mount, and offline) and the upper
  is kept; preserve and discard work.
"""
import errno
import json
import os
import stat

import pytest

from conftest import is_mounted
from layer_helpers import (T0, T1, assert_no_whiteout, assert_whiteout, mkdir, mkfile,
                           opaque_form, read, user_xattrs)
from map_helpers import (mapping_status, send_messages, shm_dir,  # noqa: F401
                         wait_generation, wait_rejected, write_map_by_rename)
from prism_helpers import assert_one_error_line, cli, status_json

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="layered mounts are tested as root (mknod, chown)")


def errname(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return None


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def append(path, data):
    with open(path, "ab") as f:
        f.write(data)


def files(root):
    """{relative path: bytes, '<dir>', '<chr>' or '<lnk>'} below root."""
    out = {}
    for d, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = "<dir>"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = read(p)
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = "<chr>"
            else:
                out[rel] = "<%o>" % stat.S_IFMT(st.st_mode)
    return out


class LMap:
    def __init__(self, workdir, mounter):
        self.mounter = mounter
        self.mount_ = None
        for name in ("S", "L2", "E", "U", "W", "M"):
            p = os.path.join(workdir, name)
            os.makedirs(p)
            os.chmod(p, 0o755)
            setattr(self, name, p)
        self.mapfile = os.path.join(workdir, "map.json")
        mkfile(self.s("a.txt"), b"a\n")
        mkfile(self.s("real/y"), b"realy\n", mode=0o640, uid=1234, gid=5678, mtime_ns=T0,
               xattrs={"user.origin": b"S"})
        mkfile(self.s("real/sub/f"), b"f\n")
        mkfile(self.s("secret.txt"), b"secret\n")
        mkfile(self.s("hid/x"), b"hx\n")
        mkfile(self.l2("below.txt"), b"below\n")
        mkfile(self.l2("secret.txt"), b"L2 secret\n")
        mkfile(self.l2("hid/l2.txt"), b"L2 hidden\n")
        mkfile(self.l2("g/l2only.txt"), b"L2 in g\n")
        mkfile(self.e("e1"), b"ext\n", mode=0o600, uid=4321, gid=8765, mtime_ns=T1,
               xattrs={"user.where": b"E"})
        mkdir(self.e("tree"))
        mkfile(self.e("tree/t1"), b"t1\n")
        self.table = {
            "/cfg.json": {"target": "real/y"},
            "/g": {"target": "real"},
            "/tools/bin/e": {"target": self.e("e1")},
            "/secret.txt": {},
            "/hid": {},
        }
        with open(self.mapfile, "w") as f:
            json.dump(self.table, f)
        self.before_S = files(self.S)
        self.before_E = files(self.E)

    def s(self, *p):
        return os.path.join(self.S, *p)

    def l2(self, *p):
        return os.path.join(self.L2, *p)

    def e(self, *p):
        return os.path.join(self.E, *p)

    def u(self, *p):
        return os.path.join(self.U, *p)

    def m(self, *p):
        return os.path.join(self.M, *p)

    def args(self, *extra):
        return ("--map", self.mapfile, "--upper", self.U, "--work", self.W, "--lower", self.L2,
                *extra)

    def mount(self, *extra):
        self.mount_ = self.mounter(self.S, self.M, *self.args(*extra))
        return self.mount_

    def unmount(self, action=None):
        """prismfs unmount (with --action); the daemon must end cleanly."""
        res = cli("unmount", *(["--action", action] if action else []), self.M)
        assert res.returncode == 0, res.stderr
        assert self.mount_.wait(20) == 0
        self.mount_.check_clean_exit()
        return res

    def remount(self):
        self.unmount()
        return self.mount()

    def set_table(self, table):
        gen = mapping_status(self.M)["generation"]
        write_map_by_rename(self.mapfile, table)
        wait_generation(self.M, gen + 1)

    def assert_lowers_untouched(self):
        assert files(self.S) == self.before_S, "SOURCE changed"
        assert files(self.E) == self.before_E, "the target outside SOURCE changed"


@pytest.fixture
def lm(workdir, mounter):
    return LMap(workdir, mounter)


# --------------------------------------------------------------------------
# the view


def test_the_table_shapes_the_lower_view(lm):
    lm.mount()
    # hidden: secret.txt and hid, in SOURCE and in L2 alike
    assert sorted(os.listdir(lm.M)) == ["a.txt", "below.txt", "cfg.json", "g", "real", "tools"]
    assert errname(os.stat, lm.m("secret.txt")) == "ENOENT"
    assert errname(os.stat, lm.m("hid")) == "ENOENT"
    assert read(lm.m("cfg.json")) == b"realy\n"
    # the graft: SOURCE's part is the target, L2 is taken at the virtual path
    assert sorted(os.listdir(lm.m("g"))) == ["l2only.txt", "sub", "y"]
    assert read(lm.m("g/y")) == b"realy\n"
    assert read(lm.m("g/l2only.txt")) == b"L2 in g\n"
    # synthetic parents of a key
    for d in ("tools", "tools/bin"):
        st = os.lstat(lm.m(d))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755, d
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()), d
    assert os.listdir(lm.m("tools/bin")) == ["e"]
    assert read(lm.m("tools/bin/e")) == b"ext\n"
    # readdir's inode numbers are the ones stat gives
    for d in ("", "g", "tools", "tools/bin"):
        for de in os.scandir(lm.m(d)):
            assert de.inode() == os.lstat(de.path).st_ino, de.path
    assert os.listdir(lm.U) == [], "reading changed the upper"
    lm.assert_lowers_untouched()


def test_change_copies_up_at_the_virtual_path(lm):
    lm.mount()
    ino = os.stat(lm.m("cfg.json")).st_ino
    append(lm.m("cfg.json"), b"changed\n")
    assert read(lm.m("cfg.json")) == b"realy\nchanged\n"
    assert read(lm.u("cfg.json")) == b"realy\nchanged\n", "not in the upper at its virtual path"
    assert not os.path.exists(lm.u("real")), "the change went to SOURCE's real path"
    assert os.stat(lm.m("cfg.json")).st_ino == ino, "st_ino changed at copy-up"
    # the same lower object at its other places is still the lower one
    assert read(lm.m("g/y")) == b"realy\n"
    assert read(lm.m("real/y")) == b"realy\n"
    lm.assert_lowers_untouched()
    lm.remount()
    assert os.stat(lm.m("cfg.json")).st_ino == ino, "st_ino changed across a remount"
    assert read(lm.m("cfg.json")) == b"realy\nchanged\n"


def test_copy_up_of_a_target_outside_source_keeps_its_metadata(lm):
    lm.mount()
    ino = os.lstat(lm.m("tools/bin/e")).st_ino
    syn = {d: os.lstat(lm.m(d)) for d in ("tools", "tools/bin")}
    os.setxattr(lm.m("tools/bin/e"), "user.added", b"1")  # a metadata-only change
    st = os.lstat(lm.u("tools/bin/e"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (4321, 8765)
    assert st.st_mtime_ns == T1
    assert read(lm.u("tools/bin/e")) == b"ext\n"
    assert user_xattrs(lm.u("tools/bin/e")) == {"user.added": b"1", "user.where": b"E"}
    # the synthetic parents were copied up as they were shown
    for d, before in syn.items():
        st = os.lstat(lm.u(d))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755, d
        assert (st.st_uid, st.st_gid) == (before.st_uid, before.st_gid), d
        assert st.st_mtime_ns == before.st_mtime_ns, d
        now = os.lstat(lm.m(d))
        assert (now.st_ino, now.st_mode, now.st_mtime_ns) == \
            (before.st_ino, before.st_mode, before.st_mtime_ns), "%s changed at copy-up" % d
    assert os.lstat(lm.m("tools/bin/e")).st_ino == ino
    assert user_xattrs(lm.m("tools/bin/e")) == {"user.added": b"1", "user.where": b"E"}
    lm.assert_lowers_untouched()
    lm.remount()
    assert os.lstat(lm.m("tools/bin/e")).st_ino == ino, "st_ino changed across a remount"
    assert os.lstat(lm.m("tools")).st_ino == syn["tools"].st_ino


def test_target_on_another_filesystem(lm, shm_dir):
    """A graft onto another filesystem: its numbers are kept apart from the
    layers' (as a mapped mount does) and stay the same across copy-up and
    remount; the copy lands in the upper at the view's path."""
    mkfile(os.path.join(shm_dir, "f"), b"on tmpfs\n", mtime_ns=T0)
    lm.table["/shm"] = {"target": shm_dir}
    with open(lm.mapfile, "w") as f:
        json.dump(lm.table, f)
    lm.mount()
    raw = os.stat(os.path.join(shm_dir, "f")).st_ino
    ino = os.stat(lm.m("shm/f")).st_ino
    assert ino != raw, "a number from another filesystem was shown as it is"
    append(lm.m("shm/f"), b"more\n")
    assert read(lm.u("shm/f")) == b"on tmpfs\nmore\n"
    assert read(os.path.join(shm_dir, "f")) == b"on tmpfs\n"
    assert os.stat(lm.m("shm/f")).st_ino == ino, "st_ino changed at copy-up"
    lm.remount()
    assert os.stat(lm.m("shm/f")).st_ino == ino, "st_ino changed across a remount"
    assert read(lm.m("shm/f")) == b"on tmpfs\nmore\n"


def test_new_names_land_at_the_virtual_path(lm):
    lm.mount()
    write(lm.m("g/new.txt"), b"new in g\n")
    write(lm.m("tools/bin/new"), b"new in a synthetic dir\n")
    os.mkdir(lm.m("tools/made"))
    os.symlink("e", lm.m("tools/bin/link"))
    assert read(lm.u("g/new.txt")) == b"new in g\n"
    assert read(lm.u("tools/bin/new")) == b"new in a synthetic dir\n"
    assert os.path.isdir(lm.u("tools/made"))
    assert os.readlink(lm.u("tools/bin/link")) == "e"
    assert sorted(os.listdir(lm.m("g"))) == ["l2only.txt", "new.txt", "sub", "y"]
    assert sorted(os.listdir(lm.m("tools/bin"))) == ["e", "link", "new"]
    assert read(lm.m("tools/bin/link")) == b"ext\n"
    lm.assert_lowers_untouched()


def test_removal_leaves_whiteouts_at_virtual_paths(lm):
    lm.mount()
    os.unlink(lm.m("g/y"))
    os.unlink(lm.m("tools/bin/e"))
    assert_whiteout(lm.u("g/y"))
    assert_whiteout(lm.u("tools/bin/e"))
    assert "y" not in os.listdir(lm.m("g"))
    assert os.listdir(lm.m("tools/bin")) == []
    assert read(lm.m("cfg.json")) == b"realy\n", "another place of the object went too"
    # the whole graft, then the directory itself: a whiteout, and a new
    # directory there is opaque (the table's content stays hidden)
    os.unlink(lm.m("g/l2only.txt"))
    os.unlink(lm.m("g/sub/f"))
    os.rmdir(lm.m("g/sub"))
    os.rmdir(lm.m("g"))
    assert_whiteout(lm.u("g"))
    assert "g" not in os.listdir(lm.M)
    os.mkdir(lm.m("g"))
    assert os.listdir(lm.m("g")) == []
    assert opaque_form(lm.u("g")) is not None, "a directory made over a whiteout is not opaque"
    lm.assert_lowers_untouched()
    lm.remount()
    assert os.listdir(lm.m("g")) == []
    assert os.listdir(lm.m("tools/bin")) == []


def test_hidden_paths_and_the_users_own_entries(lm):
    lm.mount()
    write(lm.m("secret.txt"), b"mine\n")
    assert read(lm.m("secret.txt")) == b"mine\n"
    assert read(lm.u("secret.txt")) == b"mine\n"
    assert "secret.txt" in os.listdir(lm.M)
    os.mkdir(lm.m("hid"))
    assert os.listdir(lm.m("hid")) == [], "lower content under a hidden path showed"
    write(lm.m("hid/own"), b"own\n")
    assert os.listdir(lm.m("hid")) == ["own"]
    lm.remount()
    assert read(lm.m("secret.txt")) == b"mine\n"
    assert os.listdir(lm.m("hid")) == ["own"]
    # nothing below shows the name: removing the user's file needs no whiteout
    os.unlink(lm.m("secret.txt"))
    assert_no_whiteout(lm.u("secret.txt"))
    assert errname(os.stat, lm.m("secret.txt")) == "ENOENT"
    assert read(lm.s("secret.txt")) == b"secret\n"
    lm.assert_lowers_untouched()


def test_rename_rules_hold_for_mapped_paths(lm):
    lm.mount()
    # directories with a lower part (a graft, a synthetic one) do not move
    assert errname(os.rename, lm.m("g"), lm.m("g2")) == "EXDEV"
    assert errname(os.rename, lm.m("tools"), lm.m("tools2")) == "EXDEV"
    assert errname(os.rename, lm.m("g/sub"), lm.m("sub2")) == "EXDEV"
    # a mapped file moves: copied up, whiteout at its old virtual path
    ino = os.stat(lm.m("cfg.json")).st_ino
    os.rename(lm.m("cfg.json"), lm.m("g/moved.json"))
    assert read(lm.m("g/moved.json")) == b"realy\n"
    assert os.stat(lm.m("g/moved.json")).st_ino == ino
    assert read(lm.u("g/moved.json")) == b"realy\n"
    assert_whiteout(lm.u("cfg.json"))
    assert errname(os.stat, lm.m("cfg.json")) == "ENOENT"
    assert read(lm.m("g/y")) == b"realy\n"
    lm.assert_lowers_untouched()


def test_readonly_entries_stay_read_only(lm):
    lm.table["/ro"] = {"target": "real/sub", "readonly": True}
    with open(lm.mapfile, "w") as f:
        json.dump(lm.table, f)
    lm.mount()
    assert read(lm.m("ro/f")) == b"f\n"
    assert errname(append, lm.m("ro/f"), b"x") == "EROFS"
    assert errname(write, lm.m("ro/new"), b"x") == "EROFS"
    assert errname(os.unlink, lm.m("ro/f")) == "EROFS"
    assert errname(os.mkdir, lm.m("ro/d")) == "EROFS"
    assert errname(os.rename, lm.m("a.txt"), lm.m("ro/a.txt")) == "EROFS"
    assert os.listdir(lm.U) == []


def test_table_attributes_apply_at_their_path(lm):
    """mode, uid and gid of an entry are what stat shows at its path, before
    and after the copy-up; chmod/chown of what the table fixes is EPERM."""
    lm.table["/cfg.json"] = {"target": "real/y", "mode": "0444", "uid": 7, "gid": 8}
    with open(lm.mapfile, "w") as f:
        json.dump(lm.table, f)
    lm.mount()
    st = os.stat(lm.m("cfg.json"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o444, 7, 8)
    assert errname(os.chmod, lm.m("cfg.json"), 0o644) == "EPERM"
    assert errname(os.chown, lm.m("cfg.json"), 0, -1) == "EPERM"
    append(lm.m("cfg.json"), b"root may\n")
    st = os.stat(lm.m("cfg.json"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o444, 7, 8)
    up = os.stat(lm.u("cfg.json"))  # the copy keeps the lower file's own
    assert (stat.S_IMODE(up.st_mode), up.st_uid, up.st_gid) == (0o640, 1234, 5678)
    assert (stat.S_IMODE(os.stat(lm.m("g/y")).st_mode)) == 0o640, "another place changed"


def test_reload_changes_the_lower_view_and_keeps_the_upper(lm):
    lm.mount()
    append(lm.m("cfg.json"), b"mine\n")
    write(lm.m("tools/bin/added"), b"added\n")
    listing = sorted(os.listdir(lm.M))
    lm.set_table({
        "/g": {"target": "real/sub"},
        "/newsyn/deep/x": {"target": "a.txt"},
        "/a.txt": {},
    })
    # upper content stays, whatever the table says now
    assert read(lm.m("cfg.json")) == b"realy\nmine\n"
    assert read(lm.m("tools/bin/added")) == b"added\n"
    assert os.listdir(lm.m("tools/bin")) == ["added"], "the old key's target still shows"
    # the lower view follows the new table
    assert sorted(os.listdir(lm.m("g"))) == ["f", "l2only.txt"]
    assert read(lm.m("newsyn/deep/x")) == b"a\n"
    assert errname(os.stat, lm.m("a.txt")) == "ENOENT"
    assert read(lm.m("secret.txt")) == b"secret\n", "no longer hidden: SOURCE's shows"
    listing = sorted(os.listdir(lm.M))
    assert listing == ["below.txt", "cfg.json", "g", "hid", "newsyn", "real", "secret.txt",
                       "tools"]
    # a change below a new synthetic directory copies it up
    write(lm.m("newsyn/deep/mine"), b"m\n")
    assert read(lm.u("newsyn/deep/mine")) == b"m\n"
    # a malformed table is rejected whole: the view stays
    rejected = mapping_status(lm.M)["rejected"]
    with open(lm.mapfile + ".tmp", "w") as f:
        f.write('{"/g": {')
    os.rename(lm.mapfile + ".tmp", lm.mapfile)
    wait_rejected(lm.M, rejected + 1)
    assert sorted(os.listdir(lm.M)) == listing
    assert sorted(os.listdir(lm.m("g"))) == ["f", "l2only.txt"]
    assert read(lm.m("newsyn/deep/x")) == b"a\n"
    lm.assert_lowers_untouched()


def test_root_key_with_a_target_and_hidden(lm):
    """A key "/" with a target is SOURCE's part of the root; L2 still merges
    below it; hiding "/" leaves the user's own entries only."""
    lm.table = {"/": {"target": "real"}}
    with open(lm.mapfile, "w") as f:
        json.dump(lm.table, f)
    lm.mount()
    assert sorted(os.listdir(lm.M)) == ["below.txt", "g", "hid", "secret.txt", "sub", "y"]
    append(lm.m("y"), b"mine\n")
    assert read(lm.u("y")) == b"realy\nmine\n"
    os.unlink(lm.m("sub/f"))
    assert_whiteout(lm.u("sub/f"))
    write(lm.m("new"), b"new\n")
    lm.assert_lowers_untouched()
    lm.set_table({"/": {}})
    assert sorted(os.listdir(lm.M)) == ["new", "sub", "y"], "only the upper's entries"
    assert os.listdir(lm.m("sub")) == []
    assert read(lm.m("y")) == b"realy\nmine\n"
    lm.set_table({})
    assert sorted(os.listdir(lm.M)) == ["a.txt", "below.txt", "g", "hid", "new", "real",
                                        "secret.txt", "sub", "y"]


def test_table_from_a_pipe(lm):
    """A named pipe starts with no table (the plain layered view); each
    message applied reshapes the lower view, the upper stays."""
    os.unlink(lm.mapfile)
    os.mkfifo(lm.mapfile, 0o600)
    lm.mount()
    assert "cfg.json" not in os.listdir(lm.M)
    assert read(lm.m("secret.txt")) == b"secret\n"
    write(lm.m("made.txt"), b"made\n")
    send_messages(lm.mapfile, lm.table)
    wait_generation(lm.M, 1)
    assert read(lm.m("cfg.json")) == b"realy\n"
    assert errname(os.stat, lm.m("secret.txt")) == "ENOENT"
    append(lm.m("g/y"), b"via g\n")
    assert read(lm.u("g/y")) == b"realy\nvia g\n"
    assert read(lm.m("made.txt")) == b"made\n"
    send_messages(lm.mapfile, {})
    wait_generation(lm.M, 2)
    assert "cfg.json" not in os.listdir(lm.M)
    assert read(lm.m("g/y")) == b"realy\nvia g\n", "the upper's entry went with the table"
    lm.assert_lowers_untouched()


# --------------------------------------------------------------------------
# the upper at the end: commit refused, preserve and discard


def test_unmount_commit_is_refused_and_keeps_the_upper(lm):
    lm.mount()
    assert status_json(lm.M)["layers"]["mapped"] is True
    append(lm.m("cfg.json"), b"mine\n")
    os.unlink(lm.m("g/y"))
    upper = files(lm.U)
    for action in ("commit", "commit-atomic"):
        res = cli("unmount", "--action", action, lm.M)
        assert_one_error_line(res, "unmount --action " + action)
        assert "map" in res.stderr, res.stderr
        assert is_mounted(lm.M), "a refused commit unmounted"
        assert files(lm.U) == upper, "a refused commit changed the upper"
    assert read(lm.m("cfg.json")) == b"realy\nmine\n"
    lm.unmount("preserve")
    assert files(lm.U) == upper
    lm.assert_lowers_untouched()
    # nor offline: the upper is marked
    for extra in ([], ["--atomic"]):
        res = cli("commit", "--upper", lm.U, "--lower", lm.S, "--work", lm.W, *extra)
        assert_one_error_line(res, "prismfs commit " + " ".join(extra))
        assert files(lm.U) == upper
        lm.assert_lowers_untouched()


def test_on_unmount_commit_is_refused_at_mount(lm):
    for action in ("commit", "commit-atomic"):
        res = cli("mount", *lm.args("--on-unmount", action), lm.S, lm.M)
        assert_one_error_line(res, "--map with --on-unmount " + action)
        assert not is_mounted(lm.M)
    assert os.listdir(lm.U) == []
    assert "trusted.overlay.prismfs.mapped" not in os.listxattr(lm.U), \
        "a refused mount marked the upper"


def test_preserve_then_discard(lm):
    lm.mount()
    append(lm.m("cfg.json"), b"mine\n")
    upper = files(lm.U)
    lm.unmount()
    assert files(lm.U) == upper
    # remounting the same upper with the table goes on where it was
    lm.mount()
    assert read(lm.m("cfg.json")) == b"realy\nmine\n"
    res = lm.unmount("discard")
    assert "discard" in res.stdout
    assert os.listdir(lm.U) == []
    lm.assert_lowers_untouched()
    # emptied, the upper is an ordinary one again
    res = cli("commit", "--upper", lm.U, "--lower", lm.S, "--work", lm.W)
    assert res.returncode == 0, res.stderr
    lm.assert_lowers_untouched()


def test_help_names_the_combination():
    res = cli("mount", "--help")
    assert res.returncode == 0
    assert "--map" in res.stdout and "with --upper" in res.stdout, res.stdout
