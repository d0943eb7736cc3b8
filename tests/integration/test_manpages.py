"""The man pages (man/*.scd) and the program's --help cannot drift apart:
for each help text, the options it names (its usage lines and the options it
defines) are the options its page names (its SYNOPSIS and the options it
defines), and every command `prismfs --help` lists is described. The pages
render with scdoc, and groff and man(1) render them without a warning.

How options are read:
- --help: every option in the block that starts with "usage:", and in a
  synopsis line "  prismfs ..."; the leading options of a definition line
  (two spaces, then "-x" or "-x, --xx"); of "-o key=...,key=..." lines,
  the keys (the kernel overlay spelling, "lowerdir=").
- page: every option in the SYNOPSIS section; the leading options of a
  definition (a line "*-x*, *--xx* ..." followed by a tab-indented line);
  a definition "*key=*..." is that -o key.
Options named only in running text are not compared, on either side."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import PRISMFS, REPO

MAN = os.path.join(REPO, "man")

# Each command `prismfs --help` lists, and the page that describes it (with
# the help text it is compared with: `prismfs CMD --help`).
COMMAND_PAGES = {
    "mount": "prismfs-mount.1",
    "unmount": "prismfs-unmount.1",
    "status": "prismfs-status.1",
    "sync": "prismfs-sync.1",
    "commit": "prismfs-commit.1",
    "discard": "prismfs-commit.1",
    "recover": "prismfs-commit.1",
    "log": "prismfs-log.1",
    "snapshot": "prismfs-snapshot.1",
    "snapshots": "prismfs-snapshot.1",
    "versions": "prismfs-versions.1",
    "diff": "prismfs-diff.1",
    "restore": "prismfs-restore.1",
    "prune": "prismfs-prune.1",
    "export": "prismfs-export.1",
    "help": "prismfs.1",
}

OPT = r"(?<![\w-])(-{1,2}[A-Za-z][\w-]*)"


def run_help(*args):
    res = subprocess.run([PRISMFS, *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, "prismfs %s exited %d: %s" % (" ".join(args), res.returncode,
                                                            res.stderr)
    return res.stdout


def help_of(cmd):
    return run_help("--help") if cmd == "help" else run_help(cmd, "--help")


def help_options(text):
    opts = set()
    usage = False
    for line in text.splitlines():
        if line.startswith("usage:"):
            usage = True
        elif not line.strip():
            usage = False
        if usage or line.startswith("  prismfs "):
            opts.update(re.findall(OPT, line))
        m = re.match(r"  (-[^\s,]+(?:, -[^\s,]+)*)", line)
        if not m:
            continue
        lead = m.group(1).split(", ")
        opts.update(lead)
        if lead == ["-o"]:
            value = line[m.end():].split()
            for item in (value[0].split(",") if value else []):
                km = re.match(r"([a-z_]+\+?=)", item)
                if km:
                    opts.add(km.group(1))
    return opts


def unmark(s):
    """scdoc source text without its bold and underline marks (an
    underscore inside a word, as in --mapping_file, is a character)."""
    s = s.replace("\\_", "\x00").replace("\\*", "\x01").replace("*", "")
    s = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", "", s)
    return s.replace("\x00", "_").replace("\x01", "*")


def page_source(page):
    with open(os.path.join(MAN, page + ".scd")) as f:
        return f.read()


def sections(src):
    """(section, line, next line) for every line of the page."""
    lines = src.splitlines()
    section = None
    for i, line in enumerate(lines):
        if line.startswith("# "):
            section = line[2:].strip()
            continue
        yield section, line, lines[i + 1] if i + 1 < len(lines) else ""


def page_options(src):
    opts = set()
    for section, line, nxt in sections(src):
        text = unmark(line)
        if section == "SYNOPSIS":
            opts.update(re.findall(OPT, text))
        elif line.startswith("*") and nxt.startswith("\t"):
            m = re.match(r"(-[^\s,]+(?:, -[^\s,]+)*)", text)
            if m:
                opts.update(m.group(1).split(", "))
            m = re.match(r"([a-z_]+\+?=)", text)
            if m:
                opts.add(m.group(1))
    return opts


def help_commands(text):
    cmds, inside = [], False
    for line in text.splitlines():
        if line == "commands:":
            inside = True
        elif not line.strip():
            inside = False
        elif inside:
            m = re.match(r"  ([a-z][a-z-]*)\b", line)
            if m:
                cmds.append(m.group(1))
    return cmds


def page_commands(src):
    return [unmark(line).split()[0] for section, line, nxt in sections(src)
            if section == "COMMANDS" and line.startswith("*") and nxt.startswith("\t")]


def meson_pages():
    with open(os.path.join(MAN, "meson.build")) as f:
        return ["%s.%s" % m for m in re.findall(r"\['([\w-]+)', '(\d)'\]", f.read())]


# --------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", sorted(COMMAND_PAGES))
def test_help_and_page_name_the_same_options(cmd):
    page = COMMAND_PAGES[cmd]
    in_help = help_options(help_of(cmd))
    in_page = page_options(page_source(page))
    assert in_help, "found no options in prismfs %s --help" % cmd
    only_help = sorted(in_help - in_page)
    only_page = sorted(in_page - in_help)
    assert not only_help and not only_page, (
        "prismfs %s --help and man/%s.scd name different options:\n"
        "  only in --help: %s\n  only in the page: %s\n"
        "(document an option in both, or in neither: see this test's docstring for "
        "where each side is read)" % (cmd, page, only_help or "-", only_page or "-"))


def test_every_command_has_a_page():
    listed = help_commands(help_of("help"))
    assert "mount" in listed, "found no command list in prismfs --help"
    missing = [c for c in listed if c not in COMMAND_PAGES]
    assert not missing, ("prismfs --help lists %s, which no man page describes: write "
                         "man/prismfs-CMD.1.scd and add it to COMMAND_PAGES here" % missing)
    described = page_commands(page_source("prismfs.1"))
    assert sorted(described) == sorted(listed), (
        "the COMMANDS of man/prismfs.1.scd (%s) are not the commands prismfs --help "
        "lists (%s)" % (described, listed))


@pytest.mark.parametrize("cmd", sorted(set(COMMAND_PAGES) - {"help"}))
def test_help_cmd_is_cmd_help(cmd):
    # One help text per page: `help CMD` is `CMD --help`, and the commands a
    # page describes together share theirs.
    assert run_help("help", cmd) == help_of(cmd), "prismfs help %s differs from %s --help" % (
        cmd, cmd)
    page = COMMAND_PAGES[cmd]
    for other in COMMAND_PAGES:
        if other != "help" and COMMAND_PAGES[other] == page:
            assert help_of(other) == help_of(cmd), (
                "%s --help and %s --help differ, but man/%s.scd describes both"
                % (other, cmd, page))


def test_meson_builds_every_page():
    sources = sorted(f[:-len(".scd")] for f in os.listdir(MAN) if f.endswith(".scd"))
    assert sorted(meson_pages()) == sources, (
        "man/meson.build builds %s, man/ holds %s" % (sorted(meson_pages()), sources))
    pages = set(COMMAND_PAGES.values())
    assert pages <= set(sources), "COMMAND_PAGES names pages man/ lacks: %s" % (
        sorted(pages - set(sources)))


def test_built_pages_next_to_the_binary():
    """A build with scdoc has every page in its man/ directory."""
    built = os.path.join(os.path.dirname(PRISMFS), "man")
    if not shutil.which("scdoc") or not os.path.isfile(os.path.join(
            os.path.dirname(PRISMFS), "build.ninja")):
        pytest.skip("no scdoc, or %s is not in a meson build directory" % PRISMFS)
    missing = [p for p in meson_pages() if not os.path.isfile(os.path.join(built, p))]
    assert not missing, ("%s lacks %s: was the build directory set up before scdoc was "
                         "installed? (meson setup --reconfigure)" % (built, missing))


def render(tmp_path):
    if not shutil.which("scdoc"):
        pytest.skip("scdoc is not installed (scripts/setup.sh installs it)")
    out = []
    for page in meson_pages():
        res = subprocess.run(["scdoc"], input=page_source(page), capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0 and res.stdout, "scdoc refused man/%s.scd: %s" % (
            page, res.stderr.strip())
        path = tmp_path / page
        path.write_text(res.stdout)
        out.append(path)
    return out


def test_pages_render_without_warnings_groff(tmp_path):
    pages = render(tmp_path)
    if not shutil.which("groff"):
        pytest.skip("groff is not installed")
    for path in pages:
        res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and not res.stderr.strip(), (
            "groff warns about %s:\n%s" % (path.name, res.stderr))


def test_pages_render_without_warnings_man(tmp_path):
    pages = render(tmp_path)
    if not shutil.which("man"):
        pytest.skip("man is not installed")
    env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
    for path in pages:
        # As Debian's lintian checks pages: every warning of man's
        # formatter, nothing written.
        res = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z",
                              str(path)], capture_output=True, text=True, timeout=60,
                             env=env)
        assert res.returncode == 0 and not res.stderr.strip(), (
            "man -l warns about %s:\n%s" % (path.name, res.stderr))
        res = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True,
                             timeout=60, env=dict(env, MANPAGER="cat", PAGER="cat"))
        name = path.name.rsplit(".", 1)[0]
        assert res.returncode == 0 and name in res.stdout and "NAME" in res.stdout, (
            "man -l %s printed no page:\n%s%s" % (path.name, res.stdout[:500], res.stderr))
