"""A pytest plugin for `./dev mutate` only: runs a mutant's tests in the order most likely to fail
first. mutmut stops a mutant's run at its first failing test (`-x`), so the order decides how long
a killed mutant takes, never whether it is killed: the same tests run, and a mutant that survives
runs every one of them. First the tests that killed earlier mutants of the same function, then
those that killed other mutants of the module, then the rest, quickest first. Loaded through
PYTEST_PLUGINS by tests/mutate.py, so mutmut's own settings (and its cached results) stay as they
were."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

KILLERS = "mutmut-killers.txt"  # one "function<TAB>test" line per kill, in mutmut's mutants/
STATS = "mutmut-stats.json"


def _mutant() -> str:
    name = os.environ.get("MUTANT_UNDER_TEST", "")
    # mutmut's own phases (stats, the forced failure, listing) are not a mutant's run.
    return name if "__mutmut_" in name else ""


def _function(mutant: str) -> str:
    return mutant.rsplit("__mutmut_", 1)[0]


def pytest_collection_modifyitems(session, config, items):
    mutant = _mutant()
    if not mutant:
        return
    here = Path.cwd()
    same, other = Counter(), Counter()
    if (here / KILLERS).exists():
        for line in (here / KILLERS).read_text().splitlines():
            function, _, test = line.partition("\t")
            (same if function == _function(mutant) else other)[test] += 1
    durations = {}
    if (here / STATS).exists():
        durations = json.loads((here / STATS).read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: (-same[item.nodeid], -other[item.nodeid],
                                 durations.get(item.nodeid, 0.0)))


def pytest_runtest_logreport(report):
    mutant = _mutant()
    if mutant and report.failed:
        # One short line appended at once: whole even if two mutants' runs write together.
        with open(Path.cwd() / KILLERS, "a") as killers:
            killers.write(f"{_function(mutant)}\t{report.nodeid}\n")
