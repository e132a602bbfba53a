"""The README and docs/ say what is true: every command block is run by a named test or says why
CI cannot run it, no command needs what a fresh Debian lacks, and the configuration table's
defaults are the code's."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from webui import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
MARK = re.compile(r"<!--\s*(run by:|not run in CI:)(.*?)-->\s*$", re.S)
# Settings read outside DEFAULTS, by where they are read.
NOT_IN_DEFAULTS = {"SECRET_KEY": "webui/__init__.py", "ADMIN_PASSWORD": "webui/auth.py"}


def command_blocks():
    """(doc, line, code, marker kind, marker text) for every ```sh block."""
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) != "sh":
                continue
            before = text[:m.start()].rstrip("\n")
            mark = MARK.search(before[-600:])
            kind, said = (mark.group(1), " ".join(mark.group(2).split())) if mark and \
                before.endswith("-->") else ("", "")
            line = text.count("\n", 0, m.start()) + 1
            yield pytest.param(doc, line, m.group(2), kind, said,
                               id=f"{doc.relative_to(ROOT)}:{line}")


def source_of(reference: str) -> str:
    """The text of `path` or of function `path::name` (which must exist)."""
    path, _, name = reference.partition("::")
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    text = file.read_text()
    if not name:
        return text
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(text, node)
    raise AssertionError(f"{path} has no function {name}")


@pytest.mark.parametrize("doc, line, code, kind, said", list(command_blocks()))
def test_every_command_block_is_run_by_a_test_or_says_why_not(doc, line, code, kind, said):
    assert kind, (f"{doc.name}:{line}: mark the block <!-- run by: tests/...py::test_x --> or "
                  "<!-- not run in CI: why -->")
    if kind == "not run in CI:":
        assert len(said) >= 20, f"{doc.name}:{line}: say why CI cannot run it"
        return
    sources = [source_of(ref.strip()) for ref in said.split(";")]
    sources = ["\n".join(ln for ln in s.splitlines() if not ln.strip().startswith("#"))
               for s in sources]
    # Each ./dev subcommand in the block must be what one of those tests or scripts runs.
    for sub in re.findall(r"(?:^|\s)\S*dev (\w[\w-]*)", code):
        assert any(re.search(rf"""(^|["'\s]){re.escape(sub)}(["'\s]|$)""", s, re.M)
                   for s in sources), \
            f"{doc.name}:{line}: `dev {sub}` is not run by {said}"


def test_the_blocks_found_include_the_readmes_two_commands():
    blocks = [p.values[2] for p in command_blocks()]
    assert any("./dev run" in b and "./dev test" in b for b in blocks)
    assert len(blocks) >= 5


def commands_in(text: str) -> list[str]:
    """Fenced shell lines and inline code spans that look like commands."""
    lines = [ln.strip() for m in FENCE.finditer(text) if m.group(1) == "sh"
             for ln in m.group(2).splitlines()]
    spans = re.findall(r"`([^`]+)`", FENCE.sub("", text))  # a span may wrap across lines
    return lines + [" ".join(span.split()) for span in spans]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_no_command_needs_what_a_fresh_debian_lacks(doc):
    """Debian 12 has no `python` and a minimal one no sudo; the packages live in .venv: every
    command goes through ./dev (or names the venv's python explicitly)."""
    for command in commands_in(doc.read_text()):
        if len(command.split()) < 2:
            continue  # a name in prose ("prefix `sudo`"), not a command
        first = command.split()[0]
        assert first not in ("python", "sudo", "pip"), f"{doc.name}: `{command}`"
        assert not re.match(r"python3 -m (webui|tests)\b", command), f"{doc.name}: `{command}`"


def test_documented_paths_exist():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def configuration_table() -> list[tuple[list[str], str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`WEBUI_"):
            rows.append((re.findall(r"`WEBUI_(\w+)`", cells[0]), cells[1]))
    return rows


def test_the_configuration_table_is_found():
    names = [n for names, _ in configuration_table() for n in names]
    assert {"HOST", "PORT", "DATA_DIR", "VICI_SOCKET", "THREADS"} <= set(names)


def documented(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("names, default", configuration_table(),
                         ids=lambda v: ",".join(v) if isinstance(v, list) else "")
def test_each_documented_default_is_the_codes(names, default):
    literals = re.findall(r"`([^`]*)`", default)
    for name in names:
        assert name in DEFAULTS or name in NOT_IN_DEFAULTS, f"WEBUI_{name} is read nowhere"
    if default.startswith("empty"):
        assert all(DEFAULTS[name] == "" for name in names), names
        return
    if not literals:
        # "unset", "generated ...", "detected ...": the code has no fixed default.
        for name in names:
            assert DEFAULTS.get(name) is None, f"WEBUI_{name}: the code has a default"
        return
    if len(names) > 1 and len(literals) == 1:
        # One quoted value for two variables: a pair, comma-separated in one cell.
        literals = [literals[0]] * len(names)
    assert len(literals) == len(names), f"one default per variable: {names} {default}"
    for name, literal in zip(names, literals):
        code = DEFAULTS[name]
        expected = documented(code)
        if name == "DATA_DIR":
            literal = literal.removeprefix("./")
        assert literal == expected, f"WEBUI_{name}: README says {literal!r}, the code {expected!r}"


def test_settings_read_outside_the_defaults_are_read_where_said():
    for name, where in NOT_IN_DEFAULTS.items():
        assert name in (ROOT / where).read_text()
