"""The JSON API with the fake driver: the form's rules and messages, idempotent writes, tokens,
and every answer checked against the published OpenAPI document."""
from __future__ import annotations

import json
import logging

import jsonschema
import pytest

from tests.conftest import LEAKS, valid_peer_form
from tests.unit.test_validation import BAD
from webui.openapi import document

PEER = {
    "name": "branch-a", "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
    "local_networks": ["198.51.100.0/24"], "remote_networks": ["203.0.113.0/24"],
    "psk": "api-correct-horse-battery-staple-42",
}
LEAKS.secrets.add(PEER["psk"])


class Api:
    """An API client: a bearer token, JSON in and out, each answer checked against the document."""

    def __init__(self, client, token: str | None):
        self.client, self.token = client, token

    def __call__(self, method: str, path: str, body=None, headers=None, raw=None):
        all_headers = dict(headers or {})
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        kwargs = {"data": raw, "content_type": "application/json"} if raw is not None else (
            {"json": body} if body is not None else {})
        r = self.client.open(f"/api/v1{path}", method=method, headers=all_headers, **kwargs)
        check_against_document(method, path, r)
        return r


def check_against_document(method: str, path: str, r) -> None:
    """The answer's status is one the document lists for that operation, and its body fits."""
    doc = document()
    template = next((t for t in doc["paths"] if _matches(t, path.split("?")[0])), None)
    assert template, f"{path} is not in the OpenAPI document"
    operation = doc["paths"][template].get(method.lower())
    assert operation, f"{method} {template} is not in the OpenAPI document"
    response = operation["responses"].get(str(r.status_code))
    assert response, f"{method} {template} answered {r.status_code}, not in the document"
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(r.get_json(), dict(schema, components=doc["components"]),
                        cls=jsonschema.Draft202012Validator)


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b))


@pytest.fixture
def tokens(app):
    return app.extensions["tokens"]


@pytest.fixture
def api(app, tokens):
    _, text = tokens.create("tests", None)
    LEAKS.secrets.add(text)
    return Api(app.test_client(), text)


def stored(data_dir) -> bytes:
    path = data_dir / "peers.json"
    return path.read_bytes() if path.exists() else b""


# --- Peers -------------------------------------------------------------------------------------

def test_create_read_list_and_the_key_never_comes_back(api, app):
    r = api("POST", "/peers", PEER)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["changed"] is True
    got = api("GET", "/peers/branch-a").get_json()
    assert got["psk_set"] is True and "psk" not in got
    assert got["remote_networks"] == ["203.0.113.0/24"]
    assert got["ike_encryption"] == list(app.extensions["webui"].store.get("branch-a").ike_encryption)
    listed = api("GET", "/peers").get_json()
    assert [p["name"] for p in listed["peers"]] == ["branch-a"] and listed["total"] == 1
    assert PEER["psk"] not in json.dumps(listed)


def test_a_new_peer_takes_the_same_defaults_as_the_form(api, browser, app):
    """A peer made through the API without algorithms, retries or firewall choices equals one
    saved from the new-peer page exactly as it was pre-filled."""
    import re
    page = browser.get("/peers/new").get_data(as_text=True)
    ticked: dict[str, list[str]] = {}
    for tag in re.findall(r"<input[^>]*>", page):
        if re.search(r"\bchecked\b", tag) and 'type="checkbox"' in tag:
            name = re.search(r'name="([^"]+)"', tag).group(1)
            ticked.setdefault(name, []).append(re.search(r'value="([^"]+)"', tag).group(1))
    retries = re.search(r'<input[^>]*name="keying_retries"[^>]*>', page).group()
    # Its own peer ID: the same two IDs with another key would be refused (issue 17).
    form = valid_peer_form(name="by-form", remote_networks="10.9.0.0/16",
                           peer_id="by-form.example",
                           keying_retries=re.search(r'value="([^"]*)"', retries).group(1))
    for key in ("ike_encryption", "ike_integrity", "ike_dh_groups", "esp_encryption",
                "esp_integrity", "esp_dh_groups", "firewall"):
        form[key] = ticked.get(key, [])
    assert browser.post("/peers", form).status_code == 303
    assert api("POST", "/peers", PEER).status_code == 201
    store = app.extensions["webui"].store
    by_form, by_api = store.get("by-form"), store.get("branch-a")
    for key in ("ike_version", "ike_encryption", "ike_integrity", "ike_dh_groups", "esp_encryption",
                "esp_integrity", "esp_dh_groups", "keying_retries", "firewall", "enabled"):
        assert getattr(by_api, key) == getattr(by_form, key), key


def test_list_is_paged_and_filtered_like_the_table(api):
    for i in range(5):
        body = dict(PEER, name=f"site-{i}", remote_networks=[f"10.{i}.0.0/16"])
        assert api("POST", "/peers", body).status_code == 201
    page = api("GET", "/peers?per_page=2&page=2").get_json()
    assert [p["name"] for p in page["peers"]] == ["site-2", "site-3"]
    assert (page["page"], page["pages"], page["total"]) == (2, 3, 5)
    assert [p["name"] for p in api("GET", "/peers?q=10.4.").get_json()["peers"]] == ["site-4"]


def test_put_of_an_unchanged_peer_changes_nothing(api, app, data_dir):
    assert api("PUT", "/peers/branch-a", PEER).status_code == 201
    before = stored(data_dir)
    calls = list(app.extensions["webui"].drivers.ipsec.calls)
    r = api("PUT", "/peers/branch-a", PEER)
    assert r.status_code == 200 and r.get_json()["changed"] is False
    assert stored(data_dir) == before
    assert app.extensions["webui"].drivers.ipsec.calls == calls, "nothing reloaded into charon"
    # What GET shows can be sent back as it is (psk_set included) and is no change either.
    shown = api("GET", "/peers/branch-a").get_json()
    assert api("PUT", "/peers/branch-a", shown).get_json()["changed"] is False


def test_put_replaces_the_whole_peer(api, app):
    api("PUT", "/peers/branch-a", dict(PEER, keying_retries=7, firewall=["input"]))
    r = api("PUT", "/peers/branch-a", PEER)  # fields left out go back to the defaults
    assert r.get_json()["changed"] is True
    peer = app.extensions["webui"].store.get("branch-a")
    assert peer.keying_retries == 3 and peer.firewall == ("forward_lan", "forward_wan")
    assert peer.psk == PEER["psk"]


def test_put_name_must_match_the_url(api, data_dir):
    before = stored(data_dir)
    r = api("PUT", "/peers/branch-a", dict(PEER, name="other"))
    assert r.status_code == 422 and "name" in r.get_json()["errors"]
    assert stored(data_dir) == before


def test_patch_changes_only_the_fields_given_and_keeps_the_key(api, app):
    api("POST", "/peers", dict(PEER, keying_retries=5))
    r = api("PATCH", "/peers/branch-a", {"enabled": False})
    assert r.status_code == 200 and r.get_json()["changed"] is True
    peer = app.extensions["webui"].store.get("branch-a")
    assert peer.enabled is False and peer.keying_retries == 5 and peer.psk == PEER["psk"]
    assert api("PATCH", "/peers/branch-a", {"enabled": False}).get_json()["changed"] is False
    new_key = "api-rotated-key-0123456789-abcdef"
    LEAKS.secrets.add(new_key)
    assert api("PATCH", "/peers/branch-a", {"psk": new_key}).get_json()["changed"] is True
    assert app.extensions["webui"].store.get("branch-a").psk == new_key


def test_patch_renames(api, app):
    api("POST", "/peers", PEER)
    r = api("PATCH", "/peers/branch-a", {"name": "branch-b"})
    assert r.status_code == 200 and r.get_json()["peer"]["name"] == "branch-b"
    store = app.extensions["webui"].store
    assert store.get("branch-a") is None and store.get("branch-b").psk == PEER["psk"]


def test_delete(api, app):
    api("POST", "/peers", PEER)
    assert api("DELETE", "/peers/branch-a").get_json() == {"changed": True}
    assert app.extensions["webui"].store.get("branch-a") is None
    assert "branch-a" not in app.extensions["webui"].drivers.ipsec.loaded
    assert api("DELETE", "/peers/branch-a").status_code == 404
    assert api("GET", "/peers/branch-a").status_code == 404
    assert api("PATCH", "/peers/branch-a", {"enabled": True}).status_code == 404


# --- Bad input: the form's table, the form's messages -------------------------------------------

def as_json(name: str, value):
    """A value of the form's bad-input table as an API client would send it."""
    if name in ("local_networks", "remote_networks"):
        import re
        return [item for item in re.split(r"[,\n]", value)] if value else []
    if name in ("ike_version", "keying_retries"):
        try:
            return int(value)
        except ValueError:
            return value
    return value


@pytest.mark.parametrize("what,name,value,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_422_with_the_forms_message_for_the_field(api, browser, data_dir, what,
                                                                  name, value, field):
    existing = dict(PEER, name="existing", remote_gateway="192.0.2.9",
                    remote_networks=["10.99.0.0/16"])
    assert api("POST", "/peers", existing).status_code == 201
    before = stored(data_dir)
    body = dict(PEER, **{name: as_json(name, value)})
    if what == "ikev1 with aead":
        body["ike_encryption"] = ["aes256gcm16"]
    r = api("POST", "/peers", body)
    assert r.status_code == 422, r.get_json()
    errors = r.get_json()["errors"]
    assert field in errors, errors
    assert stored(data_dir) == before
    # The same message as the form's, where the value could be posted by the form as it is.
    form = valid_peer_form(**{name: value})
    if what == "ikev1 with aead":
        form["ike_encryption"] = ["aes256gcm16"]
    page = browser.post("/peers", form, htmx=True).get_data(as_text=True)
    from webui.peer_json import shape_errors
    if field not in shape_errors(body):  # a JSON value of the wrong type has no form message
        for message in errors[field]:
            assert _html(message) in page, message


def _html(text: str) -> str:
    from markupsafe import escape
    return str(escape(text))


def test_unknown_fields_and_wrong_types_are_refused(api, data_dir):
    before = stored(data_dir)
    r = api("POST", "/peers", dict(PEER, dpd="30s", colour="blue"))
    assert r.status_code == 422
    assert set(r.get_json()["errors"]) == {"dpd", "colour"}
    r = api("POST", "/peers", dict(PEER, enabled="yes", remote_networks="203.0.113.0/24"))
    assert set(r.get_json()["errors"]) == {"enabled", "remote_networks"}
    r = api("POST", "/peers", ["not", "an", "object"])
    assert r.status_code == 422
    r = api("POST", "/peers", raw="{not json")
    assert r.status_code == 400
    assert stored(data_dir) == before


def test_missing_required_fields_are_named(api):
    r = api("POST", "/peers", {"name": "lonely"})
    assert r.status_code == 422
    assert set(r.get_json()["errors"]) == {"local_ip", "remote_gateway", "local_networks",
                                           "remote_networks", "psk"}


def test_a_refusal_by_strongswan_comes_back_at_its_field(api, app, data_dir, monkeypatch):
    from webui.drivers import CommandFailed
    ipsec = app.extensions["webui"].drivers.ipsec

    def refuse(peer, previous_name=None):
        raise CommandFailed("invalid value for: esp_proposals", field="esp_encryption")
    monkeypatch.setattr(ipsec, "apply", refuse)
    r = api("POST", "/peers", PEER)
    assert r.status_code == 422
    assert "esp_encryption" in r.get_json()["errors"]
    assert app.extensions["webui"].store.get("branch-a") is None


# --- Tunnels and quick commands -----------------------------------------------------------------

def test_status_actions_and_quick_commands(api):
    api("POST", "/peers", PEER)
    status = api("GET", "/status").get_json()
    # The status cells' own state model (webui/status.py): never up yet is waiting, not down.
    assert (status["peers"]["branch-a"]["state"], status["peers"]["branch-a"]["label"]) == \
        ("waiting", "waiting for the other side")
    for verb in ("connect", "disconnect", "rekey"):
        r = api("POST", f"/peers/branch-a/{verb}")
        assert r.status_code == 200 and "branch-a" in r.get_json()["message"]
    assert api("POST", "/peers/nobody/connect").status_code == 404
    steps = api("POST", "/ipsec/restart").get_json()
    assert steps["ok"] is True and steps["steps"]
    assert api("GET", "/ipsec/status").get_json()["connections"][0]["name"] == "branch-a"
    assert "wan0" in [i["name"] for i in api("GET", "/interfaces").get_json()["interfaces"]]
    assert api("GET", "/routes").get_json()["routes"]
    api("PATCH", "/peers/branch-a", {"enabled": False})
    assert api("GET", "/status").get_json()["peers"]["branch-a"]["state"] == "disabled"


def test_driver_down_is_503_not_500(make_app, tokens):
    app = make_app(FAKE_FAIL=True)
    _, text = app.extensions["tokens"].create("t", None)
    LEAKS.secrets.add(text)
    down = Api(app.test_client(), text)
    assert down("GET", "/ipsec/status").status_code == 503
    assert down("POST", "/peers", PEER).status_code == 201  # saved; applied when charon is back
    assert down("GET", "/peers/branch-a").get_json()["psk_set"] is True


# --- Tokens -------------------------------------------------------------------------------------

def test_a_revoked_token_is_refused_at_once(api, tokens):
    assert api("GET", "/peers").status_code == 200
    token = next(t for t in tokens.all() if t.name == "tests")
    tokens.revoke(token.id)
    r = api("GET", "/peers")
    assert r.status_code == 401 and "revoked" in r.get_json()["error"]


def test_an_expired_token_is_refused(app, tokens):
    now = [1_000_000.0]
    tokens.clock = lambda: now[0]
    _, text = tokens.create("short", 1)
    LEAKS.secrets.add(text)
    client = Api(app.test_client(), text)
    assert client("GET", "/peers").status_code == 200
    now[0] += 86400
    assert client("GET", "/peers").status_code == 401


def test_tokens_are_kept_hashed_and_private(app, tokens, data_dir):
    _, text = tokens.create("kept", 30)
    LEAKS.secrets.add(text)
    path = data_dir / "api_tokens.json"
    assert text.split(".")[2] not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    assert tokens.check(text).name == "kept"
    assert tokens.check(text[:-1] + ("A" if text[-1] != "A" else "B")) is None


def test_bad_tokens_are_throttled_like_bad_passwords(app):
    client = Api(app.test_client(), "wui1.00000000.wrong")
    statuses = [client("GET", "/peers").status_code for _ in range(8)]
    assert statuses[:5] == [401] * 5
    assert 429 in statuses[5:]
    r = client("GET", "/peers")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_changes_are_logged_with_the_token_name_never_the_token(api, caplog):
    api("POST", "/peers", PEER)
    api("PATCH", "/peers/branch-a", {"keying_retries": 9})
    api("DELETE", "/peers/branch-a")
    lines = [r.getMessage() for r in caplog.records if r.name == "webui.blueprints.api"]
    assert lines == ["API token 'tests': created peer branch-a", "API token 'tests': changed peer branch-a",
                     "API token 'tests': deleted peer branch-a"]
    assert not any(api.token in line or PEER["psk"] in line for line in caplog.messages)


def test_the_tokens_page_makes_shows_once_and_revokes(browser, tokens):
    r = browser.post("/tokens", {"name": "ansible", "days": "30"})
    assert r.status_code == 201
    page = r.get_data(as_text=True)
    token = next(t for t in tokens.all() if t.name == "ansible")
    import re
    text = re.search(r'id="new-token">([^<]+)<', page).group(1)
    LEAKS.secrets.add(text)
    assert tokens.check(text).name == "ansible"
    listing = browser.get("/tokens").get_data(as_text=True)
    assert "ansible" in listing and text not in listing
    assert browser.post(f"/tokens/{token.id}/revoke").status_code == 303
    assert tokens.check(text) is None
    assert browser.post("/tokens", {"name": ""}).status_code == 422
    assert browser.post("/tokens", {"name": "x", "days": "0"}).status_code == 422


def test_the_document_describes_every_api_route(app):
    doc = document()
    jsonschema.Draft202012Validator.check_schema(doc["components"]["schemas"]["Peer"])
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = rule.rule.removeprefix("/api/v1").replace("<name>", "{name}")
        assert path in doc["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], f"{method} {path}"


def test_the_document_follows_the_form(app):
    """A field added to the form appears in the document without touching it."""
    from webui.forms import PeerForm
    peer = document()["components"]["schemas"]["Peer"]["properties"]
    form_fields = {name for name in vars(PeerForm) if not name.startswith("_")
                   and hasattr(getattr(PeerForm, name), "field_class")}
    # save_anyway is the web form's answer to a warning (issue 18), not a property of a peer.
    assert form_fields - {"psk", "save_anyway"} <= set(peer)


@pytest.fixture(autouse=True)
def _quiet_werkzeug():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


# --- Advanced options (issue 15) ---------------------------------------------------------------

def test_advanced_options_travel_through_the_api_with_the_forms_rules(api, app, data_dir):
    from tests.unit.test_validation import BAD_ADVANCED
    from webui.peers import ADVANCED_DEFAULTS
    assert api("POST", "/peers", PEER).status_code == 201
    got = api("GET", "/peers/branch-a").get_json()
    assert {k: got[k] for k in ADVANCED_DEFAULTS} == ADVANCED_DEFAULTS  # left out: today's
    published = document()["components"]["schemas"]["Peer"]["properties"]["child_rekey_time"]
    assert (published["minimum"], published["maximum"]) == (60, 86400)
    changes = {"remote_gateway": "any", "peer_id": "branch.example", "start_action": "none",
               "dpd_action": "clear", "dpd_delay": 10, "child_rekey_time": 120, "encap": True,
               "disable_mobike": True, "fragmentation": "accept"}
    r = api("PATCH", "/peers/branch-a", changes)
    assert r.status_code == 200, r.get_json()
    shown = api("GET", "/peers/branch-a").get_json()
    assert {k: shown[k] for k in changes} == dict(changes, remote_gateway="%any")
    assert api("PUT", "/peers/branch-a", shown).get_json()["changed"] is False
    before = stored(data_dir)
    for what, bad, field in BAD_ADVANCED:
        body = {k: (int(v) if v.lstrip("-").isdigit() and k.endswith(("_delay", "_time")) else
                    True if v == "y" else v) for k, v in bad.items()}
        if any(k.endswith(("_delay", "_time")) and not isinstance(v, int) for k, v in body.items()):
            continue  # not an integer: refused by the JSON shape check, not by the form
        r = api("PUT", "/peers/branch-a", dict(PEER, **body))
        assert r.status_code == 422 and field in r.get_json()["errors"], what
    assert stored(data_dir) == before


def test_unknown_api_urls_and_methods_answer_json_not_the_login_page(app, api):
    for method, path, status in (("GET", "/nothing-here", 404), ("DELETE", "/peers", 405),
                                 ("GET", "/peers/", 404), ("POST", "/nothing", 404)):
        r = app.test_client().open(f"/api/v1{path}", method=method,
                                   headers={"Authorization": f"Bearer {api.token}"})
        assert r.status_code == status, (method, path, r.status_code)
        assert r.is_json and r.get_json()["error"]
    anonymous = app.test_client().get("/api/v1/nothing-here")
    assert anonymous.status_code == 401 and anonymous.is_json


def test_json_nested_too_deep_is_400_not_500(api):
    r = api("POST", "/peers", raw="[" * 5000 + "]" * 5000)
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]


def test_an_easy_key_is_saved_with_a_warning(api):
    weak = "zqzqzqzqzqzqzqzqzqzqzqzq"
    LEAKS.secrets.add(weak)
    r = api("POST", "/peers", dict(PEER, psk=weak))
    assert r.status_code == 201
    assert "guessed" in r.get_json()["warnings"]["psk"][0]
    hexish = "0x00112233445566778899aabbccddeeff"
    LEAKS.secrets.add(hexish)
    r = api("PATCH", "/peers/branch-a", {"psk": hexish})
    assert "hex" in r.get_json()["warnings"]["psk"][0]
    assert api("PATCH", "/peers/branch-a", {"psk": PEER["psk"]}).get_json()["warnings"] == {}


def test_backup_has_no_keys_and_restore_checks_then_applies(api, app, data_dir):
    api("POST", "/peers", PEER)
    doc = api("GET", "/backup").get_json()
    assert doc["keys_included"] is False and PEER["psk"] not in json.dumps(doc)
    assert [p["name"] for p in doc["peers"]] == ["branch-a"]
    # The same file again changes nothing and writes nothing.
    before = stored(data_dir)
    r = api("POST", "/restore", doc)
    assert r.status_code == 200 and r.get_json()["changed"] is False
    assert stored(data_dir) == before
    # A second peer in the file: a dry run says so and writes nothing; then it is restored.
    second = dict(doc["peers"][0], name="branch-b", remote_networks=["10.5.0.0/16"],
                  peer_id="b.example")
    doc2 = dict(doc, peers=doc["peers"] + [second])
    r = api("POST", "/restore?dry_run=true", doc2)
    assert r.get_json()["changes"][0]["name"] == "branch-b" and r.get_json()["dry_run"] is True
    assert stored(data_dir) == before
    r = api("POST", "/restore", doc2)
    assert r.status_code == 200 and r.get_json()["changed"] is True
    restored = app.extensions["webui"].store.get("branch-b")
    assert restored is not None and restored.enabled is False, "no key anywhere: saved disabled"
    assert app.extensions["webui"].store.get("branch-a").psk == PEER["psk"], "the stored key kept"
    # Replace with the first file: branch-b goes.
    r = api("POST", "/restore?mode=replace", doc)
    assert [c["kind"] for c in r.get_json()["changes"]] == ["removed"]
    assert app.extensions["webui"].store.get("branch-b") is None


def test_a_bad_backup_changes_nothing_and_names_each_problem(api, data_dir):
    api("POST", "/peers", PEER)
    before = stored(data_dir)
    doc = api("GET", "/backup").get_json()
    doc["peers"][0]["remote_networks"] = ["203.0.113.1/24"]
    r = api("POST", "/restore", doc)
    assert r.status_code == 422
    assert any("host bits" in p["message"] for p in r.get_json()["problems"])
    assert api("POST", "/restore", raw="not json").status_code == 422
    assert api("POST", "/restore?mode=everything", doc).status_code == 400
    assert stored(data_dir) == before


def test_status_as_of_is_when_its_counters_were_listed(api, app, monkeypatch):
    """Not when charon last answered a check: bytes and as_of must go together for a rate."""
    from webui.drivers import StateSnapshot, TunnelState
    api("POST", "/peers", PEER)
    snap = StateSnapshot(version=3, tunnels={"branch-a": TunnelState("branch-a", "up", bytes_in=7)},
                         loaded=frozenset({"branch-a"}), confirmed_at=2000.0,
                         listed_at={"branch-a": 1990.0})
    monkeypatch.setattr(app.extensions["webui"].drivers.ipsec, "snapshot", lambda: snap)
    status = api("GET", "/status").get_json()
    assert status["as_of"] == 1990.0 and status["peers"]["branch-a"]["bytes_in"] == 7
