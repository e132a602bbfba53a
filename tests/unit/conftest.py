"""Unit tests only: what keeps the fast suite fast without changing what it checks."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import TEST_SCRYPT_N
from webui import auth

# Hashing a password at the production scrypt cost takes a tenth of a second or more; a few dozen
# tests set or change passwords, and every later sign-in pays it again. The cost is a parameter of
# the hash (the file records it and checking reads it back), so the rules around it are the same at
# any cost. Tests marked `production_scrypt` keep the real one (test_login checks it is the one set).


@pytest.fixture(autouse=True)
def _cheap_scrypt(request, monkeypatch):
    if request.node.get_closest_marker("production_scrypt") is None:
        monkeypatch.setattr(auth, "SCRYPT_N", TEST_SCRYPT_N)


@pytest.fixture(scope="session")
def _memory_tmp() -> Path:
    """A scratch directory in memory when the machine has one: the store syncs every write to disk
    (webui/atomic.py), and a thousand unit tests' syncs were seconds of waiting on a shared disk.
    The writes, renames and permissions the tests check behave the same there."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shutil.disk_usage(shm).free > 256 * 2**20):
        yield None
        return
    remove_leftovers(shm)
    # The pid in the name says whose it is: a run that is killed (or a forked mutmut worker that
    # exits without ending its session) cannot remove its directory, a later run can.
    root = Path(tempfile.mkdtemp(prefix=f"{LEFTOVER_PREFIX}{os.getpid()}-", dir=shm))
    yield root
    shutil.rmtree(root, ignore_errors=True)


LEFTOVER_PREFIX = "webui-unit-"


def remove_leftovers(shm: Path) -> list[Path]:
    """Remove the scratch directories of earlier runs whose process is gone; those of a living
    process (another checkout's run at the same time) and those named without a pid are left."""
    removed = []
    for path in shm.glob(LEFTOVER_PREFIX + "*"):
        pid = path.name[len(LEFTOVER_PREFIX):].split("-")[0]
        if not pid.isdigit() or path.is_symlink() or path.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
            continue
        except PermissionError:
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@pytest.fixture
def tmp_path(request, tmp_path_factory, _memory_tmp) -> Path:
    name = re.sub(r"\W", "_", request.node.name)[:30]
    if _memory_tmp is None:
        return tmp_path_factory.mktemp(name, numbered=True)
    return Path(tempfile.mkdtemp(prefix=name + "-", dir=_memory_tmp))
