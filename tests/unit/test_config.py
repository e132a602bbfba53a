"""Settings: defaults -> the data directory's config.py -> WEBUI_* environment -> test_config."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webui import DEFAULTS, ConfigError, create_app, read_settings
from webui.drivers.strongswan import STATE_FILE, ViciDriver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_webui_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("WEBUI_"):
            monkeypatch.delenv(name)


def test_a_numeric_secret_key_is_a_string_and_pages_answer(tmp_path, monkeypatch):
    key = "1234567890" * 4
    monkeypatch.setenv("WEBUI_SECRET_KEY", key)
    app = create_app({"DATA_DIR": str(tmp_path), "DRIVER": "fake", "RECONCILE_ON_START": False})
    assert app.config["SECRET_KEY"] == key
    assert app.test_client().get("/login").status_code == 200


@pytest.mark.parametrize("name, text, value", [
    ("WEBUI_PORT", "8081", 8081),
    ("WEBUI_VICI_TIMEOUT", "2.5", 2.5),
    ("WEBUI_VICI_WATCH", "false", False),
    ("WEBUI_SESSION_COOKIE_SECURE", "true", True),
    ("WEBUI_HOST", "192.168.1.1", "192.168.1.1"),
    ("WEBUI_NETNS", "123", "123"),
    ("WEBUI_IPSEC_RESTART_COMMAND", '["/etc/init.d/swanctl", "restart"]',
     ["/etc/init.d/swanctl", "restart"]),
])
def test_environment_values_are_read_by_the_type_of_their_default(monkeypatch, tmp_path, name,
                                                                   text, value):
    monkeypatch.setenv(name, text)
    settings, given = read_settings({"DATA_DIR": str(tmp_path)})
    key = name.removeprefix("WEBUI_")
    assert settings[key] == value and type(settings[key]) is type(value)
    assert key in given


@pytest.mark.parametrize("name, text, says", [
    ("WEBUI_PORT", "eighty", "WEBUI_PORT must be a number"),
    ("WEBUI_VICI_WATCH", "maybe", "WEBUI_VICI_WATCH must be true or false"),
    ("WEBUI_IPSEC_RESTART_COMMAND", "systemctl restart strongswan", "JSON list of strings"),
])
def test_an_unusable_value_is_refused_by_name(monkeypatch, tmp_path, name, text, says):
    monkeypatch.setenv(name, text)
    with pytest.raises(ConfigError, match=says):
        read_settings({"DATA_DIR": str(tmp_path)})


def test_config_py_is_read_from_the_data_directory(tmp_path, monkeypatch):
    (tmp_path / "config.py").write_text("STATUS_POLL_SECONDS = 7\nHOST = '10.0.0.1'\n")
    monkeypatch.setenv("WEBUI_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(ROOT)  # a checkout whose own instance/ must not matter
    settings, given = read_settings()
    assert (settings["STATUS_POLL_SECONDS"], settings["HOST"]) == (7, "10.0.0.1")
    assert given == {"STATUS_POLL_SECONDS", "HOST"}
    monkeypatch.setenv("WEBUI_STATUS_POLL_SECONDS", "3")
    assert read_settings()[0]["STATUS_POLL_SECONDS"] == 3, "the environment overrides the file"


def test_config_py_cannot_move_the_data_directory(tmp_path):
    (tmp_path / "config.py").write_text("DATA_DIR = '/elsewhere'\n")
    with pytest.raises(ConfigError, match="WEBUI_DATA_DIR"):
        read_settings({"DATA_DIR": str(tmp_path)})


def test_the_names_file_is_private_like_the_rest(tmp_path):
    driver = ViciDriver(tmp_path / "absent.vici", data_dir=tmp_path)
    driver._save_state()
    assert stat.S_IMODE((tmp_path / STATE_FILE).stat().st_mode) == 0o600


def test_run_py_listens_where_config_py_says_and_starts_no_lab_for_its_driver(tmp_path):
    """HOST, PORT, THREADS and DRIVER from config.py alone: run.py serves there, with the fake
    driver, and (even as root on a machine with strongSwan) brings up no lab."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "config.py").write_text(
        f"HOST = '127.0.0.1'\nPORT = {port}\nTHREADS = 2\nDRIVER = 'fake'\n"
        "ADMIN_PASSWORD = 'config-file-password'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUI_")}
    env["WEBUI_DATA_DIR"] = str(tmp_path)
    server = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "run.py never listened on config.py's PORT"
                time.sleep(0.1)
    finally:
        server.terminate()
        err = server.communicate(timeout=10)[1]
    assert f"serving on http://127.0.0.1:{port}/" in err
    assert "lab" not in err
    assert DEFAULTS["PORT"] != port
