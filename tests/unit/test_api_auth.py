"""The API's door, for every /api route in the URL map (enumerated, so routes added later are
covered): no token, no entry; the admin's session cookie opens nothing; no GET changes anything;
the security headers on every answer."""
from __future__ import annotations

import pytest

from tests.conftest import LEAKS
from tests.unit.test_auth import API_ROUTES, HEADERS, PEER, url

IDS = [f"{method} {rule}" for method, rule, _ in API_ROUTES]
BODY = {"name": PEER, "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
        "local_networks": ["198.51.100.0/24"], "remote_networks": ["203.0.113.0/24"],
        "psk": "api-auth-correct-horse-battery-42"}
LEAKS.secrets.add(BODY["psk"])


def test_the_api_routes_were_found():
    rules = {rule for _, rule, _ in API_ROUTES}
    assert {"/api/v1/peers", "/api/v1/peers/<name>", "/api/v1/ipsec/restart", "/api/v1/status",
            "/api/v1/openapi.json"} <= rules


@pytest.fixture
def token(app):
    _, text = app.extensions["tokens"].create("walker", None)
    LEAKS.secrets.add(text)
    return text


@pytest.fixture
def with_peer(app, token):
    r = app.test_client().post("/api/v1/peers", json=BODY, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.get_json()
    return token


def call(client, method, rule, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.open(url(rule), method=method, headers=headers, **kw)


@pytest.mark.parametrize("method,rule,endpoint", API_ROUTES, ids=IDS)
def test_without_a_token_every_endpoint_answers_401(app, method, rule, endpoint):
    r = call(app.test_client(), method, rule, json={})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in r.get_json()["error"]


@pytest.mark.parametrize("method,rule,endpoint", API_ROUTES, ids=IDS)
def test_the_admins_session_cookie_alone_opens_nothing(browser, app, data_dir, method, rule,
                                                       endpoint):
    """Signed in as the admin in this very client, CSRF token and all: still 401."""
    files = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    headers = {"X-CSRFToken": browser.token(), "HX-Request": "true"}
    r = browser.client.open(url(rule), method=method, headers=headers, json=BODY)
    assert r.status_code == 401
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == files
    assert browser.get("/").status_code == 200, "the admin's session itself still works"


@pytest.mark.parametrize("method,rule,endpoint", API_ROUTES, ids=IDS)
def test_with_a_token_every_endpoint_works_without_csrf(app, with_peer, method, rule, endpoint):
    r = call(app.test_client(), method, rule, with_peer,
             json={"keying_retries": 4} if method == "PATCH" else BODY if method in ("PUT", "POST") else None)
    assert r.status_code < 500 and r.status_code not in (400, 401, 403, 405), (r.status_code, r.get_json())


@pytest.mark.parametrize("method,rule,endpoint", [r for r in API_ROUTES if r[0] == "GET"],
                         ids=[i for i, r in zip(IDS, API_ROUTES) if r[0] == "GET"])
def test_no_api_get_changes_anything(app, data_dir, with_peer, method, rule, endpoint):
    # api_tokens.json may record the token's last use; that is bookkeeping, not configuration.
    files = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.name != "api_tokens.json"}
    loaded = dict(app.extensions["webui"].drivers.ipsec.loaded)
    call(app.test_client(), method, rule, with_peer)
    assert {p.name: p.read_bytes() for p in data_dir.iterdir() if p.name != "api_tokens.json"} == files
    assert app.extensions["webui"].drivers.ipsec.loaded == loaded


@pytest.mark.parametrize("method,rule,endpoint", API_ROUTES, ids=IDS)
def test_security_headers_on_every_api_answer(app, with_peer, method, rule, endpoint):
    for token in (None, with_peer):
        r = call(app.test_client(), method, rule, token)
        for name, value in HEADERS.items():
            assert r.headers.get(name) == value, name
        assert r.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in r.headers, "the API never starts a session"
