"""Integration fixtures: a real two-site lab (tests.lab) with real charons, shared by every
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

from tests.lab import Lab

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs root and real charons (tests.lab)")
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
    problem = preflight(the_lab)
    if problem:
        the_lab.stop()
        pytest.exit(problem, returncode=1)  # once, instead of every tunnel test timing out
    yield the_lab
    the_lab.stop()


# Every algorithm the integration tests' peers use (tests.conftest.valid_peer_form, the presets,
# the form tests): a charon without one of them brings no such tunnel up.
RELIED_ON = ("aes256", "aes128", "aes256gcm16", "aes128gcm16", "sha256", "sha1", "curve25519",
             "ecp256", "modp2048", "modp1024")


def preflight(the_lab, sites=("router", "remote")) -> str:
    """What the lab's charons lack of RELIED_ON, as one line naming plugin and package; "" if
    nothing."""
    from webui import capabilities
    from webui.drivers import strongswan, vici_messages
    for site in sites:
        supported = vici_messages.parse_algorithms(strongswan.call(the_lab.vici(site),
                                                                   "get-algorithms"))
        missing = [k for k in RELIED_ON if k not in supported]
        if missing:
            return (f"PREFLIGHT: the lab's {site} charon {capabilities.what_to_install(missing)}; "
                    "./dev test installs it")
    return ""


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


# --- The app, served for real, managing the lab router ------------------------------------------

import http.cookiejar  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

from waitress.server import create_server  # noqa: E402

from tests.conftest import ADMIN_PASSWORD, LEAKS  # noqa: E402
from tests import lab as lab_module  # noqa: E402

FIREWALL_TABLE = "webui_ipsec"


class Page:
    """One HTTP answer: status, final URL, headers and text."""

    def __init__(self, status, url, headers, text):
        self.status, self.url, self.headers, self.text = status, url, headers, text

    def __repr__(self):
        return f"<Page {self.status} {self.url}>"


class HttpBrowser:
    """A real HTTP client with a cookie jar: signs in, keeps its session, sends the CSRF token."""

    def __init__(self, base_url: str):
        self.base = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.csrf = ""

    def request(self, method, path, data=None, htmx=False) -> Page:
        headers = {"HX-Request": "true", "X-CSRFToken": self.csrf} if htmx else {}
        body = None
        if data is not None:
            if not htmx:
                data = dict(data, csrf_token=self.csrf)
            body = urllib.parse.urlencode(data, doseq=True).encode()
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=30) as r:
                return Page(r.status, r.url, r.headers, r.read().decode())
        except urllib.error.HTTPError as e:
            return Page(e.code, e.url, e.headers, e.read().decode())

    def get(self, path, htmx=False) -> Page:
        return self.request("GET", path, htmx=htmx)

    def post(self, path, data=None, htmx=False) -> Page:
        return self.request("POST", path, data or {}, htmx=htmx)

    def login(self, password=ADMIN_PASSWORD) -> Page:
        self.csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                              self.get("/login").text).group(1)
        page = self.post("/login", {"user": "admin", "password": password})
        assert page.status == 200 and not page.url.endswith("/login"), page
        self.csrf = re.search(r'"X-CSRFToken": "([^"]+)"', page.text).group(1)
        return page


class LiveApp:
    """The app under waitress on a loopback port, configured as run.py configures it for the lab."""

    def __init__(self, app, lab):
        self.app, self.lab = app, lab
        self.server = create_server(app, host="127.0.0.1", port=0, threads=4)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    @property
    def applier(self):
        return self.app.extensions["webui"]

    def browser(self) -> HttpBrowser:
        b = HttpBrowser(self.url)
        b.login()
        return b

    def close(self):
        if not self.thread.is_alive():
            return  # closed already
        # Close every channel from the server's own loop thread (closing from here races its
        # select() into EBADF); the loop ends when its map is empty.
        def stop():
            for channel in list(self.server._map.values()):
                channel.close()
        try:
            try:
                self.server.trigger.pull_trigger(stop)
            except OSError:
                pass  # EBADF: the loop is already closing its trigger, on its way out
            self.thread.join(timeout=5)
        finally:
            # Whatever happened above, the app's VICI listener must stop: left running, it loads
            # this test's peers into the next test's charon each time that charon restarts.
            self.server.task_dispatcher.shutdown()
            self.applier.drivers.ipsec.close()


@pytest.fixture
def serve(clean_lab, make_app):
    """Start the app against the lab router (the UI's firewall table removed first)."""
    clean_lab.exec("router", ["nft", "delete", "table", "inet", FIREWALL_TABLE])
    served = []

    def start(**config):
        settings = dict(lab_module.ui_config(clean_lab), STATUS_POLL_SECONDS=1)
        settings.update(config)
        live = LiveApp(make_app(**settings), clean_lab)
        served.append(live)
        return live

    yield start
    for live in served:
        live.close()


@pytest.fixture
def live(serve):
    return serve()


def peer_form(**overrides) -> dict:
    """A peer between the lab router and the lab's remote site."""
    from tests.conftest import valid_peer_form
    return valid_peer_form(**{"name": "site-b", **overrides})
