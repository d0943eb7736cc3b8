"""Rootless: an unprivileged user (nobody) mounts plain, layered and mapped
views through the setuid fusermount3, and inside its own user namespace
(`unshare -Urm`); what it changes lands in the backing directories.

The host's /dev/fuse here may be 0600; every script runs in a private mount
namespace where a 0666 node of the same device (Debian's default mode) is
bound over /dev/fuse, so the host is left as it is. Each script unmounts
its mounts on exit (trap), and teardown ends any daemon still naming the
test's directory."""
import os
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from conftest import PRISMFS
from prism_helpers import SETPRIV, pids_mentioning

UID = GID = 65534  # nobody


@pytest.fixture
def box():
    """A directory nobody owns, with a 0666 /dev/fuse node for the binding."""
    d = tempfile.mkdtemp(prefix="prismfs-rootless-", dir="/tmp")
    os.chmod(d, 0o755)
    st = os.stat("/dev/fuse")
    dev = os.path.join(d, "fusedev")
    os.mknod(dev, stat.S_IFCHR | 0o666, st.st_rdev)
    os.chmod(dev, 0o666)
    for name in ("src", "mnt", "lower", "upper", "work", "mnt2", "mnt3"):
        os.mkdir(os.path.join(d, name))
    yield d
    for pid in pids_mentioning(d):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name in ("mnt", "mnt2", "mnt3"):
        subprocess.run(["fusermount3", "-uz", os.path.join(d, name)], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def own(path):
    for root, dirs, files in os.walk(path):
        os.chown(root, UID, GID)
        for n in dirs + files:
            os.lchown(os.path.join(root, n), UID, GID)


def as_nobody(box, script, userns=False):
    """Run the sh script as nobody (inside `unshare -Urm` with userns); the
    script unmounts box/mnt* on exit whatever happens."""
    inner = "trap 'rc=$?; for m in %(b)s/mnt %(b)s/mnt2 %(b)s/mnt3; do " \
            "fusermount3 -uz $m 2>/dev/null || true; done; exit $rc' EXIT\nset -e\n%(s)s" % {
                "b": box, "s": script}
    user = [SETPRIV, "--reuid=%d" % UID, "--regid=%d" % GID, "--clear-groups"]
    if userns:
        user += ["unshare", "-Urm", "--propagation", "private"]
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
           'mount --bind "$0/fusedev" /dev/fuse && exec "$@"', box] + user + ["sh", "-c", inner]
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "P": PRISMFS, "B": box}
    env.update({k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")})
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/", env=env)
    assert res.returncode == 0, "as nobody (%d): %s%s" % (res.returncode, res.stdout, res.stderr)
    return res.stdout


def xattrs(path):
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)}


@pytest.mark.parametrize("userns", [False, True], ids=["fusermount3", "unshare-Urm"])
def test_plain_mount(box, userns):
    with open(os.path.join(box, "src", "a"), "w") as f:
        f.write("from the source\n")
    own(box)
    out = as_nobody(box, '''
$P mount "$B/src" "$B/mnt"
cat "$B/mnt/a"
echo written > "$B/mnt/b"
mv "$B/mnt/a" "$B/mnt/a2"
$P status --json "$B/mnt" | grep '"data_path"'
$P unmount "$B/mnt"
echo unmounted
''', userns)
    assert "from the source" in out and "unmounted" in out, out
    with open(os.path.join(box, "src", "b")) as f:
        assert f.read() == "written\n"
    assert sorted(os.listdir(os.path.join(box, "src"))) == ["a2", "b"]
    assert os.stat(os.path.join(box, "src", "b")).st_uid == UID
    # No CAP_SYS_ADMIN in the initial namespace: data goes through the daemon.
    assert '"daemon"' in out, out


@pytest.mark.parametrize("userns", [False, True], ids=["fusermount3", "unshare-Urm"])
@pytest.mark.parametrize("whiteout", ["auto", "file"])
def test_layered_mount(box, userns, whiteout):
    lower = os.path.join(box, "lower")
    upper = os.path.join(box, "upper")
    with open(os.path.join(lower, "gone"), "w") as f:
        f.write("lower\n")
    os.mkdir(os.path.join(lower, "dir"))
    with open(os.path.join(lower, "dir", "old"), "w") as f:
        f.write("old\n")
    with open(os.path.join(lower, "kept"), "w") as f:
        f.write("kept\n")
    own(box)
    out = as_nobody(box, '''
$P mount --whiteout %s --upper "$B/upper" --work "$B/work" "$B/lower" "$B/mnt"
rm "$B/mnt/gone"
rm -r "$B/mnt/dir"
mkdir "$B/mnt/dir"
echo new > "$B/mnt/dir/new"
echo more >> "$B/mnt/kept"
ls -A "$B/mnt" | tr '\\n' ' '; echo
ls -A "$B/mnt/dir" | tr '\\n' ' '; echo
$P unmount "$B/mnt"
echo unmounted
''' % whiteout, userns)
    assert "unmounted" in out, out
    lines = out.splitlines()
    assert lines[0].split() == ["dir", "kept"], out
    assert lines[1].split() == ["new"], out
    # The lower is untouched; the upper holds the changes in overlayfs's
    # format, with user.overlay.* (nobody may not write trusted.*).
    assert sorted(os.listdir(lower)) == ["dir", "gone", "kept"]
    with open(os.path.join(lower, "kept")) as f:
        assert f.read() == "kept\n"
    with open(os.path.join(upper, "kept")) as f:
        assert f.read() == "kept\nmore\n"
    with open(os.path.join(upper, "dir", "new")) as f:
        assert f.read() == "new\n"
    assert xattrs(os.path.join(upper, "dir")).get("user.overlay.opaque") == b"y"
    assert not [n for n in xattrs(os.path.join(upper, "dir")) if n.startswith("trusted.")]
    gone = os.path.join(upper, "gone")
    if whiteout == "file":
        assert os.path.isfile(os.path.join(upper, ".wh.gone")) and not os.path.lexists(gone)
    else:
        st = os.lstat(gone)  # unprivileged mknod of 0/0 is allowed (Linux 5.8+)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    for root, dirs, files in os.walk(upper):
        for n in dirs + files:
            assert os.lstat(os.path.join(root, n)).st_uid == UID, (root, n)


@pytest.mark.parametrize("userns", [False, True], ids=["fusermount3", "unshare-Urm"])
def test_mapped_mount(box, userns):
    with open(os.path.join(box, "src", "s"), "w") as f:
        f.write("s\n")
    with open(os.path.join(box, "lower", "l"), "w") as f:
        f.write("l\n")
    with open(os.path.join(box, "map.json"), "w") as f:
        f.write('{"/grafted": {"target": "%s"}}' % os.path.join(box, "lower"))
    own(box)
    out = as_nobody(box, '''
$P mount --map "$B/map.json" "$B/src" "$B/mnt"
ls "$B/mnt" | tr '\\n' ' '; echo
cat "$B/mnt/grafted/l"
echo via-map > "$B/mnt/grafted/m"
$P unmount "$B/mnt"
echo unmounted
''', userns)
    assert out.splitlines()[0].split() == ["grafted", "s"], out
    assert "l\n" in out and "unmounted" in out
    with open(os.path.join(box, "lower", "m")) as f:
        assert f.read() == "via-map\n"


def test_squash_to_uid_and_gid(box):
    """squash_to_uid=/squash_to_gid= (fuse-overlayfs's): every object shows
    that owner and group, through stat and listings; the backing files keep
    theirs, and what is made belongs to the user who made it."""
    with open(os.path.join(box, "src", "a"), "w") as f:
        f.write("a\n")
    os.mkdir(os.path.join(box, "src", "d"))
    own(box)
    # The kernel checks access against the owner shown (4321): others may write d.
    os.chmod(os.path.join(box, "src", "d"), 0o777)
    out = as_nobody(box, '''
$P mount --squash-to-uid 4321 -o squash_to_gid=99 "$B/src" "$B/mnt"
echo new > "$B/mnt/d/new"
stat -c '%n %u %g' "$B/mnt" "$B/mnt/a" "$B/mnt/d" "$B/mnt/d/new"
ls -ln "$B/mnt/d" | tail -n +2
$P unmount "$B/mnt"
''')
    lines = out.splitlines()
    for line in lines[:4]:
        assert line.split()[1:] == ["4321", "99"], out
    assert lines[4].split()[2:4] == ["4321", "99"], out
    for name in ("a", "d", "d/new"):
        st = os.lstat(os.path.join(box, "src", name))
        assert (st.st_uid, st.st_gid) == (UID, GID), name


def test_squash_to_root_in_user_namespace(box):
    """Inside `unshare -Urm`, files of a uid the namespace does not map show
    as the overflow id; with squash_to_root (on a layered mount, as a
    rootless container's image) they show as root, and what root of the
    namespace makes lands in the upper owned by the user outside."""
    lower = os.path.join(box, "lower")
    with open(os.path.join(lower, "etc"), "w") as f:
        f.write("conf\n")
    own(box)
    os.chown(os.path.join(lower, "etc"), 12345, 12345)
    os.chmod(os.path.join(lower, "etc"), 0o644)
    out = as_nobody(box, '''
$P mount "$B/lower" "$B/mnt"
stat -c '%u %g' "$B/mnt/etc"
$P unmount "$B/mnt"
$P mount -o squash_to_root --upper "$B/upper" --work "$B/work" "$B/lower" "$B/mnt"
stat -c '%u %g' "$B/mnt/etc"
echo made > "$B/mnt/new"
stat -c '%u %g' "$B/mnt/new"
$P unmount "$B/mnt"
''', userns=True)
    lines = out.splitlines()
    assert lines[0] == "65534 65534", out   # the overflow ids
    assert lines[1:3] == ["0 0", "0 0"], out
    with open(os.path.join(box, "upper", "new")) as f:
        assert f.read() == "made\n"
    assert os.stat(os.path.join(box, "upper", "new")).st_uid == UID
    assert os.stat(lower + "/etc").st_uid == 12345
