"""Issue 19: `./dev install`, `upgrade` and `uninstall`, run for real into a scratch root.

The scratch root is a directory holding a minimal /etc: the installer creates the system user in
its passwd (useradd --prefix), the code and venv under its /opt/webui, the data directory, the
unit, the polkit rule and the strongswan.conf snippet, and touches nothing outside it. The
installed code is then run from there, as the service's user, to prove the venv and the data
directory's owner are right. What needs a real systemd as PID 1 (enable, start, restart) cannot run
here: docs/INSTALL.md says so.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import LEAKS
from tests.integration.conftest import ROOT, HttpBrowser, wait_for

PASSWORD = "installed-router-password"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="INSTALL TESTS SKIPPED: not root. The installer creates a system "
    "user and chowns files; run as root (CI does).")


def dev(*args, env=None, input=None, cwd=ROOT) -> subprocess.CompletedProcess:
    done = subprocess.run([str(Path(cwd) / "dev"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env, input=input)
    assert done.returncode == 0, f"./dev {' '.join(args)} failed:\n{done.stderr}"
    return done


@pytest.fixture
def scratch_root():
    """A directory standing for a fresh Debian's /: only root's entries in its user database.
    Traversable by others (0755), so the installed service's user can reach the tree."""
    root = Path(tempfile.mkdtemp(prefix="webui-root-"))
    root.chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).write_text("")
        (root / "etc" / name).chmod(0o600)
    yield root
    shutil.rmtree(root)


def entry(root: Path, database: str, name: str) -> list[str] | None:
    for line in (root / "etc" / database).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verify_unit(root: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` on the installed unit, with the scratch root's /opt seen at /opt
    (a private mount namespace: the host's /opt is untouched), so ExecStart is checked for real."""
    unit = root / "etc/systemd/system/webui.service"
    script = f"mount --bind {root / 'opt'} /opt && exec systemd-analyze verify {unit}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=60)


def serve_installed(root: Path, uid: int, gid: int, port: int) -> subprocess.Popen:
    """The installed code, from the installed venv, as the service's user would run it."""
    prefix = root / "opt/webui"
    env = {"PATH": "/usr/bin:/bin", "WEBUI_DATA_DIR": str(root / "var/lib/webui"),
           "WEBUI_DRIVER": "fake", "WEBUI_PORT": str(port)}
    return subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
         str(prefix / ".venv/bin/python"), str(prefix / "run.py"), "--no-lab"],
        cwd=prefix, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_install_set_password_serve_upgrade_uninstall(scratch_root):
    root = scratch_root
    installed = dev("install", "--root", str(root), "--host", "192.0.2.10")
    assert "charon-systemd" in installed.stderr, "the packages the target needs are named"

    # The system user, in the vici group (charon's VICI socket group).
    user = entry(root, "passwd", "webui")
    assert user and user[5] == "/var/lib/webui" and user[6] == "/usr/sbin/nologin"
    uid, gid = int(user[2]), int(user[3])
    assert int(user[2]) < 1000, "a system user"
    assert "webui" in entry(root, "group", "vici")[3].split(",")

    # Code and venv under the prefix: root's, not writable by the service.
    prefix = root / "opt/webui"
    assert (prefix / "run.py").is_file() and (prefix / "webui/__init__.py").is_file()
    assert os.access(prefix / ".venv/bin/python", os.X_OK)
    for path in (prefix, prefix / "webui", prefix / "run.py"):
        st = path.stat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, f"{path} writable by others"
    assert list(prefix.glob("webui/__pycache__/*.pyc")), "compiled at install"

    # The data directory: the service's, private.
    data = root / "var/lib/webui"
    st = data.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o700)

    # The unit: Debian 12's strongSwan service, the prefix's paths; systemd finds nothing wrong.
    unit = (root / "etc/systemd/system/webui.service").read_text()
    assert "After=network-online.target strongswan.service" in unit
    assert "ExecStart=/opt/webui/.venv/bin/python /opt/webui/run.py --no-lab" in unit
    assert "Environment=WEBUI_DATA_DIR=/var/lib/webui" in unit
    verified = verify_unit(root)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    assert "WEBUI_HOST=192.0.2.10" in (root / "etc/default/webui").read_text()
    assert "group = vici" in (root / "etc/strongswan.d/webui-vici.conf").read_text()
    assert '"strongswan.service"' in (root / "etc/polkit-1/rules.d/50-webui.rules").read_text()

    # The password, before the first start, with the installed ./dev: the file is the service's.
    LEAKS.secrets.add(PASSWORD)
    env = dict(os.environ, WEBUI_DATA_DIR=str(data))
    dev("set-password", env=env, input=PASSWORD + "\n", cwd=prefix)
    password_file = data / "admin_password.json"
    st = password_file.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o600)

    # The first start, as the service's user, from the installed venv: that password signs in.
    port = free_port()
    server = serve_installed(root, uid, gid, port)
    try:
        browser = HttpBrowser(f"http://127.0.0.1:{port}")
        assert wait_for(lambda: _answers(port), timeout=30), server.stderr
        page = browser.login(PASSWORD)
        assert "/login" not in page.url and "change" not in page.url
    finally:
        server.terminate()
        server.wait(timeout=10)
    for file in data.iterdir():
        st = file.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o600), file

    # Upgrade: code replaced, pinned venv kept (same requirements), data and settings kept.
    (prefix / "webui/left_over.py").write_text("")
    with open(root / "etc/default/webui", "a") as f:
        f.write("WEBUI_IDLE_TIMEOUT_MINUTES=30\n")
    before = {f.name: f.read_bytes() for f in data.iterdir()}
    venv_python = (prefix / ".venv/bin/python").lstat().st_ino
    upgraded = dev("upgrade", "--root", str(root))
    assert "keeping the venv" in upgraded.stderr
    assert not (prefix / "webui/left_over.py").exists(), "the old code is replaced, not merged"
    assert (prefix / ".venv/bin/python").lstat().st_ino == venv_python
    assert {f.name: f.read_bytes() for f in data.iterdir()} == before
    assert "WEBUI_IDLE_TIMEOUT_MINUTES=30" in (root / "etc/default/webui").read_text()
    assert verify_unit(root).returncode == 0

    # Uninstall: unit and code gone; the data (peers and keys) and the user stay...
    dev("uninstall", "--root", str(root))
    assert not prefix.exists() and not (root / "etc/systemd/system/webui.service").exists()
    assert not (root / "etc/polkit-1/rules.d/50-webui.rules").exists()
    assert password_file.exists() and entry(root, "passwd", "webui")
    # ...until --purge.
    dev("uninstall", "--root", str(root), "--purge")
    assert not data.exists() and not (root / "etc/default/webui").exists()
    assert entry(root, "passwd", "webui") is None


def test_install_refuses_to_install_twice_and_to_upgrade_nothing(scratch_root):
    refused = subprocess.run([str(ROOT / "dev"), "upgrade", "--root", str(scratch_root)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "use ./dev install" in refused.stderr
    assert not (scratch_root / "opt").exists()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        time.sleep(0.1)
        return False
