"""Live path mappings under load: no errno an operation cannot return.

Three writers change a grafted directory (create, write, rename, unlink,
mkdir, rmdir) through the graft and through the target's own path, while
readers list it, stat and open what they saw, and the table flips every
50 ms between one that places names inside the graft and one that does
not. Every failure must carry an errno the call may return for a name that
another process removes meanwhile (getdents(2), stat(2), open(2)): ENOENT,
or ESTALE for a name the kernel must look up again. Never ENOTTY (seen: a
sanitizer report's isatty left it in errno and a listing returned it),
never ENOTCONN (the daemon died). A few seconds per run.
"""
import errno
import os
import threading
import time

from map_helpers import make_mapped, mkdirs, write_file, write_map_by_rename

DURATION = 3.0
FLIP = 0.05
ALLOWED = {
    "list": {errno.ENOENT},
    "stat": {errno.ENOENT, errno.ESTALE},
    "open": {errno.ENOENT, errno.ESTALE},
}
# One table places names inside the graft (so listings of it are merged
# with the table), the other does not; both keep the graft itself.
TABLES = [
    {"/g": {"target": "data"}, "/g/k": {"target": "data/f0"},
     "/g/sub/deep": {"target": "keep"}},
    {"/g": {"target": "data"}},
    {"/g": {"target": "data"}, "/g/f1": {}},
]


def populate(s):
    mkdirs(os.path.join(s, "data"))
    for i in range(8):
        write_file(os.path.join(s, "data", "f%d" % i), "file %d\n" % i)
    write_file(os.path.join(s, "keep"), "kept\n")


def test_no_foreign_errno_while_the_table_flips(workdir, mounter):
    m = make_mapped(workdir, mounter, TABLES[0], populate=populate)
    stop = threading.Event()
    bad = []
    counts = {"list": 0, "stat": 0, "open": 0, "change": 0, "flips": 0}
    lock = threading.Lock()

    def note(kind, path, e):
        if e.errno not in ALLOWED[kind]:
            with lock:
                bad.append((kind, path, errno.errorcode.get(e.errno, e.errno)))

    def count(kind):
        with lock:
            counts[kind] += 1

    def flipper():
        i = 0
        while not stop.is_set():
            i += 1
            write_map_by_rename(m.mapfile, TABLES[i % len(TABLES)])
            count("flips")
            time.sleep(FLIP)

    def writer(w):
        bases = [m.p("g"), m.p("data")]
        i = 0
        while not stop.is_set():
            i += 1
            base = bases[i % 2]
            name = os.path.join(base, "w%d-%d" % (w, i % 5))
            other = os.path.join(base, "w%d-%d" % (w, (i + 1) % 5))
            for op in (lambda: write_file(name, "x" * (i % 50)),
                       lambda: os.rename(name, other),
                       lambda: os.unlink(other),
                       lambda: os.mkdir(name),
                       lambda: os.rmdir(name)):
                try:
                    op()
                except FileNotFoundError:
                    pass  # the other writer's base, or a flip: ENOENT is fine
                except FileExistsError:
                    pass
                except OSError as e:
                    # a writer's own errors are not what this test checks,
                    # but a dead daemon is
                    if e.errno in (errno.ENOTCONN, errno.ENOTTY, errno.EIO):
                        with lock:
                            bad.append(("change", name, errno.errorcode.get(e.errno)))
                count("change")

    def reader():
        while not stop.is_set():
            for d in (m.p("g"), m.p("g", "sub")):
                try:
                    names = os.listdir(d)
                    count("list")
                except OSError as e:
                    note("list", d, e)
                    continue
                for n in names:
                    p = os.path.join(d, n)
                    try:
                        os.stat(p)
                        count("stat")
                    except OSError as e:
                        note("stat", p, e)
                        continue
                    try:
                        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
                        os.close(fd)
                        count("open")
                    except IsADirectoryError:
                        pass
                    except OSError as e:
                        note("open", p, e)

    threads = [threading.Thread(target=flipper)]
    threads += [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(DURATION)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not bad, "errnos the calls cannot return (%d, first 10): %r; counts %r" % (
        len(bad), bad[:10], counts)
    assert counts["list"] > 10 and counts["flips"] > 10, counts
