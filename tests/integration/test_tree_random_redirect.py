"""The random sequences of test_tree_random.py on layered mounts with
redirect_dir=on, with 1 and 3 lowers: prismfs (-o redirect_dir=on) against
kernel overlayfs (redirect_dir=on) on an identical copy of the same layers,
every outcome compared step by step and the trees every few steps. Renaming
a directory with lower parts now succeeds on both (a redirect), and every
later operation inside it, or on a name it left, must agree. Then each
one's layers are mounted by the other and must show the same tree.
"""
import contextlib
import os

import pytest

from layer_helpers import Overlay, mkdir, mkfile
from conftest import Mount
from prism_helpers import cli
from test_tree_random import STEPS, compare_trees, layer_files, populate_layers, run_sequence

from layer_helpers import _run
from test_layers_redirect import redirects


class Layers(Overlay):
    """An Overlay with 1 to 3 lowers (L1 highest), both backends mounted
    with redirect_dir=on."""

    def __init__(self, base, backend, nlowers):
        super().__init__(base, backend)
        self.L3 = os.path.join(base, "L3")
        os.makedirs(self.L3)
        os.chmod(self.L3, 0o755)
        self.lowers = [self.L1, self.L2, self.L3][:nlowers]

    def l3(self, *p):
        return os.path.join(self.L3, *p)

    # The options both backends are mounted with (a subclass changes them).
    KERNEL_OPTS = "redirect_dir=on"
    PRISM_OPTS = "redirect_dir=on"

    def mount(self, backend=None, whiteout=None, allow_other=False, extra=(), kernel_opts=""):
        assert self.current is None, "already mounted by %s" % self.current
        backend = backend or self.backend
        if backend == "kernel":
            _run(["mount", "-t", "overlay", "overlay", "-o",
                  "lowerdir=%s,upperdir=%s,workdir=%s,%s"
                  % (":".join(self.lowers), self.U, self.W, self.KERNEL_OPTS), self.M])
        else:
            args = ["--upper", self.U, "--work", self.W, "-o", self.PRISM_OPTS]
            for lo in self.lowers[1:]:
                args += ["--lower", lo]
            self._prism = Mount(self.L1, self.M, args)
            try:
                self._prism.start()
            except Exception:
                self._prism.cleanup()
                self._prism = None
                raise
        self.current = backend
        return self


def populate(o, nlowers):
    populate_layers(o)
    if nlowers == 1:
        # L2 is not mounted: what it held for the merge, L1 holds.
        mkfile(o.l1("a", "x"), b"L1 a/x\n" * 50)
        mkfile(o.l1("e", "z"), b"L1 e/z\n", mode=0o755)
        mkdir(o.l1("e", "b"))
    if nlowers == 3:
        # A third layer under both: more of the merged directories, and
        # names the two above hide.
        mkfile(o.l3("a", "c", "d", "w"), b"L3 deep w\n")
        mkfile(o.l3("a", "c", "z"), b"L3 a/c/z\n")
        mkfile(o.l3("e", "b", "y"), b"L3 e/b/y\n")
        mkfile(o.l3("e", "x"), b"L3 e/x\n", mode=0o640)
        mkfile(o.l3("b", "y"), b"L3 b/y, under L2's file b\n")
        mkdir(o.l3("d", "c"))
        mkfile(o.l3("d", "c", "e"), b"L3 d/c/e\n")


def lower_files(o):
    out = layer_files(o)
    for dirpath, dirnames, filenames in os.walk(o.L3):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[full[len(o.base):]] = os.lstat(full).st_mtime_ns
    return out


@contextlib.contextmanager
def two(workdir, nlowers):
    ours = Layers(os.path.join(workdir, "p"), "prismfs", nlowers)
    kernel = Layers(os.path.join(workdir, "k"), "kernel", nlowers)
    try:
        for o in (ours, kernel):
            populate(o, nlowers)
        yield ours, kernel
    finally:
        ours.cleanup()
        kernel.cleanup()


@pytest.mark.parametrize("seed", (61, 62, 63))
@pytest.mark.parametrize("nlowers", (1, 3))
def test_random_tree_redirect_dir_on(workdir, seed, nlowers):
    """prismfs against kernel overlayfs, both with redirect_dir=on; then
    each one's layers are read by the other, and each its own again."""
    if os.geteuid() != 0:
        pytest.skip("layered mounts are tested as root (mount -t overlay)")
    with two(workdir, nlowers) as (ours, kernel):
        before = lower_files(ours)
        ours.mount()
        kernel.mount()
        run_sequence(seed, ours.M, kernel.M, dir_nlink=False)
        ours.umount()
        kernel.umount()
        # The same redirects on disk as the kernel's (and some were made).
        made = redirects(ours.U)
        assert made and made == redirects(kernel.U), (made, redirects(kernel.U))
        ours.mount()
        kernel.mount()
        for mine, theirs, what in (("kernel", "prismfs", "each one's layers by the other"),
                                   ("prismfs", "kernel", "each one's layers remounted")):
            ours.umount()
            kernel.umount()
            ours.mount(backend=mine)
            kernel.mount(backend=theirs)
            compare_trees(seed, STEPS, ours.M, kernel.M, ["(%s)" % what], dir_nlink=False)
        ours.umount()
        kernel.umount()
        assert lower_files(ours) == before, "a lower layer changed"
        if nlowers == 1:
            # prismfs's upper committed into its lower, in place (on a
            # copy of both) and --atomic, is the tree the kernel shows on
            # its own layers: the commits apply the redirects.
            copy = os.path.join(workdir, "inplace")
            os.mkdir(copy)
            _run(["cp", "-a", ours.L1, ours.U, copy])
            cl, cu = os.path.join(copy, "L1"), os.path.join(copy, "U")
            assert redirects(cu) == made, "cp -a did not copy the redirects"
            res = cli("commit", "--upper", cu, "--lower", cl, timeout=300)
            assert res.returncode == 0, res.stderr
            res = cli("commit", "--upper", ours.U, "--lower", ours.L1, "--atomic",
                      "--work", ours.W, timeout=300)
            assert res.returncode == 0, res.stderr
            kernel.mount()
            compare_trees(seed, STEPS, ours.L1, kernel.M, ["(committed)"], dir_nlink=False)
            compare_trees(seed, STEPS, cl, kernel.M, ["(committed in place)"], dir_nlink=False)
            kernel.umount()
