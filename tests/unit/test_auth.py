"""Auth over HTTP, for every route in the URL map (enumerated at test time, so new routes are covered
without touching this file): sign-in required, CSRF on every change, the security headers."""
from __future__ import annotations

import tempfile

import pytest

from tests.conftest import ADMIN_PASSWORD, Browser, valid_peer_form
from webui import create_app

# Written out here, not imported: the test states what the issue asks for.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_ENDPOINTS = {"static", "auth.login"}  # the only ones reachable without a session
PEER = "branch-a"
ARGUMENTS = {"name": PEER, "filename": "style.css", "token_id": "0badf00d", "verb": "connect"}


def enumerate_routes() -> list[tuple[str, str, str]]:
    """(method, rule, endpoint) for every rule of a freshly built app, HEAD/OPTIONS left out."""
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app({"DATA_DIR": data_dir, "DRIVER": "fake", "ADMIN_PASSWORD": ADMIN_PASSWORD})
        return sorted((method, rule.rule, rule.endpoint) for rule in app.url_map.iter_rules()
                      for method in rule.methods - {"HEAD", "OPTIONS"})


# The API (/api/v1) takes bearer tokens, never the session: tests/unit/test_api_auth.py walks it.
API_ROUTES = [r for r in enumerate_routes() if r[1].startswith("/api/")]
ROUTES = [r for r in enumerate_routes() if not r[1].startswith("/api/")]
IDS = [f"{method} {rule}" for method, rule, _ in ROUTES]
GUARDED = [r for r in ROUTES if r[2] not in OPEN_ENDPOINTS]


def url(rule: str) -> str:
    for name, value in ARGUMENTS.items():
        rule = rule.replace(f"<{name}>", value).replace(f"<path:{name}>", value)
    assert "<" not in rule, f"no test value for a variable in {rule}; add one to ARGUMENTS"
    return rule


def send(browser: Browser, method: str, rule: str, htmx: bool, csrf: bool = True, **kw):
    """`method` on the rule's URL, with the CSRF token (form field, or header for htmx) or without."""
    headers = {"HX-Request": "true"} if htmx else {}
    data = dict(kw.pop("data", {}))
    if method in CHANGING and csrf:
        if htmx:
            headers["X-CSRFToken"] = browser.token()
        else:
            data["csrf_token"] = browser.token()
    return browser.client.open(url(rule), method=method, headers=headers, data=data, **kw)


def sent_to_login(r) -> bool:
    return ((r.status_code in (302, 303) and r.headers["Location"].startswith("/login"))
            or r.status_code == 401)


@pytest.fixture
def with_peer(browser, data_dir):
    assert browser.post("/peers", valid_peer_form(name=PEER)).status_code == 303
    return browser


def test_routes_were_found():
    endpoints = {endpoint for _, _, endpoint in ROUTES}
    assert {"ipsec.index", "peers.create", "peers.delete", "commands.restart", "auth.logout"} <= endpoints


def test_only_static_and_login_are_open(app, anonymous):
    """Which routes answer without a session, found by asking every one of them."""
    open_endpoints = set()
    for method, rule, endpoint in ROUTES:
        for htmx in (False, True):
            if not sent_to_login(send(anonymous, method, rule, htmx)):
                open_endpoints.add(endpoint)
    assert open_endpoints == OPEN_ENDPOINTS


@pytest.mark.parametrize("method,rule,endpoint", GUARDED, ids=[f"{m} {r}" for m, r, _ in GUARDED])
def test_without_a_session_pages_redirect_and_htmx_gets_401(anonymous, method, rule, endpoint):
    page = send(anonymous, method, rule, htmx=False)
    assert page.status_code == 303
    assert page.headers["Location"].startswith("/login")
    if method == "GET" and url(rule) != "/":
        assert page.headers["Location"] == f"/login?next={url(rule)}"
    fragment = send(anonymous, method, rule, htmx=True)
    assert fragment.status_code == 401
    assert fragment.headers["HX-Redirect"].startswith("/login")


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("method,rule,endpoint", ROUTES, ids=IDS)
def test_with_a_session_every_route_works(with_peer, method, rule, endpoint, htmx):
    r = send(with_peer, method, rule, htmx)
    if endpoint == "auth.logout":
        assert r.status_code in (303, 200)
        assert sent_to_login(with_peer.get("/"))
        return
    assert not sent_to_login(r), r.headers.get("Location")
    assert r.status_code < 500 and r.status_code not in (400, 403, 405), r.status_code


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("method,rule,endpoint", [r for r in ROUTES if r[0] in CHANGING],
                         ids=[i for i, r in zip(IDS, ROUTES) if r[0] in CHANGING])
def test_changes_without_csrf_token_are_refused(with_peer, app, data_dir, method, rule, endpoint,
                                                htmx):
    files = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    loaded = dict(app.extensions["webui"].drivers.ipsec.loaded)
    form = valid_peer_form(name="sneaky", remote_networks="10.77.0.0/16")
    form.update({"user": "admin", "password": ADMIN_PASSWORD})
    r = send(with_peer, method, rule, htmx, csrf=False, data=form)
    assert r.status_code == 400
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == files
    assert app.extensions["webui"].drivers.ipsec.loaded == loaded
    assert with_peer.get("/").status_code == 200, "the session is still the same one"


@pytest.mark.parametrize("method,rule,endpoint", [r for r in ROUTES if r[0] == "GET"],
                         ids=[i for i, r in zip(IDS, ROUTES) if r[0] == "GET"])
def test_no_get_changes_anything(with_peer, app, data_dir, method, rule, endpoint):
    files = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    loaded = dict(app.extensions["webui"].drivers.ipsec.loaded)
    for htmx in (False, True):
        send(with_peer, method, rule, htmx)
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == files
    assert app.extensions["webui"].drivers.ipsec.loaded == loaded


def check_headers(r, static=False):
    for name, value in HEADERS.items():
        assert r.headers.get(name) == value, name
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    if static:
        assert "no-store" not in r.headers.get("Cache-Control", "")
        assert "max-age=31536000" in r.headers["Cache-Control"]
    else:
        assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method,rule,endpoint", ROUTES, ids=IDS)
def test_security_headers_on_every_response(with_peer, anonymous, method, rule, endpoint):
    for who in (anonymous, with_peer):
        for htmx in (False, True):
            check_headers(send(who, method, rule, htmx), static=endpoint == "static")


def test_security_headers_on_errors_and_versioned_static(browser):
    check_headers(browser.get("/no/such/page"))
    check_headers(browser.get("/peers/nobody/edit"))
    page = browser.get("/").get_data(as_text=True)
    asset = page.split('<link rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    assert "?v=" in asset
    check_headers(browser.get(asset), static=True)
