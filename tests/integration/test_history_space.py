"""Issue 17, performance: the space many small edits of a large file cost
in the history. Where the filesystem shares blocks (reflink: XFS here, on
a loop device), the version saved before each edit shares the file's
blocks, so the history grows with the edits, not with the file's size
times their number. Each snapshot still reads back as it was."""
import hashlib
import os

from prism_helpers import cli, xfs_reflink

BIG = 64 << 20
EDITS = 16
EDIT = 4096


def free_bytes(path):
    v = os.statvfs(path)
    return v.f_bfree * v.f_frsize


def test_small_edits_of_a_large_file_share_its_blocks(workdir, mounter):
    with xfs_reflink(workdir) as x:
        src, hist = os.path.join(x, "src"), os.path.join(x, "hist")
        mnt = os.path.join(workdir, "mnt")
        os.makedirs(src)
        os.makedirs(mnt)
        model = bytearray(os.urandom(BIG))
        with open(os.path.join(src, "big"), "wb") as f:
            f.write(model)
        m = mounter(src, mnt, "--history", hist)
        try:
            want = {}
            os.sync()
            free0 = free_bytes(x)
            for i in range(EDITS):
                name = "s%d" % i
                r = cli("snapshot", mnt, "--name", name)
                assert r.returncode == 0, r.stderr
                want[name] = hashlib.sha256(model).hexdigest()
                data = os.urandom(EDIT)
                off = i * (BIG // EDITS) + 12345
                with open(os.path.join(mnt, "big"), "r+b") as f:
                    f.seek(off)
                    f.write(data)
                model[off:off + EDIT] = data
            os.sync()
            used = free0 - free_bytes(x)
            print("history: %d KiB for %d edits of %d bytes in a %d MiB file"
                  % (used >> 10, EDITS, EDIT, BIG >> 20))
            # A copy per version would take EDITS x 64 MiB = 1 GiB; shared
            # blocks take what the edits changed (XFS copies on write in
            # extents of up to 128 KiB) plus the journal's rows.
            assert used < EDITS * (1 << 20), "history used %d bytes for %d edits" % (used, EDITS)
            with open(os.path.join(mnt, "big"), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(model).hexdigest()
            for name, h in want.items():
                with open(os.path.join(mnt, ".history", name, "big"), "rb") as f:
                    assert hashlib.sha256(f.read()).hexdigest() == h, name
        finally:
            m.stop()
