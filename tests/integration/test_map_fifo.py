"""Live path mappings through a named pipe: messages are a 4-byte
big-endian length and that much JSON, applied in order (bursts included);
garbage, partial messages and messages over --map-max are rejected without
stopping the stream for later writers; silent writers never block the
mount; and readers racing a stream of updates only ever see whole
generations."""
import json
import os
import struct
import subprocess
import threading
import time

import pytest

from map_helpers import (PipeWriter, frame, ls, make_mapped, mapping_status, mkdirs,
                         read_file, send_messages, wait_generation, wait_rejected, write_file)

PY = "/usr/bin/python3"
BASE = ["fa", "fb", "fc"]


def populate(s):
    for n in BASE:
        write_file(os.path.join(s, n), n.upper())


@pytest.fixture
def piped(workdir, mounter):
    return make_mapped(workdir, mounter, None, fifo=True, name="map.fifo", populate=populate)


def padded(table, size):
    """The table as JSON of exactly size bytes (trailing spaces)."""
    data = json.dumps(table).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


def between_writers():
    """Give the daemon the end-of-file of the writer that just closed before
    the next one opens (a FIFO cannot tell two writers apart otherwise).
    Sequencing only: what is checked afterwards is polled with a deadline."""
    time.sleep(0.2)


def answers(mnt, timeout=15):
    """stat and list the mount from a child with a timeout: a blocked daemon
    fails the test instead of hanging it."""
    code = "import os, sys, json; m = sys.argv[1]; os.stat(m); " \
        "print(json.dumps(sorted(os.listdir(m))))"
    try:
        res = subprocess.run([PY, "-c", code, mnt], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the mount did not answer stat/listdir within %ss" % timeout)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_empty_table_until_the_first_message(piped):
    m = piped
    st = m.status()
    assert (st["generation"], st["entries"], st["rejected"]) == (0, 0, 0), st
    assert ls(m.mnt) == BASE
    send_messages(m.mapfile, {"/one": {"target": "fa"}, "/fb": {}})
    st = wait_generation(m.mnt, 1)
    assert st["entries"] == 2
    assert ls(m.mnt) == ["fa", "fc", "one"]
    assert read_file(m.p("one")) == "FA"


@pytest.mark.parametrize("pad", [0, 2000], ids=["small", "larger-than-pipe-buffer"])
def test_burst_is_applied_in_order(piped, pad):
    """200 messages written at once (one write; with padding the burst is
    several times the pipe's buffer): every one is applied, in order."""
    m = piped
    n = 200
    burst = b"".join(
        frame(padded({"/cur": {"target": BASE[i % 3]}, "/n%d" % i: {"target": "fa"}},
                     pad or len(json.dumps({"/cur": {"target": BASE[i % 3]},
                                            "/n%d" % i: {"target": "fa"}}))))
        for i in range(n))
    with PipeWriter(m.mapfile) as w:
        w.write(burst)
        st = wait_generation(m.mnt, n)
    assert st["entries"] == 2 and st["rejected"] == 0, st
    assert ls(m.mnt) == sorted(BASE + ["cur", "n%d" % (n - 1)])
    assert read_file(m.p("cur")) == BASE[(n - 1) % 3].upper()


def test_burst_with_bad_messages(piped):
    """Bad messages in a burst are rejected one by one; the good ones are
    applied: the generation grows by exactly the number of good ones."""
    m = piped
    n = 200
    msgs = []
    good = 0
    for i in range(n):
        if i % 10 == 3:
            msgs.append(frame(b'{"/n%d": {"target": ' % i))          # does not parse
        elif i % 10 == 7:
            msgs.append(frame({"/n%d/" % i: {"target": "fa"}}))      # does not validate
        else:
            msgs.append(frame({"/n%d" % i: {"target": "fa"}}))
            good += 1
    with PipeWriter(m.mapfile) as w:
        w.write(b"".join(msgs))
        w.drain()
        st = wait_generation(m.mnt, good)
        st = wait_rejected(m.mnt, n - good)
    assert st["generation"] == good, st
    assert ls(m.mnt) == sorted(BASE + ["n%d" % (n - 1)])


def test_many_writers_one_after_another(piped):
    m = piped
    for i in range(20):
        send_messages(m.mapfile, {"/w%d" % i: {"target": "fb"}})
        wait_generation(m.mnt, i + 1)
    assert ls(m.mnt) == sorted(BASE + ["w19"])
    assert m.status()["rejected"] == 0


def test_garbage_is_rejected_and_the_next_writer_works(piped):
    m = piped
    send_messages(m.mapfile, {"/before": {"target": "fa"}})
    wait_generation(m.mnt, 1)
    between_writers()
    # "hell" as a length is 1,751,477,356: over the 64M cap. The well-formed
    # message after it, from the same writer, is part of the garbage.
    assert struct.unpack(">I", b"hell")[0] > 64 << 20
    with PipeWriter(m.mapfile) as w:
        w.write(b"hello garbage")
        w.write(frame({"/smuggled": {"target": "fa"}}))
        w.drain()
        st = wait_rejected(m.mnt, 1)
    assert st["generation"] == 1 and st["last_rejected_reason"], st
    assert ls(m.mnt) == sorted(BASE + ["before"])
    between_writers()
    send_messages(m.mapfile, {"/after": {"target": "fb"}})
    st = wait_generation(m.mnt, 2)
    assert st["rejected"] == 1, "the rest of the garbage writer's bytes were not ignored: %r" % st
    assert ls(m.mnt) == sorted(BASE + ["after"])
    assert read_file(m.p("after")) == "FB"


@pytest.mark.parametrize("cut", ["in the length", "in the body"])
def test_partial_message_is_dropped(piped, cut):
    m = piped
    send_messages(m.mapfile, {"/before": {"target": "fa"}})
    wait_generation(m.mnt, 1)
    between_writers()
    whole = frame({"/partial": {"target": "fa"}})
    with PipeWriter(m.mapfile) as w:
        w.write(whole[:2] if cut == "in the length" else whole[:len(whole) - 5])
        w.drain()
    st = wait_rejected(m.mnt, 1)
    assert st["generation"] == 1, st
    assert "partial" in (st["last_rejected_reason"] or "").lower(), st
    assert ls(m.mnt) == sorted(BASE + ["before"])
    between_writers()
    send_messages(m.mapfile, {"/after": {"target": "fb"}})
    st = wait_generation(m.mnt, 2)
    assert st["rejected"] == 1, st
    assert ls(m.mnt) == sorted(BASE + ["after"])


def test_map_max_boundary(workdir, mounter):
    """--map-max 1000: a 1000-byte message is accepted, 1001 bytes is over
    the cap and rejected; a later writer is heard again."""
    m = make_mapped(workdir, mounter, None, "--map-max", "1000", fifo=True, populate=populate)
    send_messages(m.mapfile, padded({"/exact": {"target": "fa"}}, 1000))
    wait_generation(m.mnt, 1)
    assert ls(m.mnt) == sorted(BASE + ["exact"])
    between_writers()
    send_messages(m.mapfile, padded({"/over": {"target": "fa"}}, 1001))
    st = wait_rejected(m.mnt, 1)
    assert st["generation"] == 1, st
    assert ls(m.mnt) == sorted(BASE + ["exact"])
    between_writers()
    send_messages(m.mapfile, {"/later": {"target": "fb"}})
    st = wait_generation(m.mnt, 2)
    assert st["rejected"] == 1, st
    assert ls(m.mnt) == sorted(BASE + ["later"])


@pytest.mark.parametrize("limit,ok,over", [("2K", 1900, 2100), ("1M", 1000000, 1100000)])
def test_map_max_suffixes(workdir, mounter, limit, ok, over):
    m = make_mapped(workdir, mounter, None, "--map-max", limit, fifo=True, populate=populate)
    send_messages(m.mapfile, padded({"/ok": {"target": "fa"}}, ok))
    wait_generation(m.mnt, 1)
    between_writers()
    with PipeWriter(m.mapfile) as w:
        # the daemon may stop reading once the length is over the cap
        w.write(struct.pack(">I", over) + padded({"/over": {"target": "fa"}}, 64))
        st = wait_rejected(m.mnt, 1)
    assert st["generation"] == 1
    assert ls(m.mnt) == sorted(BASE + ["ok"])


def test_default_cap_is_64m(piped):
    """A length just over 64M is rejected from its header alone; a 1 MiB
    message is accepted."""
    m = piped
    send_messages(m.mapfile, padded({"/big": {"target": "fa"}}, 1 << 20))
    wait_generation(m.mnt, 1)
    between_writers()
    with PipeWriter(m.mapfile) as w:
        w.write(struct.pack(">I", (64 << 20) + 1))
        st = wait_rejected(m.mnt, 1)
    assert st["generation"] == 1 and "partial" not in st["last_rejected_reason"].lower(), st
    assert ls(m.mnt) == sorted(BASE + ["big"])


def test_silent_writer_blocks_nothing(piped):
    m = piped
    with PipeWriter(m.mapfile):                     # opens and never writes
        assert answers(m.mnt) == BASE
        assert mapping_status(m.mnt)["generation"] == 0
        send_messages(m.mapfile, {"/heard": {"target": "fc"}})
        wait_generation(m.mnt, 1)
        assert answers(m.mnt) == sorted(BASE + ["heard"])
    between_writers()
    send_messages(m.mapfile, {"/again": {"target": "fc"}})
    wait_generation(m.mnt, 2)
    assert answers(m.mnt) == sorted(BASE + ["again"])


def test_stalled_partial_writer_blocks_nothing(piped):
    """A writer stuck in the middle of a message: the mount and status keep
    answering; once it closes, the partial message is dropped."""
    m = piped
    whole = frame({"/stuck": {"target": "fa"}})
    with PipeWriter(m.mapfile) as w:
        w.write(whole[:10])
        w.drain()
        assert answers(m.mnt) == BASE
        assert answers(m.p()) == BASE
        assert mapping_status(m.mnt)["generation"] == 0
    st = wait_rejected(m.mnt, 1)
    assert "partial" in st["last_rejected_reason"].lower(), st
    between_writers()
    send_messages(m.mapfile, {"/fine": {"target": "fa"}})
    wait_generation(m.mnt, 1)
    assert answers(m.mnt) == sorted(BASE + ["fine"])


# --------------------------------------------------------------------------
# readers racing a stream of updates see whole generations

def test_readers_see_whole_generations(workdir, mounter):
    """Each generation g maps /gen to a directory holding exactly g<g>_a and
    g<g>_b, and /genfile to a file holding str(g). While updates stream in
    for ~3 s, readers list /gen and stat+read /genfile: every answer must
    belong to one generation that was sent, and no reader may go back to an
    older generation after it saw a newer one."""
    m = make_mapped(workdir, mounter, None, fifo=True, name="map.fifo")
    gens = mkdirs(os.path.join(m.src, "gens"))
    state = {"sent": 0, "stop": False}
    failures = []

    def make_gen(g):
        d = os.path.join(gens, "d%d" % g)
        os.mkdir(d)
        for suffix in ("a", "b"):
            write_file(os.path.join(d, "g%d_%s" % (g, suffix)), "")
        write_file(os.path.join(gens, "f%d" % g), str(g))
        return {"/gen": {"target": "gens/d%d" % g}, "/genfile": {"target": "gens/f%d" % g}}

    w = PipeWriter(m.mapfile)
    try:
        w.send(make_gen(1))
        state["sent"] = 1
        wait_generation(m.mnt, 1)

        def writer():
            try:
                g = 1
                end = time.monotonic() + 3.0
                while time.monotonic() < end:
                    g += 1
                    table = make_gen(g)
                    state["sent"] = g       # before it can be seen
                    w.send(table)
                    time.sleep(0.002)
            except Exception as e:  # reported below
                failures.append("writer: %r" % e)
            finally:
                state["stop"] = True

        counts = []

        def reader(idx):
            last_list = last_file = 0
            n = 0
            seen = set()
            mine = []

            def fail(msg):
                mine.append("reader %d: %s" % (idx, msg))

            try:
                while not state["stop"] and len(mine) < 10:
                    n += 1
                    sent = state["sent"]
                    names = sorted(os.listdir(os.path.join(m.mnt, "gen")))
                    if len(names) != 2 or not names[0].endswith("_a") or \
                            names[0][:-2] != names[1][:-2] or not names[1].endswith("_b"):
                        fail("/gen lists %r: not one generation's {gN_a, gN_b}" % names)
                    else:
                        g = int(names[0][1:-2])
                        if not 1 <= g <= max(sent, state["sent"]):
                            fail("/gen shows generation %d, never sent" % g)
                        elif g < last_list:
                            fail("/gen went back from generation %d to %d" % (last_list, g))
                        last_list = max(g, last_list)
                        seen.add(g)
                    fd = os.open(os.path.join(m.mnt, "genfile"), os.O_RDONLY)
                    try:
                        size = os.fstat(fd).st_size
                        data = os.read(fd, 64).decode()
                    finally:
                        os.close(fd)
                    if not data.isdigit() or len(data) != size:
                        fail("/genfile holds %r but its st_size is %d" % (data, size))
                        continue
                    fg = int(data)
                    if not 1 <= fg <= state["sent"]:
                        fail("/genfile says generation %d, never sent" % fg)
                    elif fg < last_file:
                        fail("/genfile went back from generation %d to %d" % (last_file, fg))
                    last_file = max(fg, last_file)
            except OSError as e:
                fail(repr(e))
            finally:
                counts.append((n, len(seen)))
                failures.extend(mine)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a reader or the writer hung"
        assert not failures, "%d inconsistent answers, e.g.:\n%s" % (
            len(failures), "\n".join(failures[:20]))
        last = state["sent"]
        st = wait_generation(m.mnt, last, timeout=15)
    finally:
        w.close()
    assert st["rejected"] == 0, st
    assert ls(m.p("gen")) == ["g%d_a" % last, "g%d_b" % last]
    assert read_file(m.p("genfile")) == str(last)
    assert all(n >= 20 for n, _ in counts), "readers made too few rounds: %r" % counts
    assert all(k >= 2 for _, k in counts), \
        "the readers did not see the generations change: %r" % counts
    assert last >= 50, "only %d generations were sent" % last
