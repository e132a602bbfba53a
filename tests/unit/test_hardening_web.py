"""Issue 17 in the web layer: server-side sessions, the login lockout, body caps, Host names, the
start-up warnings and the defence-in-depth items, on the fake driver."""
from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import ADMIN_PASSWORD, Browser, valid_peer_form
from tests.unit.test_login import Clock, wrong
from webui import serving
from webui.auth import PASSWORD_FILE, PasswordFile, PasswordFileError, Throttle, set_password_from
from webui.drivers import ConfigError, child_env
from webui.drivers import vici_messages as vm
from webui.peers import Peer


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def with_cookie(app, value) -> Browser:
    client = app.test_client()
    client.set_cookie("session", value)
    return Browser(client, login=False)


# --- 2. Sessions live on the server ---------------------------------------------------------------

def test_a_copied_cookie_is_refused_after_sign_out(app, browser, data_dir):
    copy = session_cookie(browser.client)
    assert with_cookie(app, copy).get("/").status_code == 200
    browser.post("/logout")
    thief = with_cookie(app, copy)
    assert thief.get("/").status_code == 303
    r = thief.client.post("/peers", data=valid_peer_form(name="sneaky"))
    assert r.status_code == 303 and r.headers["Location"].startswith("/login")
    assert "sneaky" not in (data_dir / "peers.json").read_text() if (data_dir / "peers.json").exists() else True


def test_a_session_ends_at_its_absolute_lifetime_however_busy(app, browser):
    auth = app.extensions["auth"]
    clock = auth.clock = Clock()
    browser.login()
    for _ in range(12 * 6):  # a request every 10 minutes for 12 hours
        clock.now += 10 * 60
        assert browser.get("/peers/new").status_code == 200
    clock.now += 60
    assert browser.get("/peers/new").status_code == 303


def test_the_configured_session_lifetime_holds_to_the_second(make_app):
    app = make_app(SESSION_LIFETIME_HOURS=1)
    clock = app.extensions["auth"].clock = Clock()
    browser = Browser(app.test_client())
    for _ in range(6):  # a request every 10 minutes for exactly one hour
        clock.now += 10 * 60
        assert browser.get("/peers/new").status_code == 200
    clock.now += 0.5
    assert browser.get("/peers/new").status_code == 303


def test_a_copied_cookie_is_refused_after_a_restart(make_app, app, browser):
    copy = session_cookie(browser.client)
    restarted = make_app()  # same data directory, same session key
    assert with_cookie(restarted, copy).get("/").status_code == 303


def test_sessions_stay_bounded(app):
    for _ in range(40):
        Browser(app.test_client())
    assert app.extensions["auth"].sessions_open() <= 32


# --- 3. Login lockout, body caps -------------------------------------------------------------------

def client_from(app, address) -> Browser:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return Browser(client, login=False)


def test_the_admin_signs_in_while_sixty_four_addresses_guess(app):
    app.extensions["auth"].throttle.clock = Clock()
    guessers = [client_from(app, f"198.51.100.{i}") for i in range(1, 65)]
    for _ in range(6):
        for guesser in guessers:
            wrong(guesser)
    assert wrong(guessers[0]).status_code == 429, "the guessers are held back"
    started = time.monotonic()
    admin = client_from(app, "192.0.2.200")
    assert admin.login().status_code == 303
    assert time.monotonic() - started < 2
    assert admin.get("/").status_code == 200
    # And the change-password form is not locked by the others' guessing.
    r = admin.post("/password", {"current": ADMIN_PASSWORD, "new": "a-new-long-passw0rd",
                                 "confirm": "a-new-long-passw0rd"})
    assert r.status_code == 303


def test_an_address_that_signed_in_before_is_not_held_by_others_guessing(app):
    app.extensions["auth"].throttle.clock = Clock()
    admin = client_from(app, "192.0.2.200")
    assert wrong(admin).status_code == 422  # a typo first
    assert admin.login().status_code == 303
    for i in range(1, 30):
        wrong(client_from(app, f"198.51.100.{i}"))
    assert wrong(client_from(app, "198.51.100.1")).status_code == 429
    again = client_from(app, "192.0.2.200")
    assert again.login().status_code == 303


def test_a_signed_in_admin_on_a_new_address_changes_the_password_while_others_guess(app):
    """The overall wait spares an admin already signed in, even from an address that is neither
    known nor free of failures (the laptop moved networks, then a typo)."""
    app.extensions["auth"].throttle.clock = Clock()
    admin = client_from(app, "192.0.2.200")
    assert admin.login().status_code == 303
    admin.client.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    change = {"current": ADMIN_PASSWORD, "new": "a-new-long-passw0rd", "confirm": "a-new-long-passw0rd"}
    assert admin.post("/password", {**change, "current": "not-the-password"}).status_code == 422
    for i in range(1, 30):
        wrong(client_from(app, f"198.51.100.{i}"))
    assert wrong(client_from(app, "198.51.100.1")).status_code == 429, "the guessers are held back"
    assert admin.post("/password", change).status_code == 303


def test_ipv6_addresses_count_by_their_64():
    throttle = Throttle(clock=Clock())
    for i in range(5):
        assert throttle.admit(f"2001:db8:1:2::{i + 1}") == 0
    assert throttle.admit("2001:db8:1:2:ffff::99") > 0, "the same /64, the same count"
    assert throttle.admit("2001:db8:1:3::1") == 0, "another /64 is another source"
    assert Throttle.source("::ffff:192.0.2.7") == "192.0.2.7"


def test_clients_whose_address_the_server_does_not_give_are_throttled_as_one_source(app):
    """WSGI lets a server leave REMOTE_ADDR empty (a Unix socket, some proxies): sign-in still
    works, and guesses still wait."""
    app.extensions["auth"].throttle.clock = Clock()
    assert [wrong(client_from(app, "")).status_code for _ in range(5)] == [422] * 5
    assert wrong(client_from(app, "")).status_code == 429
    assert client_from(app, "192.0.2.200").login().status_code == 303


def test_an_oversized_form_is_refused_with_413(anonymous, browser, data_dir):
    r = anonymous.client.post("/login", data={"user": "admin", "password": "x" * (200 * 1024)})
    assert r.status_code == 413
    r = browser.post("/peers", valid_peer_form(local_networks="10.0.0.0/24\n" * 10000), htmx=True)
    assert r.status_code == 413


def test_waitress_is_configured_for_a_router():
    options = serving.waitress_options(threads=4)
    assert options["max_request_body_size"] == options["inbuf_overflow"] == serving.MAX_BODY_BYTES
    assert options["connection_limit"] <= 32 and options["channel_timeout"] <= 30
    # Constructing waitress's own settings checks every name is one it knows.
    from waitress.adjustments import Adjustments
    Adjustments(**options)


# --- 4. TLS as the default, Host names -----------------------------------------------------------

@pytest.mark.parametrize("host,status", [("localhost", 200), ("127.0.0.1:8080", 200),
                                         ("[::1]:8080", 200), ("evil.example", 400),
                                         ("127.0.0.1.evil.example", 400)])
def test_only_trusted_host_names_are_answered(app, host, status):
    r = app.test_client().get("/login", headers={"Host": host})
    assert r.status_code == status


def test_the_bound_address_and_configured_names_are_trusted(make_app):
    app = make_app(TRUSTED_HOSTS="router.lan", BOUND_HOST="192.168.1.1")
    client = app.test_client()
    assert client.get("/login", headers={"Host": "router.lan"}).status_code == 200
    assert client.get("/login", headers={"Host": "192.168.1.1:8080"}).status_code == 200
    assert client.get("/login", headers={"Host": "localhost"}).status_code == 400
    anything = make_app(TRUSTED_HOSTS="*").test_client()
    assert anything.get("/login", headers={"Host": "whatever.example"}).status_code == 200


def test_behind_tls_the_cookie_is_secure_and_host_only(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True)
    client = app.test_client()
    client.get("/login")
    browser = Browser(client, login=False)
    r = browser.login()
    cookie = r.headers.get("Set-Cookie", "")
    assert cookie.startswith("__Host-session=") and "Secure" in cookie and "Domain" not in cookie


def test_start_up_warns_off_loopback_and_without_secure_cookies():
    assert serving.exposure_warnings("127.0.0.1", {"SESSION_COOKIE_SECURE": True}) == []
    assert serving.exposure_warnings("::1", {"SESSION_COOKIE_SECURE": False}) == []
    warnings = serving.exposure_warnings("192.168.1.1", {"SESSION_COOKIE_SECURE": False})
    assert len(warnings) == 2 and "plain HTTP" in warnings[0] and "Secure" in warnings[1]


# --- 6. Defence in depth -------------------------------------------------------------------------

def test_more_security_headers(anonymous):
    headers = anonymous.get("/login").headers
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_the_admin_password_leaves_the_environment(make_app, data_dir, monkeypatch):
    monkeypatch.setenv("WEBUI_ADMIN_PASSWORD", "Env-given-passw0rd-9")
    data_dir.mkdir(parents=True, mode=0o700)
    (data_dir / "marker").write_text("")  # make_app copies the test password file in: kept
    make_app()
    assert "WEBUI_ADMIN_PASSWORD" not in os.environ


def test_commands_get_a_minimal_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBUI_SECRET_KEY", "s" * 40)
    assert set(child_env()) == {"PATH", "LC_ALL"}
    from webui.drivers import strongswan
    driver = strongswan.ViciDriver(tmp_path / "x.vici", data_dir=tmp_path,
                                   restart_command=["sh", "-c", "env >&2; exit 3"])
    (step,) = driver.restart([])
    assert "WEBUI_SECRET_KEY" not in step.detail and "PATH=" in step.detail


def test_start_up_tidies_the_data_directory(make_app, data_dir, caplog):
    data_dir.mkdir(parents=True)
    os.chmod(data_dir, 0o755)
    (data_dir / "peers.json").write_text('{"peers": {}}')
    os.chmod(data_dir / "peers.json", 0o644)
    stale = data_dir / ".peers.json.abc123.tmp"
    stale.write_text("half a file")
    os.utime(stale, (time.time() - 3600,) * 2)
    make_app()
    assert os.stat(data_dir / "peers.json").st_mode & 0o777 == 0o600
    assert not stale.exists()
    assert "mode 755" in caplog.text


def test_a_short_session_key_is_refused(make_app):
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        make_app(SECRET_KEY="short")


def test_an_unreadable_password_file_says_what_to_do(app, browser, monkeypatch):
    from pathlib import Path
    real = Path.read_bytes

    def refuse(path):
        if path.name == PASSWORD_FILE:
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(Path, "read_bytes", refuse)
    password_file = app.extensions["auth"].password_file
    password_file._seen = None
    with pytest.raises(PasswordFileError, match="chown"):
        password_file.load()
    r = browser.get("/")
    assert r.status_code == 500 and b"chown" in r.data


def test_set_password_as_root_leaves_the_file_to_the_services_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, 4242, 4242)
    import io
    code = set_password_from(io.StringIO("A-fine-new-passw0rd\n"), io.StringIO(), data_dir)
    assert code == 0 and os.stat(data_dir / PASSWORD_FILE).st_uid == 4242


# Every key the product means to send in load-conn; `updown` (a script charon runs as root) is not.
CONN_KEYS = {"version", "local_addrs", "remote_addrs", "proposals", "keyingtries", "dpd_delay",
             "rekey_time", "reauth_time", "send_certreq", "local", "remote", "children", "encap",
             "mobike", "fragmentation", "aggressive"}
AUTH_KEYS = {"auth", "id"}
CHILD_KEYS = {"mode", "local_ts", "remote_ts", "esp_proposals", "rekey_time", "start_action",
              "dpd_action", "close_action"}


@pytest.mark.parametrize("options", [
    dict(), dict(ike_version=1, local_networks=("10.1.0.0/24", "10.2.0.0/24")),
    dict(ike_reauth=True, encap=True, disable_mobike=True, fragmentation="accept"),
    dict(ike_version=1, aggressive=True, peer_id="branch@example.org"),
    dict(remote_gateway="%any", peer_id="roaming.example", start_action="none"),
], ids=["default", "ikev1-pairs", "options", "aggressive", "any-gateway"])
def test_load_conn_sends_only_the_keys_it_means_to(options):
    peer = Peer(**{"name": "p", "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
                   "local_networks": ("198.51.100.0/24",), "remote_networks": ("203.0.113.0/24",),
                   "psk": "not-in-load-conn", **options})
    (conn,) = vm.load_conn(peer).values()
    assert set(conn) <= CONN_KEYS
    assert set(conn["local"]) == set(conn["remote"]) == AUTH_KEYS
    for child in conn["children"].values():
        assert set(child) <= CHILD_KEYS
    assert "updown" not in json.dumps(vm.load_conn(peer))
    assert "not-in-load-conn" not in json.dumps(vm.load_conn(peer))
    assert set(vm.load_shared(peer)) == {"id", "type", "data", "owners"}


def test_run_py_serves_with_the_router_limits_and_warns_off_loopback(tmp_path):
    """run.py itself, as a service manager starts it, on every address with the fake driver: it
    says INSECURE twice, serves the login page, and refuses an oversized body at its header."""
    import socket
    import subprocess
    import sys
    from pathlib import Path
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, WEBUI_DRIVER="fake", WEBUI_DATA_DIR=str(tmp_path / "data"),
               WEBUI_ADMIN_PASSWORD="Run-py-test-passw0rd")
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "run.py", "--no-lab", "--host", "0.0.0.0",
                               "--port", str(port)], cwd=root, env=env, stderr=subprocess.PIPE,
                              text=True)
    try:
        lines = []
        while not any("serving on" in line for line in lines):
            line = server.stderr.readline()
            assert line, "run.py stopped:\n" + "".join(lines)
            lines.append(line)
        log = "".join(lines)
        assert log.count("INSECURE") == 2 and "plain HTTP on 0.0.0.0" in log
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    assert s.recv(12) == b"HTTP/1.1 200"
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 104857600\r\n\r\n")
            assert s.recv(12) == b"HTTP/1.1 413"
    finally:
        server.terminate()
        server.wait(timeout=10)
