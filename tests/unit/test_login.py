"""Signing in and out: the password file, the first password, throttling, idle timeout, sessions."""
from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ADMIN_PASSWORD, LEAKS, Browser, valid_peer_form
from webui import create_app
from webui.auth import (PASSWORD_FILE, SCRYPT_N, SCRYPT_P, SCRYPT_R, PasswordFile, Throttle,
                        local_path, set_password_from)

ROOT = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "a-new-admin-passw0rd-Zz"


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def wrong(browser, password="wrong-password-123", user="admin"):
    return browser.post("/login", {"user": user, "password": password})


# --- The password file ---------------------------------------------------------------------------

@pytest.mark.production_scrypt
def test_password_file_holds_a_salted_scrypt_hash_only(tmp_path):
    first = PasswordFile(tmp_path / "a.json").set(NEW_PASSWORD)
    second = PasswordFile(tmp_path / "b.json").set(NEW_PASSWORD)
    assert (first.n, first.r, first.p) == (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**15, 8, 1)
    assert first.salt != second.salt and first.hash != second.hash
    raw = (tmp_path / "a.json").read_text()
    assert NEW_PASSWORD not in raw
    assert json.loads(raw)["algorithm"] == "scrypt"
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o600
    assert PasswordFile(tmp_path / "a.json").check("admin", NEW_PASSWORD)
    assert not PasswordFile(tmp_path / "a.json").check("admin", NEW_PASSWORD + "x")
    assert not PasswordFile(tmp_path / "a.json").check("root", NEW_PASSWORD)


def test_every_data_file_is_private(browser, data_dir):
    browser.post("/peers", valid_peer_form())
    browser.post("/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    LEAKS.secrets.add(NEW_PASSWORD)
    names = {p.name for p in data_dir.iterdir()}
    assert {PASSWORD_FILE, "secret_key", "peers.json"} <= names
    for path in data_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


# --- First start ---------------------------------------------------------------------------------

def test_first_start_prints_a_password_once_and_forces_a_change(tmp_path, capfd):
    settings = {"DATA_DIR": str(tmp_path), "DRIVER": "fake", "TESTING": True}
    app = create_app(settings)
    printed = capfd.readouterr().err
    generated = re.search(r"password (\S+)", printed).group(1)
    LEAKS.secrets.add(generated)
    assert printed == (f"webui: first start: sign in as admin with password {generated} "
                       "(you will be asked to change it)\n")
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", generated), "96 random bits, 16 characters to type"
    LEAKS.watch(app)
    create_app(settings)
    assert capfd.readouterr().err == "", "the password is printed only at the first start"

    browser = Browser(app.test_client(), login=False)
    r = browser.login(generated)
    assert r.status_code == 303
    assert browser.get("/").headers["Location"] == "/password"
    blocked = browser.get("/peers/new", htmx=True)
    assert blocked.status_code == 403 and blocked.headers["HX-Redirect"] == "/password"
    assert browser.post("/peers", valid_peer_form()).headers["Location"] == "/password"
    page = browser.get("/password").get_data(as_text=True)
    assert "generated at first start" in page

    same = browser.post("/password", {"current": generated, "new": generated, "confirm": generated})
    assert same.status_code == 422
    r = browser.post("/password", {"current": generated, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    LEAKS.secrets.add(NEW_PASSWORD)
    assert r.status_code == 303
    assert browser.get("/").status_code == 200
    assert wrong(Browser(app.test_client(), login=False), generated).status_code == 422


def test_admin_password_from_the_environment_is_taken_raw(tmp_path, monkeypatch, capfd):
    given = "1.5000000000"  # JSON would read this as the number 1.5
    LEAKS.secrets.add(given)
    monkeypatch.setenv("WEBUI_ADMIN_PASSWORD", given)
    app = create_app({"DATA_DIR": str(tmp_path), "DRIVER": "fake", "TESTING": True})
    assert "ADMIN_PASSWORD" not in app.config
    assert capfd.readouterr().err == ""
    browser = Browser(app.test_client(), login=False)
    assert browser.login(given).status_code == 303
    assert browser.get("/").status_code == 200, "a password the admin chose need not be changed"

    monkeypatch.setenv("WEBUI_ADMIN_PASSWORD", "another-one-entirely")
    again = create_app({"DATA_DIR": str(tmp_path), "DRIVER": "fake", "TESTING": True})
    assert Browser(again.test_client(), login=False).login(given).status_code == 303, \
        "the variable only sets the first password"


def test_a_first_password_from_the_configuration_is_taken_and_not_printed(tmp_path, capfd):
    given = "Config-given-passw0rd-7"
    LEAKS.secrets.add(given)
    app = create_app({"DATA_DIR": str(tmp_path), "DRIVER": "fake", "TESTING": True,
                      "ADMIN_PASSWORD": given})
    assert "ADMIN_PASSWORD" not in app.config
    assert capfd.readouterr().err == ""
    browser = Browser(app.test_client(), login=False)
    assert browser.login(given).status_code == 303
    assert browser.get("/").status_code == 200, "a password the admin chose need not be changed"


def test_set_password_command_reads_stdin(tmp_path):
    env = dict(os.environ, WEBUI_DATA_DIR=str(tmp_path))
    run = lambda text: subprocess.run([sys.executable, "run.py", "set-password"], cwd=ROOT, env=env,
                                      input=text, capture_output=True, text=True, timeout=60)
    LEAKS.secrets.add(NEW_PASSWORD)
    too_short = run("short\n")
    assert too_short.returncode == 1 and not (tmp_path / PASSWORD_FILE).exists()
    done = run(NEW_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert NEW_PASSWORD not in done.stderr + done.stdout
    assert PasswordFile(tmp_path / PASSWORD_FILE).check("admin", NEW_PASSWORD)
    assert stat.S_IMODE((tmp_path / PASSWORD_FILE).stat().st_mode) == 0o600


def test_set_password_signs_out_a_running_server(app, browser, data_dir):
    assert browser.get("/").status_code == 200
    LEAKS.secrets.add(NEW_PASSWORD)
    err = io.StringIO()
    assert set_password_from(io.StringIO(NEW_PASSWORD + "\n"), err, data_dir) == 0
    assert browser.get("/").headers["Location"] == "/login"
    assert Browser(app.test_client(), login=False).login(NEW_PASSWORD).status_code == 303


# --- Sessions ------------------------------------------------------------------------------------

def test_session_cookie_flags(make_app, monkeypatch):
    client = make_app().test_client()
    Browser(client)
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Strict" and not cookie.secure

    monkeypatch.setenv("WEBUI_SESSION_COOKIE_SECURE", "true")
    app = make_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    r = app.test_client().get("/login")
    assert "Secure" in r.headers["Set-Cookie"]


def test_logout_needs_post_and_ends_the_session(browser):
    assert browser.get("/logout").status_code == 405, "no link or image can sign the admin out"
    assert browser.get("/").status_code == 200
    r = browser.post("/logout")
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert browser.get("/").status_code == 303


def test_changing_the_password_ends_other_sessions(app, browser):
    other = Browser(app.test_client())
    LEAKS.secrets.add(NEW_PASSWORD)
    r = browser.post("/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert r.status_code == 303
    assert browser.get("/").status_code == 200, "the session that changed it carries on"
    assert other.get("/").headers["Location"] == "/login"
    assert other.get("/peers/states", htmx=True).status_code == 401
    assert wrong(Browser(app.test_client(), login=False), ADMIN_PASSWORD).status_code == 422


def test_wrong_current_password_changes_nothing(browser, data_dir):
    before = (data_dir / PASSWORD_FILE).read_bytes()
    r = browser.post("/password", {"current": "not-it-at-all", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert r.status_code == 422 and "not the current password" in r.get_data(as_text=True)
    r = browser.post("/password", {"current": ADMIN_PASSWORD, "new": "short", "confirm": "short"})
    assert r.status_code == 422
    assert (data_dir / PASSWORD_FILE).read_bytes() == before


def test_idle_session_ends_and_polling_does_not_keep_it(app, browser):
    clock = app.extensions["auth"].clock = Clock()
    browser.get("/")  # activity at t0, on the injected clock
    for minute in range(1, 15):
        clock.now += 60
        assert browser.get("/peers/states", htmx=True).status_code == 200
        assert browser.get("/commands/status", htmx=True).status_code == 200
    clock.now += 2 * 60  # 16 minutes after the last real request
    r = browser.get("/peers/states", htmx=True)
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/login")
    assert browser.get("/").status_code == 303


def test_an_ended_sessions_cookie_is_emptied_and_the_sign_in_page_offers_no_session(app, browser):
    clock = app.extensions["auth"].clock = Clock()
    browser.get("/")
    clock.now += 16 * 60
    assert browser.get("/").status_code == 303
    with browser.client.session_transaction() as stale:
        assert "user" not in stale and "sid" not in stale, "the ended session's id is not kept"
    page = browser.get("/login").get_data(as_text=True)
    assert "Sign out" not in page and "Change password" not in page and "API tokens" not in page


def test_activity_keeps_the_session(app, browser):
    clock = app.extensions["auth"].clock = Clock()
    browser.get("/")
    for _ in range(4):
        clock.now += 10 * 60
        assert browser.get("/peers/new").status_code == 200


def test_polled_endpoints_are_the_ones_templates_poll(app):
    """Every hx-get with an `every` trigger targets a view marked @polled, and no other is marked."""
    polled_in_templates = set()
    for template in Path(app.root_path, app.template_folder).rglob("*.html"):
        for tag in re.findall(r"<[^>]*hx-trigger=\"[^\"]*every[^>]*>", template.read_text()):
            polled_in_templates |= set(re.findall(r"hx-get=\"\{\{ url_for\('([\w.]+)'[,)]", tag))
    marked = {name for name, view in app.view_functions.items() if getattr(view, "polled", False)}
    assert polled_in_templates == marked == {"ipsec.states", "commands.status", "tunnel.now", "tunnel.history",
                                                 "tunnel.log"}


# --- next ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example", "https://evil.example/",
                                    "javascript:alert(1)", "evil", "/\r\nSet-Cookie:x", "",
                                    # a browser reads "///host" as "//host"; "//" alone is no path
                                    "///evil.example/", "//",
                                    # a backslash or an invisible character anywhere in it
                                    "/peers\\..\\evil", "/peers\u200b", "/peers\x7f"])
def test_next_must_be_a_local_path(anonymous, target):
    assert not local_path(target)
    r = anonymous.login(next=target)
    assert r.status_code == 303 and r.headers["Location"] == "/"


def test_next_brings_the_admin_back(anonymous):
    r = anonymous.get("/peers/new?x=1")
    assert r.headers["Location"] == "/login?next=/peers/new?x%3D1"
    assert local_path("/peers/new?x=1")
    assert anonymous.login(next="/peers/new?x=1").headers["Location"] == "/peers/new?x=1"


def test_a_parallel_anonymous_request_keeps_the_login_forms_token(anonymous):
    """A browser fetches /favicon.ico (or another tab reloads) while the login form is open."""
    token = anonymous.token()  # the login form's token, kept in the anonymous session
    assert anonymous.get("/favicon.ico").status_code in (303, 404)
    r = anonymous.post("/login", {"user": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"] == "/"


def test_htmx_request_goes_back_to_the_page_it_came_from(anonymous):
    r = anonymous.client.get("/commands/routes", headers={"HX-Request": "true",
                                                          "HX-Current-URL": "http://localhost/peers/new"})
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/login?next=/peers/new"


# --- Throttling ----------------------------------------------------------------------------------

def test_sixth_wrong_password_is_slowed_and_the_right_one_still_works(app, anonymous):
    clock = app.extensions["auth"].throttle.clock = Clock()
    for _ in range(5):
        assert wrong(anonymous).status_code == 422
    sixth = wrong(anonymous)
    assert sixth.status_code == 429
    wait = int(sixth.headers["Retry-After"])
    assert wait >= 2 and f"Try again in {wait} s" in sixth.get_data(as_text=True)
    assert anonymous.login().status_code == 429, "during the wait nobody is checked from here"
    clock.now += wait
    assert anonymous.login().status_code == 303
    assert anonymous.get("/").status_code == 200


def test_waits_grow_then_stop_growing(app, anonymous):
    clock = app.extensions["auth"].throttle.clock = Clock()
    waits = []
    for _ in range(14):
        r = wrong(anonymous)
        if r.status_code == 429:
            waits.append(int(r.headers["Retry-After"]))
            clock.now += waits[-1]
            assert wrong(anonymous).status_code == 422
    assert waits == [2, 4, 8, 16, 32, 64, 128, 256, 300]


def test_wrong_user_and_wrong_password_answer_alike(anonymous):
    by_user = wrong(anonymous, password=ADMIN_PASSWORD, user="root")
    by_password = wrong(anonymous, user="admin")
    assert by_user.status_code == by_password.status_code == 422
    message = "Wrong user name or password."
    assert message in by_user.get_data(as_text=True) and message in by_password.get_data(as_text=True)


def test_right_password_before_the_limit_resets_the_count(app, anonymous):
    app.extensions["auth"].throttle.clock = Clock()
    for _ in range(2):
        for _ in range(4):
            assert wrong(anonymous).status_code == 422
        assert anonymous.login().status_code == 303
    assert wrong(anonymous).status_code == 422


def test_many_addresses_are_throttled_overall(app):
    app.extensions["auth"].throttle.clock = Clock()

    def attempt(address):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return wrong(Browser(client, login=False))

    assert all(attempt(f"198.51.100.{i}").status_code == 422 for i in range(20))
    # Over the overall bound: an address that failed before waits; a new one gets one check.
    r = attempt("198.51.100.3")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) <= 30
    assert attempt("203.0.113.99").status_code == 422
    r = attempt("203.0.113.99")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) <= 30


def test_throttle_memory_is_bounded():
    throttle = Throttle(clock=Clock(), overall_free=10**9)
    for i in range(5000):
        throttle.admit(f"10.0.{i // 256}.{i % 256}")
    assert throttle.tracked_addresses() == 1024


def test_failures_are_forgotten_after_quiet():
    clock = Clock()
    throttle = Throttle(clock=clock)
    for _ in range(5):
        assert throttle.admit("a") == 0
    assert throttle.admit("a") == 2
    clock.now += 901
    assert throttle.admit("a") == 0


@pytest.mark.production_scrypt
def test_production_hash_cost_is_slow_enough_to_matter(tmp_path):
    started = time.perf_counter()
    PasswordFile(tmp_path / PASSWORD_FILE).set(NEW_PASSWORD)
    elapsed = time.perf_counter() - started
    assert elapsed > 0.005, f"scrypt at N=2^14, r=8 took only {elapsed * 1000:.1f} ms"
