"""The session loop: one worker reads requests at a time, and others join
when requests block. A request stuck in a backing call (here: a lookup that
reaches a second FUSE mount whose daemon is stopped) must not hold up the
rest of the mount, and the mount must still end cleanly."""
import os
import signal
import subprocess
import threading

from prism_helpers import PY, make_dirs


def _in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # reported by the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_stuck_request_does_not_hold_up_others(workdir, mounter):
    src, mnt, inner_src = make_dirs(workdir, "src", "mnt", "inner_src")
    os.mkdir(os.path.join(src, "inner"))
    with open(os.path.join(src, "f"), "w") as f:
        f.write("free\n")
    with open(os.path.join(inner_src, "x"), "w") as f:
        f.write("x\n")
    outer = mounter(src, mnt)
    # A second mount inside the first one's source: the first daemon's
    # backing calls under "inner" become requests to the second.
    inner = mounter(inner_src, os.path.join(src, "inner"))
    os.kill(inner.pid, signal.SIGSTOP)
    stuck = None
    try:
        stuck = subprocess.Popen([PY, "-c", "import os, sys; os.stat(sys.argv[1])",
                                  os.path.join(mnt, "inner", "x")])
        try:
            stuck.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        assert stuck.returncode is None, "the lookup through the stopped mount did not block"

        # Meanwhile the rest of the mount answers, several requests in a row.
        def others():
            out = []
            for i in range(20):
                p = os.path.join(mnt, "new%d" % i)
                with open(p, "w") as f:
                    f.write(str(i))
                out.append(os.stat(p).st_size)
            with open(os.path.join(mnt, "f")) as f:
                out.append(f.read())
            out.append(sorted(n for n in os.listdir(mnt) if not n.startswith("new")))
            return out

        t, box = _in_thread(others)
        t.join(timeout=60)
        assert not t.is_alive(), "requests stalled behind the stuck one"
        assert "error" not in box, box.get("error")
        assert box["value"] == [1] * 10 + [2] * 10 + ["free\n", ["f", "inner"]]
        assert stuck.poll() is None
    finally:
        os.kill(inner.pid, signal.SIGCONT)
        if stuck is not None:
            stuck.wait(timeout=60)
    assert stuck.returncode == 0
    assert outer.stop() == 0
    outer.check_clean_exit()
