"""Throw-away layered mounts (issue 18 item 10): --default-upper puts the
upper beside the source (SOURCE_upper, made if missing) and --new-mountpoint
tmp|cache makes a new mount point and prints its path; the unmount action
removes what the mount made — discard: upper and mount point; commit: both,
after success; preserve: the mount point — and never a directory that was
there before.  Mount points are made under $TMPDIR (or $XDG_CACHE_HOME)
pointed into the test's own directory, whose mounts teardown removes."""
import os
import subprocess

import pytest

from conftest import PRISMFS, SANITIZER_MARKERS, is_mounted
from prism_helpers import assert_one_error_line, cli, wait_for


def env_for(workdir):
    tmp = os.path.join(workdir, "tmp")
    cache = os.path.join(workdir, "cache")
    os.makedirs(tmp, exist_ok=True)
    return dict(os.environ, TMPDIR=tmp, XDG_CACHE_HOME=cache)


def read(path):
    with open(path) as f:
        return f.read()


def mount_new(workdir, lower, *args, where="tmp"):
    res = cli("mount", "--default-upper", "--new-mountpoint", where, *args, lower,
              env=env_for(workdir))
    assert res.returncode == 0, res.stderr
    assert not any(m in res.stderr for m in SANITIZER_MARKERS), res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    return lines[0]


def unmount(mnt, *args):
    res = cli("unmount", *args, mnt)
    assert res.returncode == 0, res.stderr
    assert not any(m in res.stderr for m in SANITIZER_MARKERS), res.stderr
    return res


@pytest.fixture
def lower(workdir):
    d = os.path.join(workdir, "lower")
    os.makedirs(d)
    with open(os.path.join(d, "base"), "w") as f:
        f.write("base\n")
    return d


@pytest.mark.parametrize("where", ["tmp", "cache"])
def test_printed_path_is_the_mount(workdir, lower, where):
    mnt = mount_new(workdir, lower, where=where)
    base = os.path.join(workdir, where if where == "tmp" else "cache/prismfs")
    assert os.path.dirname(mnt) == os.path.realpath(base)
    assert is_mounted(mnt)
    assert read(os.path.join(mnt, "base")) == "base\n"
    with open(os.path.join(mnt, "new"), "w") as f:
        f.write("new\n")
    upper = lower + "_upper"
    assert os.path.isdir(upper)
    assert os.listdir(upper) and read(os.path.join(upper, "new")) == "new\n"
    assert not os.path.exists(os.path.join(lower, "new"))
    unmount(mnt)  # preserve (the default): the upper is kept, the mount point goes
    assert not is_mounted(mnt)
    assert not os.path.exists(mnt)
    assert read(os.path.join(upper, "new")) == "new\n"


def test_discard_removes_upper_and_mount_point(workdir, lower):
    mnt = mount_new(workdir, lower, "--on-unmount", "discard")
    upper = lower + "_upper"
    with open(os.path.join(mnt, "new"), "w") as f:
        f.write("x")
    assert os.path.isdir(upper) and os.path.isdir(mnt)
    unmount(mnt)
    assert not os.path.exists(upper)
    assert not os.path.exists(mnt)
    assert sorted(os.listdir(lower)) == ["base"]
    # nor the default work directory made beside the upper
    assert sorted(os.listdir(workdir)) == ["lower", "tmp"]


def test_commit_removes_both_after_success(workdir, lower):
    mnt = mount_new(workdir, lower)
    upper = lower + "_upper"
    with open(os.path.join(mnt, "new"), "w") as f:
        f.write("committed\n")
    os.unlink(os.path.join(mnt, "base"))
    unmount(mnt, "--action", "commit")
    assert sorted(os.listdir(workdir)) == ["lower", "tmp"]
    assert not os.path.exists(upper)
    assert not os.path.exists(mnt)
    assert sorted(os.listdir(lower)) == ["new"]
    assert read(os.path.join(lower, "new")) == "committed\n"


@pytest.mark.parametrize("action", ["discard", "commit", "preserve"])
def test_pre_existing_directories_are_kept(workdir, lower, action):
    upper = lower + "_upper"
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(upper)
    os.makedirs(mnt)
    res = cli("mount", "--default-upper", lower, mnt)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    with open(os.path.join(mnt, "new"), "w") as f:
        f.write("x")
    unmount(mnt, "--action", action)
    assert os.path.isdir(upper)
    assert os.path.isdir(mnt)
    assert os.path.isdir(os.path.join(workdir, ".lower_upper.prismfs-work"))
    assert os.path.exists(os.path.join(lower, "new")) == (action == "commit")


def test_made_upper_goes_with_a_given_mount_point(workdir, lower):
    """A made upper with discard goes even when the mount point was given."""
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    res = cli("mount", "--default-upper", "--on-unmount", "discard", lower + "/", mnt)
    assert res.returncode == 0, res.stderr
    assert os.path.isdir(lower + "_upper")
    unmount(mnt)
    assert not os.path.exists(lower + "_upper")
    assert os.path.isdir(mnt)


def test_failed_mount_leaves_nothing(workdir):
    missing = os.path.join(workdir, "nothere")
    env = env_for(workdir)
    res = cli("mount", "--new-mountpoint", "tmp", missing, env=env)
    assert res.returncode != 0
    assert res.stdout == ""
    assert os.listdir(env["TMPDIR"]) == []


@pytest.mark.parametrize("args", [
    ["--new-mountpoint", "elsewhere", "SRC"],
    ["--new-mountpoint", "tmp", "SRC", "MNT"],
    ["--default-upper", "--upper", "U", "SRC", "MNT"],
])
def test_bad_usage_is_one_line(workdir, lower, args):
    args = [lower if a == "SRC" else os.path.join(workdir, a) if a in ("MNT", "U") else a
            for a in args]
    env = env_for(workdir)
    res = cli("mount", *args, env=env)
    assert res.returncode == 2
    assert_one_error_line(res, "mount")
    assert res.stdout == ""
    assert os.listdir(env["TMPDIR"]) == []
    assert not os.path.exists(lower + "_upper")


# The C API: the same options through prismfs_config_set_option, and
# prismfs_mount() with no mount point.
API_PROG = r"""
#include <prismfs.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	enum prismfs_action a = strcmp(argv[2], "discard") == 0 ? PRISMFS_DISCARD
				: strcmp(argv[2], "commit") == 0 ? PRISMFS_COMMIT
				: PRISMFS_PRESERVE;
	prismfs_config *cfg = prismfs_config_new();
	prismfs_mount_t *m;
	char line[16];
	int r;

	(void)argc;
	if (prismfs_config_set_source(cfg, argv[1]) < 0 ||
	    prismfs_config_set_option(cfg, "default-upper", NULL) < 0 ||
	    prismfs_config_set_option(cfg, "new-mountpoint", "tmp") < 0) {
		fprintf(stderr, "config: %s\n", prismfs_last_error());
		return 1;
	}
	r = prismfs_mount(cfg, NULL, &m);
	prismfs_config_free(cfg);
	if (r < 0) {
		fprintf(stderr, "mount: %d %s\n", r, prismfs_last_error());
		return 1;
	}
	printf("%s\n", prismfs_mount_point(m));
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	r = prismfs_unmount(m, a);
	if (r < 0) {
		fprintf(stderr, "unmount: %d %s\n", r, prismfs_last_error());
		return 1;
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def api_prog(tmp_path_factory):
    build = os.path.dirname(os.path.abspath(PRISMFS))
    d = tmp_path_factory.mktemp("throwaway_api")
    src = d / "api.c"
    src.write_text(API_PROG)
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(build, "meson-uninstalled"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "prismfs"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    ldd = subprocess.run(["ldd", os.path.join(build, "libprismfs.so")], capture_output=True,
                         text=True).stdout
    san = ["-fsanitize=address,undefined"] if "libasan" in ldd else []
    out = str(d / "api")
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *san, str(src), "-o", out,
                    *flags], check=True)
    return out, build


@pytest.mark.parametrize("action", ["discard", "commit", "preserve"])
def test_c_api_makes_and_removes(workdir, lower, api_prog, action):
    prog, build = api_prog
    env = dict(env_for(workdir), LD_LIBRARY_PATH=build)
    upper = lower + "_upper"
    p = subprocess.Popen([prog, lower, action], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        mnt = p.stdout.readline().strip()
        assert mnt, p.stderr.read() if p.poll() is not None else "no mount point printed"
        assert os.path.dirname(mnt) == os.path.realpath(env["TMPDIR"])
        assert is_mounted(mnt)
        assert os.path.isdir(upper)
        with open(os.path.join(mnt, "new"), "w") as f:
            f.write("api\n")
        assert read(os.path.join(upper, "new")) == "api\n"
        _, err = p.communicate("go\n", timeout=60)
        assert p.returncode == 0, err
        assert not any(m in err for m in SANITIZER_MARKERS), err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not os.path.exists(mnt)
    assert os.path.exists(upper) == (action == "preserve")
    assert os.path.exists(os.path.join(lower, "new")) == (action == "commit")


def test_foreground_prints_the_path_before_serving(workdir, lower):
    env = env_for(workdir)
    p = subprocess.Popen([PRISMFS, "mount", "-f", "--default-upper", "--new-mountpoint", "tmp",
                          "--on-unmount", "discard", lower], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        mnt = p.stdout.readline().strip()
        assert os.path.dirname(mnt) == os.path.realpath(env["TMPDIR"])
        assert wait_for(lambda: is_mounted(mnt))
        assert read(os.path.join(mnt, "base")) == "base\n"
        unmount(mnt)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert not any(m in err for m in SANITIZER_MARKERS), err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not os.path.exists(mnt)
    assert not os.path.exists(lower + "_upper")
