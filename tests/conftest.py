"""Fixtures shared by unit and integration tests, and the run-wide watch for leaked secrets."""
from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import secrets
import shutil
from pathlib import Path

import pytest
from flask import request, request_finished
from jinja2 import BytecodeCache
from werkzeug.routing import Rule

from webui import create_app
from webui.atomic import write_atomic
from webui.auth import PASSWORD_FILE, Credentials, scrypt

ADMIN_PASSWORD = "Test-admin-passw0rd-Qx7"
# The scrypt cost of the tests' passwords: the lowest scrypt takes that still makes a real hash.
# The rules around the hash are the same at any cost (the file records it, checking reads it
# back); the tests marked `production_scrypt` keep the production cost and check it is the one set.
TEST_SCRYPT_N = 2**4



class LeakWatch(logging.Handler):
    """Watches the whole test run for secrets leaking: every log record of the run is kept, every
    response body and header is checked as it is sent. The secrets: admin passwords and PSKs the
    tests used, and, read from every data directory an app ran on, the session key, the password
    hash and every stored PSK. Checked after each test and once more when the run ends."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = {ADMIN_PASSWORD}
        self.data_dirs: list[Path] = []
        self.lines: list[str] = []
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)

    def watch(self, app) -> None:
        if Path(app.config["DATA_DIR"]) not in self.data_dirs:
            self.data_dirs.append(Path(app.config["DATA_DIR"]))
        request_finished.connect(self._check_response, app, weak=False)

    def all_secrets(self, data_dirs=None) -> set[str]:
        found = set(self.secrets)
        for data_dir in self.data_dirs if data_dirs is None else data_dirs:
            found |= secrets_in(data_dir)
        return {s for s in found if s}

    def _check_response(self, app, response, **extra) -> None:
        if response.direct_passthrough:  # a static file, sent from disk
            return
        body = response.get_data()
        if response.headers.get("Content-Encoding") == "gzip":  # webui/compress.py
            body = gzip.decompress(body)
        if _backup_with_keys(body):
            return  # the one answer meant to carry keys: asked for with the admin password
        text = body.decode(errors="replace") + str(response.headers)
        # This app's files and the tests' secrets; every data dir's would make the run quadratic.
        secrets = self.secrets | secrets_in(Path(app.config["DATA_DIR"]))
        for secret in (s for s in secrets if s and s in text):
            self.found.append(f"{response.status} response carries secret {secret[:4]}...")

    def leaking_lines(self, lines, data_dirs=None) -> list[str]:
        secrets = self.all_secrets(data_dirs)
        return [line for line in lines if any(s in line for s in secrets)]


def _backup_with_keys(body: bytes) -> bool:
    """A backup downloaded with "include pre-shared keys" (webui/blueprints/backup.py)."""
    if request.endpoint != "backup.download":
        return False
    try:
        return json.loads(body).get("keys_included") is True
    except ValueError:
        return False


def secrets_in(data_dir: Path) -> set[str]:
    """The session key, the password hash (as stored and in hex) and the PSKs kept in `data_dir`."""
    found = set()
    try:
        found.add((data_dir / "secret_key").read_text().strip())
    except FileNotFoundError:
        pass
    try:
        doc = json.loads((data_dir / PASSWORD_FILE).read_text())
        found |= {doc["hash"], base64.b64decode(doc["hash"]).hex()}
    except FileNotFoundError:
        pass
    try:
        peers = json.loads((data_dir / "peers.json").read_text()).get("peers", {})
        found |= {p["psk"] for p in peers.values()}
    except FileNotFoundError:
        pass
    return found


LEAKS = LeakWatch()


def pytest_configure(config):
    root = logging.getLogger()
    root.addHandler(LEAKS)
    root.setLevel(logging.DEBUG)


def pytest_sessionfinish(session, exitstatus):
    """The final scan: secrets a test learned late are looked for in every line of the run."""
    leaking = LEAKS.leaking_lines(LEAKS.lines) + LEAKS.found
    if leaking:
        print("\nSECRETS LEAKED into logs or responses:\n  " + "\n  ".join(l[:200] for l in leaking))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def valid_peer_form(**overrides) -> dict:
    """A form submission that passes every rule; tests change one thing at a time."""
    data = {
        "name": "branch-a", "local_id": "", "peer_id": "", "ike_version": "2",
        "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
        "local_networks": "198.51.100.0/24", "remote_networks": "203.0.113.0/24",
        "ike_encryption": ["aes256"], "ike_integrity": ["sha256"], "ike_dh_groups": ["curve25519"],
        "esp_encryption": ["aes256gcm16"], "esp_integrity": [], "esp_dh_groups": ["curve25519"],
        "psk": "correct-horse-battery-staple-42", "keying_retries": "3",
        "firewall": ["forward_lan", "forward_wan"], "enabled": "y",
    }
    data.update(overrides)
    if isinstance(data.get("psk"), str) and len(data["psk"]) >= 8:
        LEAKS.secrets.add(data["psk"])
    return {k: v for k, v in data.items() if v is not None}


class Browser:
    """A test client that behaves like a browser: keeps its session, sends the CSRF token.
    Signed in as the admin unless `login=False`."""

    def __init__(self, client, login: bool = True):
        self.client = client
        self._token = None
        if login:
            r = self.login()
            assert r.status_code == 303, f"could not sign in: {r.status_code}"

    def login(self, password: str = ADMIN_PASSWORD, user: str = "admin", next: str = ""):
        LEAKS.secrets.add(password)
        r = self.post("/login", {"user": user, "password": password, "next": next})
        self._token = None  # signing in starts a new session with a new token
        return r

    def token(self) -> str:
        if self._token is None:
            page = self.client.get("/login").get_data(as_text=True)
            m = CSRF_RE.search(page)
            assert m, "no CSRF token in the login form"
            self._token = m.group(1) or m.group(2)
        return self._token

    def get(self, url, htmx=False, **kw):
        return self.client.get(url, headers=self._headers(htmx), **kw)

    def post(self, url, data=None, htmx=False, **kw):
        data = dict(data or {})
        if not htmx:
            data.setdefault("csrf_token", self.token())
        return self.client.post(url, data=data, headers=self._headers(htmx, csrf=htmx), **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers=self._headers(True, csrf=True), **kw)

    def _headers(self, htmx, csrf=False):
        headers = {}
        if htmx:
            headers["HX-Request"] = "true"
        if csrf:
            headers["X-CSRFToken"] = self.token()
        return headers


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


class SharedBytecode(BytecodeCache):
    """Compiled templates shared by the run's many apps (each test builds its own): compiling them
    again per app was half the suite's time. Keyed by Jinja on name and source checksum."""

    def __init__(self):
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket):
        self.compiled[bucket.key] = bucket.bytecode_to_string()


BYTECODE = SharedBytecode()


def _share_url_builders() -> None:
    """Werkzeug compiles, for every URL rule of every new app, two small builder functions from a
    generated syntax tree: with ~50 rules and ~1000 apps a run, that was a third of the unit
    suite's time. The function depends only on the rule's parsed parts and defaults (it reads the
    rule's converters through its `self` argument when called), so apps with the same routes can
    share it. Routing and URL building themselves are unchanged."""
    original = Rule._compile_builder
    builders: dict[tuple, object] = {}

    def compile_builder(self, append_unknown=True):
        key = (self.rule, tuple(self._trace), append_unknown,
               tuple(sorted((k, repr(v)) for k, v in (self.defaults or {}).items())),
               tuple(sorted((k, type(c)) for k, c in self._converters.items())))
        if key not in builders:
            builders[key] = original(self, append_unknown)
        return builders[key]

    Rule._compile_builder = compile_builder


_share_url_builders()


def _share_parsed_rules() -> None:
    """Each app parses each of its URL rules again (Werkzeug's `Rule._parse_rule`, a regex walk
    that builds the rule's matching parts): a sixth of making an app, made ~1000 times a run. The
    parts depend only on the rule's text and the converter classes; what the walk also does to
    the rule (its trace, its arguments, its converters, made fresh for this app's map) is done
    again on every use. Routing itself is unchanged."""
    original = Rule._parse_rule
    parsed: dict[tuple, tuple] = {}

    def parse_rule(self, rule):
        key = (rule, tuple(sorted((k, c) for k, c in self.map.converters.items())))
        if key not in parsed:
            trace_before, arguments_before = len(self._trace), set(self.arguments)
            made = {}
            get_converter = self.get_converter

            def recording(variable, name, args, kwargs):
                made[variable] = (name, args, kwargs)
                return get_converter(variable, name, args, kwargs)
            self.get_converter = recording
            try:
                parts = list(original(self, rule))
            finally:
                del self.get_converter
            parsed[key] = (parts, self._trace[trace_before:], made,
                           self.arguments - arguments_before)
            return parts
        parts, trace, made, arguments = parsed[key]
        self._trace.extend(trace)
        for variable, (name, args, kwargs) in made.items():
            self._converters[variable] = self.get_converter(variable, name, args, kwargs)
        self.arguments.update(arguments)
        return list(parts)

    Rule._parse_rule = parse_rule


_share_parsed_rules()


@pytest.fixture(scope="session")
def password_file(tmp_path_factory) -> Path:
    """One hashed admin password for the whole run: scrypt is slow on purpose, tests copy it."""
    path = tmp_path_factory.mktemp("password") / PASSWORD_FILE
    # A cheaper scrypt cost than production (the file records its cost, and checking a password uses
    # the recorded one): every test signs in, and at full cost that alone would add seconds to the
    # run. test_auth checks that real passwords are set at the production cost.
    salt = secrets.token_bytes(16)
    write_atomic(path, Credentials(salt=salt, hash=scrypt(ADMIN_PASSWORD, salt, TEST_SCRYPT_N, 8, 1),
                                   n=TEST_SCRYPT_N, r=8, p=1).to_json())
    return path


@pytest.fixture
def make_app(data_dir, password_file):
    def make(**config):
        settings = {"TESTING": True, "DATA_DIR": str(data_dir), "DRIVER": "fake"}
        settings.update(config)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (data_dir / PASSWORD_FILE).exists():
            shutil.copy2(password_file, data_dir / PASSWORD_FILE)
        app = create_app(settings)
        app.jinja_env.bytecode_cache = BYTECODE
        LEAKS.watch(app)
        return app
    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def browser(app):
    return Browser(app.test_client())


@pytest.fixture
def anonymous(app):
    """A browser without a session (it can still fetch the login form's CSRF token)."""
    return Browser(app.test_client(), login=False)


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog):
    """Every test's log lines at DEBUG, so secret-leak tests can scan them; and after each test,
    its log lines and responses checked for secrets, so a leak fails the test that caused it."""
    caplog.set_level(logging.DEBUG)
    lines_before, found_before, dirs_before = len(LEAKS.lines), len(LEAKS.found), len(LEAKS.data_dirs)
    yield
    assert LEAKS.found[found_before:] == [], "a response carried a secret"
    # This test's apps only here (all of them at the end of the run, in pytest_sessionfinish).
    leaking = LEAKS.leaking_lines(LEAKS.lines[lines_before:], LEAKS.data_dirs[dirs_before:])
    assert leaking == [], "a log line carried a secret"
