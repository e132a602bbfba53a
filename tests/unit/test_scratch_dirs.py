"""The unit suite's scratch directories in memory: a killed run's are removed by a later run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import LEFTOVER_PREFIX, remove_leftovers


def a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_a_gone_runs_directory_is_removed_and_a_living_ones_is_kept(tmp_path):
    dead = tmp_path / f"{LEFTOVER_PREFIX}{a_dead_pid()}-abc"
    (dead / "test_x-1").mkdir(parents=True)
    (dead / "test_x-1" / "peers.json").write_text("{}")
    living = tmp_path / f"{LEFTOVER_PREFIX}{os.getpid()}-def"
    living.mkdir()
    unnamed = tmp_path / f"{LEFTOVER_PREFIX}k2ihz9kq"  # an older checkout's: no pid, left alone
    unnamed.mkdir()
    other = tmp_path / "someone-else"
    other.mkdir()

    assert remove_leftovers(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [living.name, unnamed.name, other.name])


def test_this_runs_directory_carries_its_pid(tmp_path):
    if not tmp_path.is_relative_to("/dev/shm"):
        pytest.skip("no /dev/shm with room here: tmp_path is pytest's own")
    assert tmp_path.parent.name.startswith(f"{LEFTOVER_PREFIX}{os.getpid()}-")
