"""Live path mappings and permissions: with -o allow_other (and the kernel
checking permissions, the default), the mode/uid/gid a table gives a path
are what unprivileged users are held to; readonly holds for them too.
Every check runs as the user (setpriv), and the source's own answers are
checked the same way first, so the difference comes from the table."""
import os

import pytest

from map_helpers import make_mapped, mkdirs, write_file
from prism_helpers import run_as

U = (12345, 12345, [])            # the user the table hands files to
GRP = 23456
V = (12346, 12346, [GRP])         # a member of GRP
NOBODY = (65534, 65534, [])

CHECKS = r'''
import errno, json, os, sys
a = json.load(sys.stdin)
out = {}
def rec(key, fn):
    try:
        v = fn()
        out[key] = "ok" if v is None else v
    except OSError as e:
        out[key] = errno.errorcode.get(e.errno, str(e.errno))
def read(p):
    with open(p) as f:
        return f.read()
def create(p):
    os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
def write(p):
    with open(p, "a") as f:
        f.write("more")
for name, op in a["checks"]:
    p = os.path.join(a["root"], name)
    if op == "read":
        rec(name + ":read", lambda: read(p))
    elif op == "listdir":
        rec(name + ":listdir", lambda: sorted(os.listdir(p)))
    elif op == "create":
        rec(name + ":create", lambda: create(p))
    elif op == "write":
        rec(name + ":write", lambda: write(p))
    elif op == "stat":
        rec(name + ":stat", lambda: [oct(os.stat(p).st_mode), os.stat(p).st_uid,
                                     os.stat(p).st_gid])
print(json.dumps(out))
'''


def check(user, root, checks):
    uid, gid, groups = user
    return run_as(uid, gid, groups, CHECKS, {"root": root, "checks": checks})


def populate(s):
    write_file(os.path.join(s, "f600"), "only root\n", mode=0o600, owner=(0, 0))
    write_file(os.path.join(s, "f644"), "everyone\n", mode=0o644, owner=(0, 0))
    write_file(os.path.join(s, "f640"), "group\n", mode=0o640, owner=(0, 0))
    mkdirs(os.path.join(s, "dpub"))
    write_file(os.path.join(s, "dpub", "inner"), "inner\n", mode=0o644)
    mkdirs(os.path.join(s, "rw"), mode=0o777)
    write_file(os.path.join(s, "rw", "w"), "w\n", mode=0o666)


TABLE = {
    "/mine": {"target": "f600", "uid": U[0]},
    "/closed": {"target": "f644", "mode": "0600", "uid": 0},
    "/grp": {"target": "f640", "gid": GRP},
    "/shut": {"target": "dpub", "mode": "0700"},
    "/ro": {"target": "rw", "readonly": True},
    "/virt/f": {"target": "f644"},
}


@pytest.fixture
def permmount(workdir, mounter):
    return make_mapped(workdir, mounter, TABLE, "-o", "allow_other", populate=populate)


def test_sanity_of_the_source(permmount):
    """Natively: U cannot read f600, everyone reads f644, V and U do not
    read f640 (root's group), the rw tree is writable by U."""
    m = permmount
    got = check(U, m.src, [["f600", "read"], ["f644", "read"], ["f640", "read"],
                           ["dpub", "listdir"], ["rw/w", "write"]])
    assert got == {"f600:read": "EACCES", "f644:read": "everyone\n", "f640:read": "EACCES",
                   "dpub:listdir": ["inner"], "rw/w:write": "ok"}, got
    assert check(V, m.src, [["f640", "read"]]) == {"f640:read": "EACCES"}


def test_uid_from_the_table_grants_access(permmount):
    m = permmount
    got = check(U, m.mnt, [["mine", "stat"], ["mine", "read"]])
    assert got == {"mine:stat": [oct(0o100600), U[0], 0], "mine:read": "only root\n"}, got
    assert check(NOBODY, m.mnt, [["mine", "read"]]) == {"mine:read": "EACCES"}


def test_mode_and_uid_from_the_table_deny_access(permmount):
    m = permmount
    got = check(U, m.mnt, [["closed", "stat"], ["closed", "read"], ["f644", "read"]])
    assert got == {"closed:stat": [oct(0o100600), 0, 0], "closed:read": "EACCES",
                   "f644:read": "everyone\n"}, got


def test_gid_from_the_table_grants_group_access(permmount):
    m = permmount
    assert check(V, m.mnt, [["grp", "read"]]) == {"grp:read": "group\n"}
    assert check(U, m.mnt, [["grp", "read"]]) == {"grp:read": "EACCES"}


def test_directory_mode_from_the_table(permmount):
    m = permmount
    got = check(U, m.mnt, [["shut", "listdir"], ["shut/inner", "read"], ["dpub", "listdir"]])
    assert got == {"shut:listdir": "EACCES", "shut/inner:read": "EACCES",
                   "dpub:listdir": ["inner"]}, got


def test_readonly_holds_for_users(permmount):
    m = permmount
    got = check(U, m.mnt, [["ro/w", "write"], ["ro/new", "create"], ["ro/w", "read"],
                           ["rw/w", "write"]])
    assert got == {"ro/w:write": "EROFS", "ro/new:create": "EROFS", "ro/w:read": "w\n",
                   "rw/w:write": "ok"}, got
    assert not os.path.exists(m.s("rw", "new"))


def test_synthetic_directory_for_users(permmount):
    m = permmount
    got = check(U, m.mnt, [["virt", "stat"], ["virt", "listdir"], ["virt/f", "read"],
                           ["virt/new", "create"]])
    assert got["virt:stat"] == [oct(0o40555), 0, got["virt:stat"][2]], got
    assert got["virt:listdir"] == ["f"] and got["virt/f:read"] == "everyone\n", got
    assert got["virt/new:create"] in ("EACCES", "EROFS"), got


def test_a_reload_changes_what_users_may_do_at_once(permmount):
    """The kernel checks permissions against cached attributes: after an
    update narrows /mine and opens /closed, the next access obeys it."""
    m = permmount
    assert check(U, m.mnt, [["mine", "read"], ["closed", "read"]]) == {
        "mine:read": "only root\n", "closed:read": "EACCES"}
    table = dict(TABLE)
    table["/mine"] = {"target": "f600"}
    table["/closed"] = {"target": "f644", "mode": "0644", "uid": U[0]}
    m.update(table)
    got = check(U, m.mnt, [["mine", "read"], ["closed", "read"], ["closed", "stat"]])
    assert got == {"mine:read": "EACCES", "closed:read": "everyone\n",
                   "closed:stat": [oct(0o100644), U[0], 0]}, got
