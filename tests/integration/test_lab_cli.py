"""The lab by hand (`./dev lab`) and `./dev run --lab-prefix`: every name comes from the prefix,
and `up` prints every setting the UI needs to drive the lab router."""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time

import pytest

from tests.integration.conftest import ROOT, lab_prefix
from webui.drivers import strongswan

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="LAB COMMAND TESTS SKIPPED: not root. The lab needs network "
    "namespaces and charons; run as root (CI does).")


def netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def dev(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "dev"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, **kw)


def test_lab_up_prints_the_uis_settings_and_down_removes_it():
    prefix = lab_prefix() + "c"
    try:
        up = dev("lab", "up", "--prefix", prefix)
        assert up.returncode == 0, up.stderr
        settings = dict(line.split("=", 1) for line in up.stdout.splitlines()
                        if line.startswith("WEBUI_"))
        settings = {k: shlex.split(v)[0] for k, v in settings.items()}
        assert set(settings) >= {"WEBUI_VICI_SOCKET", "WEBUI_IPSEC_RESTART_COMMAND", "WEBUI_NETNS",
                                 "WEBUI_LAN_INTERFACES", "WEBUI_WAN_INTERFACES"}
        assert settings["WEBUI_NETNS"] == f"{prefix}-router"
        assert strongswan.call(settings["WEBUI_VICI_SOCKET"], "version", timeout=2)["daemon"]
        restart = json.loads(settings["WEBUI_IPSEC_RESTART_COMMAND"])
        assert prefix in restart
        pidfile = ROOT / "lab-run" / prefix / "router.pid"
        before = pidfile.read_text()
        subprocess.run(restart, cwd=ROOT, check=True, capture_output=True, timeout=60)
        assert pidfile.read_text() != before, "the printed restart command restarted its charon"
        assert strongswan.call(settings["WEBUI_VICI_SOCKET"], "version", timeout=2)["daemon"]
    finally:
        down = dev("lab", "down", "--prefix", prefix)
    assert down.returncode == 0, down.stderr
    assert f"{prefix}-router" not in netns_list()


def test_run_with_a_lab_prefix_makes_its_lab_under_that_name_and_takes_it_down(tmp_path):
    prefix = lab_prefix() + "r"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUI_")}
    env.update(WEBUI_DATA_DIR=str(tmp_path), WEBUI_ADMIN_PASSWORD="lab-prefix-password")
    server = subprocess.Popen([str(ROOT / "dev"), "run", "--lab", "--lab-prefix", prefix,
                               "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "run.py with the lab never listened"
                time.sleep(0.2)
        assert f"{prefix}-router" in netns_list()
    finally:
        server.terminate()  # SIGTERM: run.py leaves through `finally`, taking its lab down
        err = server.communicate(timeout=30)[1]
    assert f"netns {prefix}-router" in err
    assert f"{prefix}-router" not in netns_list()
