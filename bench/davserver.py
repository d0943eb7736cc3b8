#!/usr/bin/python3
"""bench/davserver.py KIND INFO_FILE: start a WebDAV server for the bench's
remote rows with the tests' own starter (tests/integration/davservers.py:
unprivileged, on a free 127.0.0.1 port, in a directory under $TMPDIR),
write "URL ROOT" to INFO_FILE once it listens, and keep it running until
SIGTERM, SIGINT or SIGHUP; then stop it and remove its directory (the
context manager does both, whatever happens)."""

import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import davservers  # noqa: E402


class Stop(Exception):
    pass


def _stop(signum, frame):
    raise Stop()


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in davservers.KINDS:
        print(f"usage: davserver.py {'|'.join(davservers.KINDS)} INFO_FILE", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        with davservers.dav_server(sys.argv[1]) as s:
            tmp = sys.argv[2] + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{s.url} {s.root}\n")
            os.rename(tmp, sys.argv[2])
            while True:
                signal.pause()
    except Stop:
        return 0


if __name__ == "__main__":
    sys.exit(main())
