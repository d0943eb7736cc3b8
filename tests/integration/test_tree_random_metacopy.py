"""The random sequences of test_tree_random.py on layered mounts with
metacopy=on (so redirect_dir=on), with 1 and 3 lowers: prismfs
(-o metacopy=on) against kernel overlayfs (metacopy=on,redirect_dir=on) on
an identical copy of the same layers, every outcome compared step by step
and the trees every few steps; chmod, utimes, xattr changes and renames of
lower files leave metacopy files, later writes copy their data. Then each
one's layers are mounted by the other and must show the same tree.
"""
import os

import pytest

from test_tree_random import STEPS, compare_trees, run_sequence
import test_tree_random_redirect as trr


class Layers(trr.Layers):
    """trr.Layers, both backends mounted with metacopy=on."""

    KERNEL_OPTS = "metacopy=on,redirect_dir=on"
    PRISM_OPTS = "metacopy=on"


def metacopies(upper):
    out = set()
    for dirpath, _dirs, files in os.walk(upper):
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                os.getxattr(p, "trusted.overlay.metacopy", follow_symlinks=False)
                out.add(p[len(upper):])
            except OSError:
                pass
    return out


@pytest.mark.parametrize("seed", (71, 72, 73))
@pytest.mark.parametrize("nlowers", (1, 3))
def test_random_tree_metacopy_on(workdir, seed, nlowers):
    if os.geteuid() != 0:
        pytest.skip("layered mounts are tested as root (mount -t overlay)")
    ours = Layers(os.path.join(workdir, "p"), "prismfs", nlowers)
    kernel = Layers(os.path.join(workdir, "k"), "kernel", nlowers)
    try:
        for o in (ours, kernel):
            trr.populate(o, nlowers)
        before = trr.lower_files(ours)
        ours.mount()
        kernel.mount()
        # Every lower file starts as a metacopy: the sequence then reads,
        # writes, moves and removes them.
        for dirpath, _dirs, files in os.walk(kernel.M):
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(dirpath, f), kernel.M)
                for m in (ours.M, kernel.M):
                    if os.path.isfile(os.path.join(m, rel)) and \
                            not os.path.islink(os.path.join(m, rel)):
                        os.chmod(os.path.join(m, rel), 0o604)
        assert metacopies(ours.U) == metacopies(kernel.U) != set()
        run_sequence(seed, ours.M, kernel.M, dir_nlink=False)
        ours.umount()
        kernel.umount()
        # The same files left as metacopies as the kernel's.
        made = metacopies(ours.U)
        assert made == metacopies(kernel.U)
        for mine, theirs, what in (("kernel", "prismfs", "each one's layers by the other"),
                                   ("prismfs", "kernel", "each one's layers remounted")):
            ours.mount(backend=mine)
            kernel.mount(backend=theirs)
            compare_trees(seed, STEPS, ours.M, kernel.M, ["(%s)" % what], dir_nlink=False)
            ours.umount()
            kernel.umount()
        assert trr.lower_files(ours) == before, "a lower layer changed"
    finally:
        ours.cleanup()
        kernel.cleanup()
