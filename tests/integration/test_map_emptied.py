"""Live path mappings: a directory handle opened while the table put names
in that directory (or hid it) and listed after a reload that left it with
no name of the table's own: the keys beneath it removed, the directory
itself hidden, a synthetic directory whose keys are gone. The listing
through the old handle is what the directory holds now, the daemon keeps
serving, and it ends cleanly (under the sanitizers: no report)."""
import os

import pytest

from map_helpers import ls, make_mapped, mkdirs, write_file

BEFORE = {
    "/d/x": {"target": "d/f"},
    "/d/sub/y": {"target": "d/f"},
    "/v/a/x": {"target": "d/f"},
}

# name: (directory opened, table after, what the old handle lists then)
CASES = {
    # The source's directory, as a plain mirror lists it.
    "keys beneath removed": ("d", {"/other": {"target": "d/f"}}, ["e", "f", "sub"]),
    # A hidden directory lists nothing, not even through a handle.
    "directory hidden": ("d", {"/d": {}}, []),
    # Only the table made it; now nothing is in it.
    "synthetic, keys removed": ("v/a", {"/other": {"target": "d/f"}}, []),
    "synthetic parent, keys removed": ("v", {}, []),
}


def populate(s):
    mkdirs(os.path.join(s, "d"), os.path.join(s, "d", "e"), os.path.join(s, "d", "sub"))
    write_file(os.path.join(s, "d", "f"), "f")


@pytest.mark.parametrize("case", sorted(CASES))
def test_handle_on_a_directory_the_table_left(workdir, mounter, case):
    path, after, want = CASES[case]
    m = make_mapped(workdir, mounter, BEFORE, populate=populate)
    assert "x" in ls(m.p(path)) or "a" in ls(m.p(path)), "sanity: the table puts names there"
    fd = os.open(m.p(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        m.update(after)
        # Twice: os.listdir(fd) rewinds, so each is a listing from offset 0.
        for _ in range(2):
            assert sorted(os.listdir(fd)) == want
    finally:
        os.close(fd)
    assert "d" in ls(m.mnt) or case == "directory hidden"
    assert m.mount.stop() == 0
    m.mount.check_clean_exit()
