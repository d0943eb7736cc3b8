"""History (issue 17): a new file's setup by its creator — chmod, chown and
utimes on the file it created and still holds open from that create, as
tar, cp -p and install do — is journaled as notes riding the next commit
(the create's row covers the file until its creator lets go, as it covers
the data). Every other attribute change still has its row committed before
it is made: a SIGKILL of the daemon right after it returns keeps the row."""
import os
import signal
import subprocess
import sys
import tarfile
import textwrap

from prism_helpers import cli, history_rows

HOLDER = textwrap.dedent(r"""
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"held")
    print("open", flush=True)
    sys.stdin.readline()
    """)


def rows_for(hdir, path):
    return history_rows(hdir, "SELECT kind, pid FROM changes WHERE path = ? ORDER BY seq", path)


def test_tar_extraction_journals_each_change_of_a_new_file(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    payload = os.path.join(workdir, "payload")
    os.mkdir(payload)
    f = os.path.join(payload, "f")
    with open(f, "w") as fh:
        fh.write("content\n")
    os.chmod(f, 0o640)
    os.utime(f, (1_500_000_000, 1_500_000_000))
    tarball = os.path.join(workdir, "t.tar")
    with tarfile.open(tarball, "w") as t:
        t.add(f, arcname="f")
    m = mounter(src, mnt, "--history", hdir)
    subprocess.run(["tar", "-xpf", tarball, "-C", mnt], check=True)
    st = os.stat(os.path.join(src, "f"))
    assert (st.st_mode & 0o7777, int(st.st_mtime)) == (0o640, 1_500_000_000)
    m.stop()
    kinds = [k for k, _ in rows_for(hdir, "f")]
    assert kinds[0] == "create"
    # GNU tar sets times, owner and mode on the descriptor before close.
    for k in ("utimes", "chown", "chmod", "write"):
        assert k in kinds, kinds
    assert history_rows(hdir, "SELECT count(*) FROM changes WHERE state = 0")[0][0] == 0


def test_chmod_by_another_process_of_a_file_held_open_is_journaled_before(workdir, trees,
                                                                          mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    target = os.path.join(mnt, "held")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, target], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        os.chmod(target, 0o600)  # this process: not the creator
        os.kill(m.pid, signal.SIGKILL)
    finally:
        holder.kill()
        holder.wait()
        m.kill()
    assert os.stat(os.path.join(src, "held")).st_mode & 0o777 == 0o600
    rows = rows_for(hdir, "held")
    assert ("create", holder.pid) in rows
    assert ("chmod", os.getpid()) in rows, rows


def test_chmod_by_the_creator_after_close_is_journaled_before(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    code = textwrap.dedent(r"""
        import os, sys
        p = sys.argv[1]
        with open(p, "w") as fh:
            fh.write("x")
        os.chmod(p, 0o604)
        os.utime(p, (1_400_000_000, 1_400_000_000))
        """)
    try:
        c = subprocess.run([sys.executable, "-c", code, os.path.join(mnt, "g")], check=True)
        assert c.returncode == 0
        os.kill(m.pid, signal.SIGKILL)
    finally:
        m.kill()
    kinds = [k for k, _ in rows_for(hdir, "g")]
    assert kinds[0] == "create"
    assert "chmod" in kinds and "utimes" in kinds, kinds


def test_setup_notes_are_in_the_log_before_it_answers(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    mounter(src, mnt, "--history", hdir)
    fd = os.open(os.path.join(mnt, "h"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o640)
        os.utime(fd, (1_300_000_000, 1_300_000_000))
        out = cli("log", mnt, "h").stdout.split("\n")
    finally:
        os.close(fd)
    kinds = [line.split()[1] for line in out if line.strip()]
    assert kinds[:3] == ["create", "chmod", "utimes"], out


def test_setup_notes_and_writes_name_the_file_where_it_is_after_a_rename(workdir, trees,
                                                                         mounter):
    """The notes of a file still open from its create (its setup, the
    fsync's and the release's write) name it by its path at the time of
    the change: after its directory or the file itself was renamed while
    open, the new path, not the one it was created under."""
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    os.mkdir(os.path.join(mnt, "a"))
    fd = os.open(os.path.join(mnt, "a", "f"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fd2 = os.open(os.path.join(mnt, "c"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"one")
        os.fchmod(fd, 0o640)  # before the rename: a/f
        os.rename(os.path.join(mnt, "a"), os.path.join(mnt, "b"))
        os.fchmod(fd, 0o604)
        os.utime(fd, (1_300_000_000, 1_300_000_000))
        os.fsync(fd)
        os.write(fd, b"two")
        os.write(fd2, b"x")
        os.rename(os.path.join(mnt, "c"), os.path.join(mnt, "d"))
        os.fchmod(fd2, 0o620)
    finally:
        os.close(fd)
        os.close(fd2)
    m.stop()
    rows = history_rows(hdir, "SELECT kind, path, arg FROM changes WHERE kind NOT IN"
                              " ('mkdir', 'rename') ORDER BY seq")
    assert rows[0][:2] == ("create", "a/f")
    assert ("chmod", "a/f", 0o640) in rows, rows
    after = [r[:2] for r in rows if r[0] != "create" and r[2] != 0o640]
    assert ("chmod", "b/f") in after and ("utimes", "b/f") in after, rows
    assert [p for k, p in after if k == "write" and p.endswith("f")] == ["b/f", "b/f"], rows
    assert ("chmod", "d") in after and ("write", "d") in after, rows
    assert not [r for r in after if r[1] in ("a/f", "c")], rows
    assert os.stat(os.path.join(src, "b", "f")).st_mode & 0o777 == 0o604
