"""History (issue 17 items 3 and 7): automatic checkpoints
(--checkpoint-every) and retention (--keep, --history-max, prismfs prune).

Real mounts: files are written through the mount, snapshots taken, and
what each snapshot held is recorded by the test when it takes it. After a
prune (or a kill -9 of the daemon in the middle of one, at each crash
point) every kept snapshot must still read back exactly that, from the
saved versions the restore command uses, and through prismfs restore."""
import json
import os
import sqlite3
import subprocess

import pytest

from conftest import Mount
from prism_helpers import assert_one_error_line, cli, status_json, wait_for, history_rows


def snapshots(mnt):
    r = cli("snapshots", mnt, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def checks(mnt):
    return status_json(mnt)["history"]["checkpoint_checks"]


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def content_at(hdir, src, snap_id, rel):
    """What rel held at snapshot snap_id, as prismfs restore finds it: the
    first version saved under it or a later snapshot, else the live file."""
    rows = history_rows(hdir, "SELECT file, pruned FROM versions WHERE path = ? AND snap >= ?"
                   " ORDER BY snap, seq LIMIT 1", rel, snap_id)
    if not rows:
        return read(os.path.join(src, rel))
    file, pruned = rows[0]
    assert not pruned and file, "the version of %s at %d was pruned" % (rel, snap_id)
    return read(os.path.join(hdir, "versions", file))


def check_consistent(hdir):
    """Every saved version a row names is there, and nothing else is."""
    named = {f for (f,) in history_rows(hdir, "SELECT file FROM versions WHERE file IS NOT NULL")}
    there = set(os.listdir(os.path.join(hdir, "versions")))
    assert named <= there, "saved versions missing: %s" % sorted(named - there)
    return there - named


@pytest.fixture
def hist(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    return src, mnt, hdir, mounter


def test_checkpoints_are_taken_when_something_changed_and_only_then(hist):
    src, mnt, hdir, mounter = hist
    mounter(src, mnt, "--history", hdir, "--checkpoint-every", "1s")
    f = os.path.join(mnt, "f")
    for i in range(3):
        before = len(snapshots(mnt))
        write(f, b"round %d" % i)
        assert wait_for(lambda: len(snapshots(mnt)) > before, timeout=30), snapshots(mnt)
    snaps = snapshots(mnt)
    assert all(s["kind"] == "auto" and s["name"].startswith("auto-") for s in snaps), snaps
    assert all(not s["pinned"] for s in snaps), snaps
    # Nothing changes: three more whole checks, and no new snapshot.
    settled = ids_after_quiet(mnt)
    c = checks(mnt)
    assert wait_for(lambda: checks(mnt) >= c + 3, timeout=30)
    assert [x["id"] for x in snapshots(mnt)] == settled
    # A manual one is listed with its kind.
    assert cli("snapshot", mnt, "--name", "mine").returncode == 0
    assert [s["kind"] for s in snapshots(mnt) if s["name"] == "mine"] == ["manual"]
    # The versions the checkpoints saved hold what the file held.
    vs = json.loads(cli("versions", mnt, "f", "--json").stdout)
    got = [read(os.path.join(hdir, "versions", f)) for (f,) in
           history_rows(hdir, "SELECT file FROM versions WHERE path = 'f' ORDER BY seq")]
    assert got == [b"round %d" % i for i in range(len(got))] and len(vs) == len(got) >= 2


def test_checkpoint_options_are_checked(hist):
    src, mnt, hdir, mounter = hist
    for args, what in ((["--checkpoint-every", "10x"], "--checkpoint-every"),
                       (["--checkpoint-every", "0s"], "--checkpoint-every"),
                       (["--keep", "yearly=3"], "--keep"),
                       (["--keep", "daily=-1"], "--keep"),
                       (["--history-max", "12Q"], "--history-max")):
        r = cli("mount", "--history", hdir, *args, src, mnt)
        assert_one_error_line(r, what)
        assert r.returncode == 2 and not os.path.exists(hdir)
    r = cli("mount", "--checkpoint-every", "1m", src, mnt)
    assert_one_error_line(r, "--history")
    assert r.returncode == 2


def make_history(mnt, src, n=6, pin=1, size=0):
    """n manual snapshots s0..s(n-1), files f and g changed between them
    (g every other time); returns {snap_id: {rel: content}}."""
    want = {}
    f, g = os.path.join(mnt, "f"), os.path.join(mnt, "g")
    for i in range(n):
        write(f, b"f%d" % i + b"." * size)
        if i % 2 == 0:
            write(g, b"g%d" % i + b"." * size)
        args = ["--pin"] if i == pin else []
        r = cli("snapshot", mnt, "--name", "s%d" % i, *args)
        assert r.returncode == 0, r.stderr
        want[int(r.stdout)] = {"f": read(os.path.join(src, "f")),
                               "g": read(os.path.join(src, "g"))}
    write(f, b"after")
    write(g, b"after")
    return want


def check_kept(hdir, src, want):
    kept = {sid for (sid,) in history_rows(hdir, "SELECT id FROM snapshots")}
    for sid in kept & set(want):
        for rel, data in want[sid].items():
            assert content_at(hdir, src, sid, rel) == data, (sid, rel)
    return kept


def test_prune_keeps_pinned_and_the_newest_manual_ones_and_what_they_need(hist):
    src, mnt, hdir, mounter = hist
    mounter(src, mnt, "--history", hdir)
    want = make_history(mnt, src)
    ids = sorted(want)
    files_before = set(os.listdir(os.path.join(hdir, "versions")))
    # Without --keep manual=N, manual snapshots stay.
    r = cli("prune", mnt, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pruned"] == []
    # --dry-run says what would go and changes nothing.
    r = cli("prune", mnt, "--dry-run", "--json", "--keep", "manual=2")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["dry_run"] and sorted(p["id"] for p in rep["pruned"]) == [ids[0], ids[2],
                                                                        ids[3]]
    assert [s["id"] for s in snapshots(mnt)] == ids
    assert set(os.listdir(os.path.join(hdir, "versions"))) == files_before
    r = cli("prune", mnt, "--keep", "manual=2")
    assert r.returncode == 0, r.stderr
    assert "pruned snapshot %d s0 (manual)" % ids[0] in r.stdout
    assert [s["name"] for s in snapshots(mnt)] == ["s1", "s4", "s5"]
    assert rep["versions_removed"] > 0
    assert check_kept(hdir, src, want) == {ids[1], ids[4], ids[5]}
    assert check_consistent(hdir) == set()
    assert len(os.listdir(os.path.join(hdir, "versions"))) == len(files_before) - \
        rep["versions_removed"]
    # A kept snapshot restores through the mount.
    r = cli("restore", mnt, "s1", os.path.join(mnt, "f"), os.path.join(mnt, "g"))
    assert r.returncode == 0, r.stderr
    assert read(os.path.join(mnt, "f")) == want[ids[1]]["f"]
    assert read(os.path.join(mnt, "g")) == want[ids[1]]["g"]


def test_history_max_prunes_oldest_unpinned_first_and_says_when_pinned_exceed(hist):
    src, mnt, hdir, mounter = hist
    mounter(src, mnt, "--history", hdir, "--history-max", "210K")
    want = make_history(mnt, src, n=6, pin=0, size=40 << 10)
    r = cli("prune", mnt, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["history_bytes"] <= 210 << 10 and not rep["over_max"], rep
    names = [s["name"] for s in snapshots(mnt)]
    assert names[0] == "s0" and names[-1] == "s5", names
    gone = [p["name"] for p in rep["pruned"]]
    # oldest unpinned first: what went is a prefix of s1..s4
    assert gone == ["s%d" % i for i in range(1, 1 + len(gone))] and gone, rep
    size = sum(os.path.getsize(os.path.join(hdir, "versions", f))
               for f in os.listdir(os.path.join(hdir, "versions")))
    assert size <= 210 << 10
    check_kept(hdir, src, want)
    assert check_consistent(hdir) == set()
    # Pinned ones alone over the limit: said, and they stay.
    r = cli("prune", mnt, "--history-max", "1K")
    assert r.returncode == 0, r.stderr
    assert "over --history-max" in r.stderr
    assert [s["name"] for s in snapshots(mnt)] == ["s0", "s5"]
    check_kept(hdir, src, want)


def test_checkpoints_prune_by_keep(hist):
    src, mnt, hdir, mounter = hist
    mounter(src, mnt, "--history", hdir, "--checkpoint-every", "1s", "--keep", "last=2")
    assert cli("snapshot", mnt, "--name", "manual").returncode == 0
    f = os.path.join(mnt, "f")
    seen = set()
    for i in range(5):
        before = {s["id"] for s in snapshots(mnt)}
        write(f, b"round %d" % i)
        assert wait_for(lambda: {s["id"] for s in snapshots(mnt)} - before, timeout=30)
        seen |= {s["id"] for s in snapshots(mnt) if s["kind"] == "auto"}
    snaps = snapshots(mnt)
    autos = [s for s in snaps if s["kind"] == "auto"]
    assert len(autos) <= 2 and len(seen) > 2, snaps
    assert [s["name"] for s in snaps if s["kind"] == "manual"] == ["manual"]
    assert check_consistent(hdir) == set()


@pytest.mark.parametrize("point", ["prune-before-commit", "prune-committed",
                                   "prune-committed:2"])
def test_kill_9_during_a_prune(hist, point):
    src, mnt, hdir, mounter = hist
    m = Mount(src, mnt, ["--history", hdir], env={"PRISMFS_TEST_CRASH": point}).start()
    try:
        want = make_history(mnt, src)
        before = {s["id"] for s in snapshots(mnt)}
        r = cli("prune", mnt, "--keep", "manual=1")
        assert r.returncode != 0  # the daemon died answering
        wait_for(lambda: m.proc.poll() is not None, timeout=30)
        assert m.proc.poll() is not None, "the crash point was not reached"
    finally:
        m.kill()
        m.cleanup()
    m2 = mounter(src, mnt, "--history", hdir)
    kept = check_kept(hdir, src, want)
    if point == "prune-before-commit":
        assert kept == before  # not committed: nothing happened
    else:
        assert kept == {min(before) + 1, max(before)}  # s1 (pinned) and s5
    assert check_consistent(hdir) == set()  # the next start swept what was left
    # and each kept snapshot exports as it was
    for sid in kept & set(want):
        out = os.path.join(os.path.dirname(hdir), "s%d.tar" % sid)
        r = cli("export", mnt, str(sid), "-o", out)
        assert r.returncode == 0, r.stderr
        x = os.path.join(os.path.dirname(hdir), "x%d" % sid)
        os.makedirs(x)
        subprocess.run(["tar", "-x", "-f", out, "-C", x], check=True, timeout=60)
        assert {n: read(os.path.join(x, n)) for n in os.listdir(x)} == want[sid], sid
    # The mount works: a change after a new snapshot saves its version.
    assert cli("snapshot", mnt, "--name", "after-crash").returncode == 0
    write(os.path.join(mnt, "f"), b"new")
    assert content_at(hdir, src, snapshots(mnt)[-1]["id"], "f") == b"after"
    r = cli("prune", mnt, "--keep", "manual=1")
    assert r.returncode == 0, r.stderr
    check_kept(hdir, src, want)
    assert check_consistent(hdir) == set()
    m2.stop()
    m2.check_clean_exit()


def test_the_o_forms_of_the_options(hist):
    src, mnt, hdir, mounter = hist
    m = mounter(src, mnt, "-o", "history=%s,checkpoint_every=1s,keep=last=1:manual=5,"
                "history_max=1G" % hdir)
    f = os.path.join(mnt, "f")
    autos = set()
    for i in range(3):
        before = {s["id"] for s in snapshots(mnt)}
        write(f, b"round %d" % i)
        assert wait_for(lambda: {s["id"] for s in snapshots(mnt)} - before, timeout=30)
        autos |= {s["id"] for s in snapshots(mnt) if s["kind"] == "auto"}
    assert len(autos) >= 3 and len(snapshots(mnt)) == 1, snapshots(mnt)
    m.stop()
    m.check_clean_exit()
    r = cli("mount", "-o", "history=%s,keep=daily=x" % hdir, src, mnt)
    assert_one_error_line(r, "daily")
    assert r.returncode == 2


def test_versions_saved_after_a_remount_do_not_collide(hist):
    # Version files were named SNAP-N with N counting from 1 in each
    # daemon: the first save after a remount, under the same snapshot,
    # found its name taken and the change failed.
    src, mnt, hdir, mounter = hist
    m = mounter(src, mnt, "--history", hdir)
    write(os.path.join(mnt, "f"), b"f1")
    write(os.path.join(mnt, "g"), b"g1")
    assert cli("snapshot", mnt).returncode == 0
    write(os.path.join(mnt, "f"), b"f2")
    m.stop()
    m.check_clean_exit()
    mounter(src, mnt, "--history", hdir)
    write(os.path.join(mnt, "g"), b"g2")
    sid = snapshots(mnt)[-1]["id"]
    assert content_at(hdir, src, sid, "f") == b"f1"
    assert content_at(hdir, src, sid, "g") == b"g1"
    assert check_consistent(hdir) == set()


def timeline_oracle(snaps, rules):
    """snapper's timeline: walking newest first, the first snapshot of each
    new period is kept, until a rule has N periods. snaps: [(id, t_s)]."""
    import time as _time
    period = {
        "hourly": lambda t: t // 3600,
        "daily": lambda t: t // 86400,
        "weekly": lambda t: (t // 86400 + 3) // 7,
        "monthly": lambda t: _time.gmtime(t).tm_year * 12 + _time.gmtime(t).tm_mon,
        "last": None,
    }
    keep = {max(i for i, _ in snaps)}
    for rule, n in rules.items():
        seen = []
        for i, t in sorted(snaps, reverse=True):
            b = i if rule == "last" else period[rule](t)
            if len(seen) < n and (not seen or seen[-1] != b):
                seen.append(b)
                keep.add(i)
    return keep


def test_keep_thins_automatic_snapshots_by_period(hist):
    """The daemon's snapshots are minutes apart at most in a test: their
    times are set back in the database while nothing is mounted, as if the
    mount had run for weeks, then a prune thins them."""
    src, mnt, hdir, mounter = hist
    m = mounter(src, mnt, "--history", hdir)
    monday = 1767571200  # 2026-01-05T00:00:00Z, a Monday
    offs = [0, 1800, 3000, 7200, 86400 + 60, 86400 + 1200, 2 * 86400 - 1, 2 * 86400 + 1,
            7 * 86400 + 10, 8 * 86400, 9 * 86400 + 5, 30 * 86400, 40 * 86400, 41 * 86400]
    want = make_history(mnt, src, n=len(offs), pin=-1)
    m.stop()
    m.check_clean_exit()
    ids = sorted(want)
    db = sqlite3.connect(os.path.join(hdir, "history.db"))
    with db:
        for i, off in zip(ids, offs):
            db.execute("UPDATE snapshots SET kind = 'auto', t_ns = ? WHERE id = ?",
                       ((monday + off) * 10**9, i))
    db.close()
    mounter(src, mnt, "--history", hdir)
    rules = {"hourly": 2, "daily": 3, "weekly": 2, "monthly": 2}
    spec = ",".join("%s=%d" % kv for kv in rules.items())
    r = cli("prune", mnt, "--keep", spec, "--json")
    assert r.returncode == 0, r.stderr
    kept = {s["id"] for s in snapshots(mnt)}
    oracle = timeline_oracle([(i, monday + o) for i, o in zip(ids, offs)], rules)
    assert kept == oracle and kept != set(ids), (sorted(kept), sorted(oracle))
    assert check_kept(hdir, src, want) == kept
    assert check_consistent(hdir) == set()


def ids_after_quiet(mnt):
    """The snapshot ids once two whole checks in a row added none (a
    release's write row may come after close returned)."""
    while True:
        ids = [x["id"] for x in snapshots(mnt)]
        c = checks(mnt)
        assert wait_for(lambda: checks(mnt) >= c + 2, timeout=30)
        if [x["id"] for x in snapshots(mnt)] == ids:
            return ids


def test_a_failed_change_takes_no_checkpoint(hist):
    src, mnt, hdir, mounter = hist
    mounter(src, mnt, "--history", hdir, "--checkpoint-every", "1s")
    os.mkdir(os.path.join(mnt, "d"))
    write(os.path.join(mnt, "d", "x"), b"x")
    assert wait_for(lambda: len(snapshots(mnt)) >= 1, timeout=30)
    settled = ids_after_quiet(mnt)
    with pytest.raises(OSError):
        os.rmdir(os.path.join(mnt, "d"))  # not empty: journaled, and failed
    c = checks(mnt)
    assert wait_for(lambda: checks(mnt) >= c + 3, timeout=30)
    assert [x["id"] for x in snapshots(mnt)] == settled
    # the failed rmdir is in the journal, as failed (the checks wrote its outcome)
    assert history_rows(hdir, "SELECT count(*) FROM changes WHERE kind = 'rmdir' AND state < 0"
                   )[0][0] == 1
