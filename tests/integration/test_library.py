"""The C API (include/prismfs.h, libprismfs.so, prismfs.pc).

examples/mount_overlay.c is compiled here the way a user would,
`cc mount_overlay.c $(pkg-config --cflags --libs prismfs)`, against the
build tree under test (meson's uninstalled prismfs.pc), and run on real
directories: the file it writes through the mount must land in the upper
(preserve), in the source (commit, commit-atomic) or nowhere (discard). A
second small program checks the refusals: a configuration without a source,
a source that does not exist, an unknown option — each a negative errno and
one line from prismfs_last_error(), with nothing mounted. A third (api_opts)
takes keys of prismfs_config_set_option on its command line: a cached mount
(mirror, no source), a history mount, the owner options, and each key's
refusal (-EINVAL from prismfs_mount, nothing mounted). Every mount is
unmounted in teardown even when a test fails (the workdir fixture).
"""
import errno
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import PRISMFS, REPO, is_mounted

BUILD = os.path.dirname(os.path.abspath(PRISMFS))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts as root")


def _sanitized():
    """Compile flags matching the library's build (the ASan build's)."""
    lib = os.path.join(BUILD, "libprismfs.so")
    out = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    return ["-fsanitize=address,undefined"] if "libasan" in out else []


def _compile(src, out):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(BUILD, "meson-uninstalled"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "prismfs"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *_sanitized(), src,
                    "-o", out, *flags], check=True)
    return out


def _compile_text(text, d, name):
    src = d / (name + ".c")
    src.write_text(text)
    return _compile(str(src), str(d / name))


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    d = tmp_path_factory.mktemp("libprismfs")
    example = _compile(os.path.join(REPO, "examples", "mount_overlay.c"), str(d / "example"))
    check_src = d / "api_check.c"
    check_src.write_text(API_CHECK)
    check = _compile(str(check_src), str(d / "api_check"))
    return example, check


def _run(prog, *args):
    env = dict(os.environ, LD_LIBRARY_PATH=BUILD)
    return subprocess.run([prog, *args], capture_output=True, text=True, timeout=120, env=env)


def _tree(workdir):
    src, upper, mnt = (os.path.join(workdir, n) for n in ("src", "upper", "mnt"))
    for d in (src, upper, mnt):
        os.makedirs(d)
    with open(os.path.join(src, "old.txt"), "w") as f:
        f.write("old\n")
    return src, upper, mnt


def _mount_overlay(example, src, upper, mnt, action):
    res = _run(example, src, upper, mnt, action, "new.txt")
    if upper != "-" and "needs a work directory" in res.stderr:
        pytest.skip("this build's layered mount needs --work (before the layers wiring)")
    assert res.returncode == 0, res.stderr
    assert res.stdout == os.path.realpath(mnt) + "\n"
    assert res.stderr == ""
    assert not is_mounted(mnt)
    return res


def test_mirror_mount_and_unmount(workdir, programs):
    example, _ = programs
    src, _upper, mnt = _tree(workdir)
    _mount_overlay(example, src, "-", mnt, "preserve")
    with open(os.path.join(src, "new.txt")) as f:
        assert f.read() == "written through prismfs\n"


def test_preserve_keeps_the_change_in_the_upper(workdir, programs):
    example, _ = programs
    src, upper, mnt = _tree(workdir)
    _mount_overlay(example, src, upper, mnt, "preserve")
    with open(os.path.join(upper, "new.txt")) as f:
        assert f.read() == "written through prismfs\n"
    assert sorted(os.listdir(src)) == ["old.txt"]


@pytest.mark.parametrize("action", ["commit", "commit-atomic"])
def test_commit_puts_the_change_into_the_source(workdir, programs, action):
    example, _ = programs
    src, upper, mnt = _tree(workdir)
    _mount_overlay(example, src, upper, mnt, action)
    with open(os.path.join(src, "new.txt")) as f:
        assert f.read() == "written through prismfs\n"
    assert sorted(os.listdir(src)) == ["new.txt", "old.txt"]
    assert os.listdir(upper) == []


def test_discard_throws_the_change_away(workdir, programs):
    example, _ = programs
    src, upper, mnt = _tree(workdir)
    _mount_overlay(example, src, upper, mnt, "discard")
    assert sorted(os.listdir(src)) == ["old.txt"]
    assert os.listdir(upper) == []


def test_refusals_say_one_line_and_mount_nothing(workdir, programs):
    _, check = programs
    src, _upper, mnt = _tree(workdir)
    res = _run(check, os.path.join(workdir, "missing"), src, mnt)
    assert res.returncode == 0, res.stdout + res.stderr
    # Nothing on stderr: the reasons come only through prismfs_last_error().
    assert res.stderr == ""
    lines = res.stdout.splitlines()
    assert len(lines) == 8, res.stdout
    for line in lines:
        what, err, msg = line.split("|")
        assert int(err) < 0, line
        assert msg and "\n" not in msg and not msg.startswith("prismfs:"), line
    got = {line.split("|")[0]: line.split("|")[2] for line in lines}
    code = {line.split("|")[0]: int(line.split("|")[1]) for line in lines}
    # a directory that does not exist is ENOENT, as open(2) says; bad usage EINVAL
    for what in ("missing-source", "missing-upper"):
        assert code[what] == -errno.ENOENT, "%s gave %d, not -ENOENT: %s" % (
            what, code[what], got[what])
    for what in ("bad-value", "bad-o-value", "debug"):
        assert code[what] == -errno.EINVAL, "%s gave %d, not -EINVAL: %s" % (
            what, code[what], got[what])
    assert "max_read=lots" in got["bad-o-value"] and "'" not in got["bad-o-value"], \
        got["bad-o-value"]
    assert got["no-source"] == "no source set"
    assert "missing" in got["missing-source"] and "does not exist" in got["missing-source"]
    assert "frobnicate" in got["unknown-option"]
    assert "passthrough" in got["bad-value"]
    assert "no upper" in got["discard-without-upper"]
    assert not is_mounted(mnt)
    assert sorted(os.listdir(src)) == ["old.txt"]


# Prints one line per refusal: name|errno|prismfs_last_error(). Exits 0 when
# each was refused, and unmounts what it mounted.
API_CHECK = r"""
#include <prismfs.h>
#include <stdio.h>

static void show(const char *what, int r) { printf("%s|%d|%s\n", what, r, prismfs_last_error()); }

int main(int argc, char **argv)
{
	const char *missing = argv[1], *src = argv[2], *mnt = argv[3];
	prismfs_mount_t *m = NULL;
	prismfs_config *c = prismfs_config_new();
	int bad = 0, r;

	if (argc != 4 || !c)
		return 2;
	r = prismfs_mount(c, mnt, &m);               /* no source at all */
	show("no-source", r);
	bad |= r >= 0 || m;
	prismfs_config_set_source(c, missing);
	r = prismfs_mount(c, mnt, &m);
	show("missing-source", r);
	bad |= r >= 0 || m;
	r = prismfs_config_set_option(c, "frobnicate", "1");
	show("unknown-option", r);
	bad |= r >= 0;
	prismfs_config_set_source(c, src);
	prismfs_config_set_option(c, "passthrough", "sometimes");
	r = prismfs_mount(c, mnt, &m);
	show("bad-value", r);
	bad |= r >= 0 || m;
	prismfs_config_free(c);

	c = prismfs_config_new();                    /* a missing upper */
	prismfs_config_set_source(c, src);
	prismfs_config_set_upper(c, missing);
	r = prismfs_mount(c, mnt, &m);
	show("missing-upper", r);
	bad |= r >= 0 || m;
	prismfs_config_free(c);

	c = prismfs_config_new();                    /* a -o value libfuse refuses */
	prismfs_config_set_source(c, src);
	prismfs_config_set_option(c, "o", "max_read=lots");
	r = prismfs_mount(c, mnt, &m);
	show("bad-o-value", r);
	bad |= r >= 0 || m;
	prismfs_config_free(c);

	c = prismfs_config_new();                    /* the trace is the command line's */
	prismfs_config_set_source(c, src);
	prismfs_config_set_option(c, "o", "debug");
	r = prismfs_mount(c, mnt, &m);
	show("debug", r);
	bad |= r >= 0 || m;
	prismfs_config_free(c);

	c = prismfs_config_new();
	prismfs_config_set_source(c, src);
	r = prismfs_mount(c, mnt, &m);
	prismfs_config_free(c);
	if (r < 0) {
		printf("mount failed: %s\n", prismfs_last_error());
		return 1;
	}
	r = prismfs_unmount(m, PRISMFS_DISCARD);     /* refused, m still valid */
	show("discard-without-upper", r);
	bad |= r != -22;
	r = prismfs_unmount(m, PRISMFS_PRESERVE);
	if (r < 0) {
		printf("unmount failed: %s\n", prismfs_last_error());
		return 1;
	}
	return bad;
}
"""


# Mounts SOURCE (argv[1]) with the data-only layer argv[2], the upper
# argv[3] and the option lower-passthrough (argv[5]: "-" for NULL) at
# argv[4]; prints the mount point, waits for a line on stdin, unmounts
# (preserve). Then the refusals, one line each: name|errno|last error.
API_DATA = r"""
#include <prismfs.h>
#include <stdio.h>
#include <string.h>

static void show(const char *what, int r) { printf("%s|%d|%s\n", what, r, prismfs_last_error()); }

int main(int argc, char **argv)
{
	const char *pt;
	prismfs_mount_t *m = NULL;
	prismfs_config *c = prismfs_config_new();
	char line[16];
	int r;

	if (argc != 6 || !c)
		return 2;
	pt = strcmp(argv[5], "-") ? argv[5] : NULL;
	if (prismfs_config_set_source(c, argv[1]) || prismfs_config_add_data_lower(c, argv[2]) ||
	    prismfs_config_set_upper(c, argv[3]) ||
	    prismfs_config_set_option(c, "lower-passthrough", pt)) {
		printf("config: %s\n", prismfs_last_error());
		return 1;
	}
	r = prismfs_mount(c, argv[4], &m);
	prismfs_config_free(c);
	if (r < 0) {
		printf("mount failed: %d %s\n", r, prismfs_last_error());
		return 1;
	}
	printf("%s\n", prismfs_mount_point(m));
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	r = prismfs_unmount(m, PRISMFS_PRESERVE);
	if (r < 0) {
		printf("unmount failed: %s\n", prismfs_last_error());
		return 1;
	}

	c = prismfs_config_new();
	show("empty-data-lower", prismfs_config_add_data_lower(c, ""));
	show("lower-pt-empty", prismfs_config_set_option(c, "lower-passthrough", ""));
	prismfs_config_set_source(c, argv[1]);
	prismfs_config_add_data_lower(c, argv[2]);
	prismfs_config_set_option(c, "lower-passthrough", "sometimes");
	prismfs_config_set_upper(c, argv[3]);
	show("lower-pt-bad", prismfs_mount(c, argv[4], &m));
	prismfs_config_free(c);
	c = prismfs_config_new();
	prismfs_config_set_source(c, argv[1]);
	prismfs_config_add_data_lower(c, argv[2]);
	prismfs_config_set_option(c, "lower-passthrough", NULL);
	show("lower-pt-no-upper", prismfs_mount(c, argv[4], &m));
	prismfs_config_free(c);
	return m != NULL;
}
"""


@pytest.mark.parametrize("pt", ["-", "on", "off"])
def test_data_lower_and_lower_passthrough(workdir, tmp_path, pt):
    """prismfs_config_add_data_lower: a data-only layer as --data-lower (the
    kernel's lowerdir=A::D): its names do not show, a metacopy file of the
    source reads its data from it; lower-passthrough as the command's
    --lower-passthrough (status says which). Bad values are refused with
    -EINVAL and one line, nothing mounted."""
    src = _compile_text(API_DATA, tmp_path, "api_data")
    L, D, U, M = (os.path.join(workdir, n) for n in ("L", "D", "U", "M"))
    for d in (L, D, U, M):
        os.makedirs(d)
    data = b"the data, in the data-only layer\n" * 100
    with open(os.path.join(D, "blob"), "wb") as f:
        f.write(data)
    with open(os.path.join(D, "hidden"), "w") as f:
        f.write("never shown")
    meta = os.path.join(L, "m")
    with open(meta, "wb"):
        pass
    os.truncate(meta, len(data))
    os.setxattr(meta, "trusted.overlay.metacopy", b"")
    os.setxattr(meta, "trusted.overlay.redirect", b"/blob")
    env = dict(os.environ, LD_LIBRARY_PATH=BUILD)
    p = subprocess.Popen([src, L, D, U, M, pt], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = p.stdout.readline()
        assert first == os.path.realpath(M) + "\n", first + p.stderr.read()
        assert sorted(os.listdir(M)) == ["m"]
        with open(os.path.join(M, "m"), "rb") as f:
            assert f.read() == data
        st = subprocess.run([PRISMFS, "status", "--json", M], capture_output=True, text=True)
        assert st.returncode == 0, st.stderr
        lay = json.loads(st.stdout)["layers"]
        assert lay["data_only"] == 1 and len(lay["lowers"]) == 2, lay
        assert lay["lower_passthrough"] is (pt != "off"), lay
        out, err = p.communicate("\n", timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out + err
    assert err == ""
    assert not is_mounted(M)
    got = {ln.split("|")[0]: ln.split("|") for ln in out.splitlines()}
    for what in ("empty-data-lower", "lower-pt-empty", "lower-pt-bad", "lower-pt-no-upper"):
        assert int(got[what][1]) == -errno.EINVAL, got[what]
        assert got[what][2] and not got[what][2].startswith("prismfs:"), got[what]
    assert "sometimes" in got["lower-pt-bad"][2]
    assert "upper" in got["lower-pt-no-upper"][2]
    assert os.listdir(U) == []


# api_opts MNT [KEY[=VALUE]]...: KEY "source" is prismfs_config_set_source,
# any other goes to prismfs_config_set_option (KEY alone: value NULL).
# Mounts at MNT, prints its mount point, waits for a line on stdin, unmounts
# (the action given at mount). A refusal prints one line, where|errno|last
# error, and exits 3 (set_option) or 4 (prismfs_mount, *out left NULL).
API_OPTS = r"""
#include <prismfs.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	prismfs_mount_t *m = NULL;
	prismfs_config *c = prismfs_config_new();
	char line[16];
	int r;

	if (argc < 2 || !c)
		return 2;
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');

		if (eq)
			*eq++ = '\0';
		r = strcmp(argv[i], "source") == 0 ? prismfs_config_set_source(c, eq)
						    : prismfs_config_set_option(c, argv[i], eq);
		if (r < 0) {
			printf("set_option %s|%d|%s\n", argv[i], r, prismfs_last_error());
			prismfs_config_free(c);
			return 3;
		}
	}
	r = prismfs_mount(c, argv[1], &m);
	prismfs_config_free(c);
	if (r < 0) {
		printf("mount|%d|%s\n", r, prismfs_last_error());
		return m ? 5 : 4;
	}
	printf("%s\n", prismfs_mount_point(m));
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	r = prismfs_unmount(m, PRISMFS_ON_UNMOUNT);
	if (r < 0) {
		printf("unmount|%d|%s\n", r, prismfs_last_error());
		return 1;
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def api_opts(tmp_path_factory):
    return _compile_text(API_OPTS, tmp_path_factory.mktemp("api_opts"), "api_opts")


class _Mounted:
    """api_opts running with its mount up, until done() unmounts it."""

    def __init__(self, prog, mnt, opts):
        env = dict(os.environ, LD_LIBRARY_PATH=BUILD)
        self.mnt = mnt
        self.p = subprocess.Popen([prog, mnt, *opts], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)
        first = self.p.stdout.readline()
        if first != os.path.realpath(mnt) + "\n":
            self.kill()
            out, err = self.p.communicate(timeout=120)
            pytest.fail("mount through the API failed: %r %s %s" % (first, out, err))

    def done(self):
        out, err = self.p.communicate("\n", timeout=120)
        assert self.p.returncode == 0, out + err
        assert err == ""
        assert not is_mounted(self.mnt)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        if is_mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt])


def _status(mnt):
    st = subprocess.run([PRISMFS, "status", "--json", mnt], capture_output=True, text=True)
    assert st.returncode == 0, st.stderr
    return json.loads(st.stdout)


def test_cached_mount_through_the_api(workdir, api_opts):
    """The memory-cache options as keys of prismfs_config_set_option: a
    mount of the mirror DIR (no source: the mirror takes its place, as
    `prismfs mount --mirror DIR MOUNTPOINT`), the values as the command
    line takes them (status shows them; the alias cache-max-write-size, later, wins), and a file written through it is
    on the mirror once prismfs_unmount() returned (unmount writes
    everything back first)."""
    mir, mnt, jdir = (os.path.join(workdir, n) for n in ("mirror", "mnt", "journal"))
    for d in (mir, mnt, jdir):
        os.makedirs(d)
    with open(os.path.join(mir, "old.txt"), "w") as f:
        f.write("on the mirror\n")
    m = _Mounted(api_opts, mnt, ["mirror=" + mir, "cache-size=64M", "cache-max-dirty=4M",
                                 "write-back=30", "lazy-load=off",
                                 "cache-max-write-size=8M", "journal=" + jdir,
                                 "mirror-ttl=5"])
    try:
        with open(os.path.join(mnt, "old.txt")) as f:
            assert f.read() == "on the mirror\n"
        with open(os.path.join(mnt, "new.txt"), "w") as f:
            f.write("written through the cache\n")
        cache = _status(mnt)["cache"]
        assert cache["mirror"] == os.path.realpath(mir), cache
        assert cache["cache_size"] == 64 << 20, cache
        assert cache["max_dirty"] == 8 << 20, cache
        assert cache["write_back_delay"] == 30.0, cache
        assert cache["lazy_load"] is False, cache
        assert os.path.exists(os.path.join(jdir, "journal.db"))
        m.done()
    finally:
        m.kill()
    with open(os.path.join(mir, "new.txt")) as f:
        assert f.read() == "written through the cache\n"


def test_history_mount_through_the_api(workdir, api_opts):
    """The history options as keys: a change made through the mount is in
    `prismfs log`, and the snapshot directory has the name given by
    history-dir-name (reachable, in no listing)."""
    src, mnt, hist = (os.path.join(workdir, n) for n in ("src", "mnt", "hist"))
    for d in (src, mnt, hist):
        os.makedirs(d)
    m = _Mounted(api_opts, mnt, ["source=" + src, "history=" + hist, "checkpoint-every=1h",
                                 "keep=last=3,daily=2", "history-max=1G",
                                 "history-dir-name=.snaps"])
    try:
        with open(os.path.join(mnt, "changed.txt"), "w") as f:
            f.write("a change\n")
        log = subprocess.run([PRISMFS, "log", "--json", mnt], capture_output=True, text=True)
        assert log.returncode == 0, log.stderr
        kinds = [(e["kind"], e["path"]) for e in json.loads(log.stdout)]
        assert ("create", "changed.txt") in kinds, kinds
        assert os.path.isdir(os.path.join(mnt, ".snaps"))
        assert ".snaps" not in os.listdir(mnt)
        assert _status(mnt)["history"]["dir"] == os.path.realpath(hist)
        m.done()
    finally:
        m.kill()
    assert os.path.exists(os.path.join(hist, "history.db"))
    with open(os.path.join(src, "changed.txt")) as f:
        assert f.read() == "a change\n"


def _mounts_line(mnt):
    with open("/proc/mounts") as f:
        for line in f:
            if line.split()[1] == os.path.realpath(mnt):
                return line
    return ""


@pytest.mark.parametrize("how", ["squash", "mapping", "root"])
def test_owner_and_access_keys_through_the_api(workdir, api_opts, how):
    """private, node-fds, squash-to-root (a flag key)/-uid/-gid,
    uidmapping, gidmapping as keys: the owners shown are the ones the
    options say (stat), a private mount has no allow_other (/proc/mounts),
    the fd budget is the one given (status); the file keeps its own."""
    src, mnt = (os.path.join(workdir, n) for n in ("src", "mnt"))
    for d in (src, mnt):
        os.makedirs(d)
    f = os.path.join(src, "f")
    with open(f, "w") as fh:
        fh.write("x\n")
    os.chown(f, 5003, 6004)
    if how == "squash":
        opts, want = ["private", "node-fds=64", "squash-to-uid=1234",
                      "squash-to-gid=4321"], (1234, 4321)
    elif how == "mapping":
        opts, want = ["uidmapping=5000:100:10", "gidmapping=6000:200:10"], (103, 204)
    else:
        opts, want = ["squash-to-root"], (0, 0)
    m = _Mounted(api_opts, mnt, ["source=" + src, *opts])
    try:
        st = os.stat(os.path.join(mnt, "f"))
        assert (st.st_uid, st.st_gid) == want
        mounted = _mounts_line(mnt)
        if how == "squash":
            assert "allow_other" not in mounted, mounted
            assert _status(mnt)["node_fds"]["budget"] == 64
        elif how == "mapping":
            assert "allow_other" in mounted, mounted  # root's default, not private
        m.done()
    finally:
        m.kill()
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (5003, 6004)


# (key, bad value, other keys the value needs to be looked at, text the
# reason must hold). {mir}, {src}, {dir}: directories of the test.
BAD_VALUES = [
    ("mirror", "ftp://host/dir", [], "ftp://host/dir"),
    ("cache-size", "lots", ["mirror={mir}"], "lots"),
    ("cache-max-dirty", "0", ["mirror={mir}"], "cache-max-dirty"),
    ("lazy-load", "sometimes", ["mirror={mir}"], "sometimes"),
    ("write-back", "forever", ["mirror={mir}"], "forever"),
    ("journal", "", ["mirror={mir}"], "journal"),
    ("mirror-ttl", "soon", ["mirror={mir}"], "soon"),
    ("s3-endpoint", "ftp://s3.example", ["mirror=s3://bucket"], "ftp://s3.example"),
    ("s3-region", "", ["mirror=s3://bucket"], "s3-region"),
    ("s3-profile", "", ["mirror=s3://bucket"], "s3-profile"),
    ("history", "", ["source={src}"], "history"),
    ("checkpoint-every", "often", ["source={src}", "history={dir}"], "often"),
    ("keep", "yearly=3", ["source={src}", "history={dir}"], "yearly"),
    ("history-max", "big", ["source={src}", "history={dir}"], "big"),
    ("history-dir-name", "a/b", ["source={src}", "history={dir}"], "a/b"),
    ("squash-to-uid", "someone", ["source={src}"], "someone"),
    ("squash-to-gid", "-5", ["source={src}"], "-5"),
    ("uidmapping", "1:2", ["source={src}"], "1:2"),
    ("gidmapping", "a:b:c", ["source={src}"], "a:b:c"),
    ("node-fds", "many", ["source={src}"], "many"),
    # not a value, a combination: the mirror takes the source's place
    ("source", "{src}", ["mirror={mir}"], "takes the place of SOURCE"),
    ("cache-size", "64M", ["source={src}"], "needs --mirror"),
    ("keep", "last=3", ["source={src}"], "need --history"),
]


@pytest.mark.parametrize("key,value,needs,said", BAD_VALUES,
                         ids=[b[0] for b in BAD_VALUES])
def test_bad_value_of_a_key(workdir, api_opts, key, value, needs, said):
    """A value the command line refuses (or a combination: a source path
    with a mirror, a cache option without one, a history option without
    history) is refused by prismfs_mount() with -EINVAL and the command's
    reason; nothing is mounted, the directories are left as they were."""
    src, mir, dirr, mnt = (os.path.join(workdir, n) for n in ("src", "mir", "dir", "mnt"))
    for d in (src, mir, dirr, mnt):
        os.makedirs(d)
    opts = [n.format(mir=mir, src=src, dir=dirr)
            for n in needs + ["%s=%s" % (key, value)]]
    res = _run(api_opts, mnt, *opts)
    assert res.returncode == 4, res.stdout + res.stderr
    assert res.stderr == ""
    where, err, msg = res.stdout.rstrip("\n").split("|", 2)
    assert where == "mount" and int(err) == -errno.EINVAL, res.stdout
    assert said in msg and "\n" not in msg and not msg.startswith("prismfs:"), msg
    assert not is_mounted(mnt)
    assert os.listdir(mnt) == [] and os.listdir(dirr) == [] and os.listdir(mir) == []


@pytest.mark.parametrize("key,value", [("frobnicate", "1"), ("mirror_ttl", "5"),
                                       ("--mirror", "/tmp"), ("log_format", "json"),
                                       ("private", "yes"), ("squash-to-root", "no"),
                                       ("lazy-load", ""), ("history", None)])
def test_unknown_key_or_missing_value_is_refused_at_once(workdir, api_opts, key, value):
    """An unknown key (the -o spelling, a leading --, a command-line alias
    not in the header's list) and a missing value are -EINVAL from
    prismfs_config_set_option() itself."""
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    res = _run(api_opts, mnt, key if value is None else "%s=%s" % (key, value))
    assert res.returncode == 3, res.stdout + res.stderr
    where, err, msg = res.stdout.rstrip("\n").split("|", 2)
    assert where == "set_option " + key and int(err) == -errno.EINVAL, res.stdout
    assert msg, res.stdout
    assert not is_mounted(mnt)


# Options of `prismfs mount` with a function of their own in the C API
# (prismfs_config_set_upper, _add_lower, _add_data_lower, _set_work), or
# none on purpose (the foreground and debug switches are the caller's).
OWN_FUNCTION = {"upper", "lower", "data-lower", "work"}


def test_every_mount_option_is_a_key_of_the_api(workdir, api_opts):
    """Every long option `prismfs mount --help` lists reaches the C API
    (a key of prismfs_config_set_option, documented in the header), so
    that a new option cannot be left out of the library: given "1", no
    key is refused by set_option itself (a value may still be refused at
    mount, which is not this test's concern)."""
    helptext = subprocess.run([PRISMFS, "mount", "--help"], capture_output=True, text=True,
                              timeout=30).stdout
    keys = sorted(set(re.findall(r"^  --([a-z][a-z0-9-]+)", helptext, re.M)) - OWN_FUNCTION)
    assert "mirror" in keys and "history" in keys, keys
    header = open(os.path.join(REPO, "include", "prismfs.h")).read()
    undocumented = [k for k in keys if '"%s"' % k not in header]
    assert not undocumented, "not in include/prismfs.h's key list: %s" % undocumented
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    refused = []
    for k in keys:
        res = _run(api_opts, mnt, k + "=1")
        if res.returncode == 3 and res.stdout.startswith("set_option " + k + "|"):
            refused.append((k, res.stdout.strip()))
        assert not is_mounted(mnt)
    assert not refused, "mount options the API refuses as keys: %s" % refused
