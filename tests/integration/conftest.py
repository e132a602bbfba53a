"""Integration fixtures: a real two-site lab (webui.lab) with real charons, shared by every
integration test, the driver's and the app's.

Needs root (network namespaces, charon). Not root: every test here is skipped with a loud reason;
CI runs as root, so nothing is skipped there. One lab per pytest process, with a prefix derived
from this checkout's path (and the xdist worker), so worktrees and workers never share namespaces,
and a crashed run's leftovers are cleaned by the next run of the same checkout.
"""
import hashlib
import os
import tempfile
import time
from pathlib import Path

import pytest

from webui.lab import Lab

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs root and real charons (webui.lab)")
    config.addinivalue_line("markers", "browser: needs a real browser (playwright)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def lab_prefix() -> str:
    checkout = hashlib.sha1(str(ROOT).encode()).hexdigest()[:4]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").replace("gw", "")
    return os.environ.get("WEBUI_LAB_PREFIX") or f"wuiv{checkout}{worker}"


@pytest.fixture(scope="session")
def lab():
    """The started lab; stopped (namespaces deleted, charons killed) at the end of the session."""
    if os.geteuid() != 0:
        pytest.skip("INTEGRATION TESTS SKIPPED: not root. The lab needs network namespaces and "
                    "real charons; run as root (CI does) to prove the product works.")
    prefix = lab_prefix()
    started = time.monotonic()
    the_lab = Lab(prefix, Path(tempfile.gettempdir()) / f"{prefix}-lab").start()
    print(f"\nlab {prefix} up in {time.monotonic() - started:.2f} s")
    yield the_lab
    the_lab.stop()


@pytest.fixture
def clean_lab(lab):
    """The lab with both charons empty (and the router's running) before the test."""
    lab.reset()
    return lab


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll until `predicate()` is truthy; its last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
