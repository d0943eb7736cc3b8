"""The shape of the source tree, as docs/ARCHITECTURE.md draws it, checked
by reading the includes: calls go one way (transport -> handlers -> view ->
layers -> stores), every folder says what it holds, no file grows past what
one reader can hold. A change that breaks the shape fails here, not in a
review months later."""
import os
import re

import pytest

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")

# Which folders' headers each folder may include (its own always). The
# order of the layers, top first: cli -> ctl -> fuse -> view -> layers ->
# commit -> map, cache, history -> mirror -> store -> util. ctl (the control socket) reports
# on the transport, so it sits above it; the layers are the layered
# implementation of the view's namespace and work on its nodes.
ALLOWED = {
    "cli": {"ctl", "fuse", "view", "layers", "commit", "map", "cache", "history", "mirror",
            "store", "util"},
    "ctl": {"fuse", "view", "layers", "commit", "map", "cache", "history", "mirror", "store",
            "util"},
    "fuse": {"view", "map", "store", "util"},
    "view": {"layers", "map", "store", "util"},
    "layers": {"view", "commit", "map", "store", "util"},
    "commit": {"store", "util"},
    "map": {"store", "util"},
    "cache": {"mirror", "store", "util"},
    "history": {"store", "util"},
    "mirror": {"store", "util"},
    "store": {"util"},
    "util": set(),
}

ORDER = ["cli", "ctl", "fuse", "view", "layers", "commit", "map", "cache", "history", "mirror",
         "store", "util"]

# The few headers a folder takes from one above it, each with its reason.
EXCEPTIONS = {
    # The operation log is written by the handlers and by the mapping
    # watcher; it is a sink that calls nothing back.
    ("fuse", "ctl/oplog.h"): "the handlers log every operation",
    ("map", "ctl/oplog.h"): "table reloads are logged",
    # The mapping watcher installs each new table in the view.
    ("map", "view/view.h"): "a new table version goes into the view",
    ("map", "view/selfmnt.h"): "a table target is checked against the mount point",
    # Commit and the layers share the layer format and its choices.
    ("commit", "layers/ovlfmt.h"): "commit reads the layers' on-disk format",
    ("commit", "layers/layer_opts.h"): "how whiteouts are written",
    # Progress lines are drawn by an offline commit and the unmount action.
    ("commit", "ctl/progress.h"): "a long commit shows its progress",
    ("layers", "ctl/progress.h"): "the unmount action shows its progress",
    # The status command shows the mount's configuration.
    ("ctl", "cli/cli.h"): "status shows the options the mount was made with",
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/([a-z_]+\.h)"', re.M)


def sources():
    for folder in sorted(os.listdir(SRC)):
        d = os.path.join(SRC, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h")):
                yield folder, name, os.path.join(d, name)


def test_every_folder_is_known_and_says_what_it_holds():
    folders = sorted(f for f in os.listdir(SRC) if os.path.isdir(os.path.join(SRC, f)))
    assert set(folders) <= set(ALLOWED), "a folder the rules do not know: %s" % (
        set(folders) - set(ALLOWED))
    for f in folders:
        readme = os.path.join(SRC, f, "README.md")
        assert os.path.exists(readme), "src/%s has no README.md" % f
        with open(readme) as fh:
            text = fh.read()
        assert "May call" in text or "may call" in text, (
            "src/%s/README.md does not say what the folder may call" % f)
    assert not [n for n in os.listdir(SRC) if n.endswith((".c", ".h"))], (
        "a source file directly in src/: every file belongs to a folder")


def test_includes_go_one_way():
    bad = []
    for folder, name, path in sources():
        with open(path) as fh:
            text = fh.read()
        for dep, header in INCLUDE.findall(text):
            if dep == folder or dep in ALLOWED.get(folder, set()):
                continue
            if (folder, "%s/%s" % (dep, header)) in EXCEPTIONS:
                continue
            bad.append("src/%s/%s includes %s/%s" % (folder, name, dep, header))
    assert not bad, "includes against the direction of calls:\n" + "\n".join(bad)


def test_nothing_below_the_transport_includes_it():
    """Nothing under view, layers, commit, map, cache, store or util
    includes the transport (fuse/) or the program (cli/): what a request
    needs from the transport travels down in struct pfs_req."""
    lower = ORDER[ORDER.index("view"):]
    bad = []
    for folder, name, path in sources():
        if folder not in lower:
            continue
        with open(path) as fh:
            text = fh.read()
        for dep, header in INCLUDE.findall(text):
            if dep in ("fuse", "cli"):
                bad.append("src/%s/%s includes %s/%s" % (folder, name, dep, header))
    assert not bad, "\n".join(bad)


def test_the_rules_themselves_point_down():
    for folder, deps in ALLOWED.items():
        for d in deps:
            up = ORDER.index(d) < ORDER.index(folder)
            assert not up or (folder, d) == ("layers", "view"), (
                "ALLOWED lets %s include %s, which is above it" % (folder, d))


@pytest.mark.parametrize("limit", [800])
def test_no_source_file_is_too_long(limit):
    long_ = []
    for folder, name, path in sources():
        with open(path) as fh:
            n = sum(1 for _ in fh)
        if n > limit:
            long_.append("src/%s/%s: %d lines" % (folder, name, n))
    assert not long_, "files over %d lines:\n%s" % (limit, "\n".join(long_))
