"""More faults of a WebDAV mirror, through the fault-injecting proxy in
front of a real Apache mod_dav (tests/integration/faultproxy.py):

- 409 Conflict on a PUT: forced by the proxy (retried until it passes), and
  the real one -- the file's directory removed on the server while the
  cache's changes in it waited -- where the directory is made again;
- 412 Precondition Failed forced on every PUT of one file: both versions
  kept, the server's under the name and the cache's beside it;
- a slow server (the proxy throttles PUT bodies): writers wait at
  --cache-max-dirty, the daemon's memory stays bounded, nothing is lost.

Nothing here asserts a time; memory is read from /proc/PID/status."""
import hashlib
import os

from prism_helpers import status_json, wait_for
from test_cache_remote import give_to_server, read, server_tree, sync, write
from test_cache_remote import mnt, proxied  # noqa: F401 (fixtures)


def mount(mounter, p, mnt, *args):
    return mounter("http://127.0.0.1:%d/" % p.port, mnt, *args, "--mirror")


def synced(mnt):
    return sync(mnt, ok=False).returncode == 0


def test_a_forced_409_on_put_is_retried_until_the_data_is_there(proxied, mnt, mounter):
    s, p = proxied
    mount(mounter, p, mnt)
    os.makedirs(os.path.join(mnt, "d"))
    sync(mnt)
    p.fail(409, method="PUT", path=r"^/d/f$", times=3)
    write(os.path.join(mnt, "d/f"), "kept")
    assert wait_for(lambda: synced(mnt), timeout=90)
    assert read(os.path.join(s.root, "d/f")) == "kept"
    assert [x for x in p.log if x[0] == "PUT" and x[2] == 409]
    assert status_json(mnt)["cache"]["failures"] >= 1


def test_a_409_for_a_directory_removed_on_the_server_makes_it_again(proxied, mnt, mounter):
    s, p = proxied
    mount(mounter, p, mnt)
    os.makedirs(os.path.join(mnt, "d/e"))
    write(os.path.join(mnt, "d/e/old"), "old")
    sync(mnt)
    p.down(kill=True)  # the next changes wait
    write(os.path.join(mnt, "d/e/new"), "new here")
    os.makedirs(os.path.join(mnt, "d/e/sub"))
    # Meanwhile the server loses the directory they go into.
    import shutil
    shutil.rmtree(os.path.join(s.root, "d"))
    p.up()
    assert wait_for(lambda: synced(mnt), timeout=90)
    tree = server_tree(s.root)
    assert tree["d/e/new"] == ("file", b"new here")
    assert tree["d/e/sub"] == ("dir", None)
    # Apache said 409 (or the parent's absence) before it was made again.
    assert [x for x in p.log if x[0] in ("PUT", "MKCOL") and x[2] == 409], p.log
    assert read(os.path.join(mnt, "d/e/new")) == "new here"


def test_a_forced_412_keeps_both_versions(proxied, mnt, mounter):
    s, p = proxied
    write(os.path.join(s.root, "f"), "server's")
    give_to_server(s.root)
    mount(mounter, p, mnt)
    assert read(os.path.join(mnt, "f")) == "server's"
    p.fail(412, method="PUT", path=r"^/f$", times=None)  # every PUT of f
    write(os.path.join(mnt, "f"), "the cache's")
    assert wait_for(lambda: synced(mnt), timeout=90)
    assert read(os.path.join(s.root, "f")) == "server's"
    aside = [n for n in os.listdir(s.root) if n.startswith("f.prismfs-conflict-")]
    assert len(aside) == 1, os.listdir(s.root)
    assert read(os.path.join(s.root, aside[0])) == "the cache's"
    st = status_json(mnt)["cache"]
    assert st["conflicts"] == 1 and "f" in st["last_conflict"]
    assert read(os.path.join(mnt, "f")) == "the cache's"  # the view keeps its own


def proc_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def test_a_slow_server_bounds_memory_and_loses_nothing(proxied, mnt, mounter):
    s, p = proxied
    dirty = 4 << 20
    m = mount(mounter, p, mnt, "--cache-size", "64M", "--cache-max-dirty", "4M",
              "--write-back", "0")
    pid = m.proc.pid
    rss_before = proc_kib(pid, "VmRSS")
    p.slow(rate=2 << 20, method="PUT", times=None)  # 2 MiB/s uploads
    files = {}
    for i in range(6):  # 6 x 2 MiB: three times the dirty limit
        data = os.urandom(2 << 20)
        files["f%d" % i] = hashlib.sha256(data).hexdigest()
        write(os.path.join(mnt, "f%d" % i), data, "wb")
        st = status_json(mnt)["cache"]
        # A writer waits at the limit: what waits is at most the limit and
        # the one file that got in when there was room.
        assert st["pending_bytes"] <= dirty + (2 << 20), st
    hwm = proc_kib(pid, "VmHWM")
    # The data is in the cache's memory filesystem, not the daemon's heap:
    # the daemon grew by far less than what was written (12 MiB).
    assert hwm - rss_before < 8 << 10, (rss_before, hwm)
    p.clear()
    assert wait_for(lambda: synced(mnt), timeout=120)
    for name, digest in files.items():
        assert hashlib.sha256(read(os.path.join(s.root, name), "rb")).hexdigest() == digest
    assert status_json(mnt)["cache"]["pending_ops"] == 0
