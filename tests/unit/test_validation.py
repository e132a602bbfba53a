"""Bad input: a clear message next to the field, a 4xx, and the store byte-for-byte unchanged."""
from __future__ import annotations

import re

import pytest

from tests.conftest import Browser, valid_peer_form

LONG = "a" * 300

# (what, field changed, value, field whose message must show)
BAD = [
    ("empty name", "name", "", "name"),
    ("name starts with digit", "name", "1site", "name"),
    ("name with space", "name", "site a", "name"),
    ("name with newline", "name", "site\nb", "name"),
    ("name with quote", "name", 'site"b', "name"),
    ("name with brace", "name", "site{b}", "name"),
    ("name with hash", "name", "site#b", "name"),
    ("name with equals", "name", "site=b", "name"),
    ("name too long", "name", "a" * 33, "name"),
    ("name non-ascii", "name", "sité", "name"),
    ("duplicate name", "name", "existing", "name"),
    ("duplicate name other case", "name", "EXISTING", "name"),
    ("local id with space", "local_id", "my id", "local_id"),
    ("local id with quote", "local_id", 'a"b.example', "local_id"),
    ("local id with brace", "local_id", "{evil}", "local_id"),
    ("local id with newline", "local_id", "a.example\nb", "local_id"),
    ("local id with hash", "local_id", "a#b", "local_id"),
    ("local id with equals", "local_id", "a=b", "local_id"),
    ("peer id control char", "peer_id", "a\x01b.example", "peer_id"),
    ("peer id oversize", "peer_id", LONG, "peer_id"),
    ("peer id non-ascii", "peer_id", "vpn.bücher.example", "peer_id"),
    ("peer id bad email", "peer_id", "@example.com", "peer_id"),
    ("ike version 3", "ike_version", "3", "ike_version"),
    ("local ip not ip", "local_ip", "router", "local_ip"),
    ("local ip empty", "local_ip", "", "local_ip"),
    ("local ip with prefix", "local_ip", "192.0.2.1/24", "local_ip"),
    ("gateway bad", "remote_gateway", "not a host!", "remote_gateway"),
    ("gateway family mismatch", "remote_gateway", "2001:db8::2", "remote_gateway"),
    ("gateway equals local", "remote_gateway", "192.0.2.1", "remote_gateway"),
    ("gateway oversize", "remote_gateway", ("a" * 60 + ".") * 5 + "com", "remote_gateway"),
    ("local net empty", "local_networks", "", "local_networks"),
    ("local net no prefix", "local_networks", "198.51.100.0", "local_networks"),
    ("local net host bits", "local_networks", "198.51.100.1/24", "local_networks"),
    ("local net garbage", "local_networks", "10.0.0.0/33", "local_networks"),
    ("local net twice", "local_networks", "10.0.0.0/8, 10.0.0.0/8", "local_networks"),
    ("local net inside another", "local_networks", "10.0.0.0/8\n10.1.0.0/16", "local_networks"),
    ("remote overlaps local", "remote_networks", "198.51.100.128/25", "remote_networks"),
    ("remote overlaps other peer", "remote_networks", "10.99.1.0/24", "remote_networks"),
    ("remote net with quote", "remote_networks", '10.1.0.0/16"', "remote_networks"),
    ("no ike encryption", "ike_encryption", [], "ike_encryption"),
    ("unknown cipher", "ike_encryption", ["rot13"], "ike_encryption"),
    ("ikev1 with aead", "ike_version", "1", "ike_encryption"),
    ("cbc without integrity", "ike_integrity", [], "ike_integrity"),
    ("no dh group", "ike_dh_groups", [], "ike_dh_groups"),
    ("no esp dh group", "esp_dh_groups", [], "esp_dh_groups"),
    ("unknown esp dh group", "esp_dh_groups", ["modp768"], "esp_dh_groups"),
    ("psk missing", "psk", "", "psk"),
    ("psk too short", "psk", "short", "psk"),
    ("psk too long", "psk", "x" * 257, "psk"),
    ("psk non-ascii", "psk", "pässwörd-long-enough", "psk"),
    ("psk newline", "psk", "line-one\nline-two", "psk"),
    ("retries negative", "keying_retries", "-1", "keying_retries"),
    ("retries too many", "keying_retries", "101", "keying_retries"),
    ("retries not a number", "keying_retries", "many", "keying_retries"),
    ("unknown firewall rule", "firewall", ["forward_everywhere"], "firewall"),
    # Found by the fresh-eyes review: addresses no tunnel can use, and a box sent twice.
    ("local ip loopback", "local_ip", "127.0.0.1", "local_ip"),
    ("local ip unspecified", "local_ip", "0.0.0.0", "local_ip"),
    ("local ip v6 unspecified", "local_ip", "::", "local_ip"),
    ("gateway multicast", "remote_gateway", "224.0.0.1", "remote_gateway"),
    ("gateway broadcast", "remote_gateway", "255.255.255.255", "remote_gateway"),
    ("gateway loopback", "remote_gateway", "127.0.0.2", "remote_gateway"),
    ("remote net loopback", "remote_networks", "127.0.0.0/8", "remote_networks"),
    ("local net multicast", "local_networks", "224.0.0.0/4", "local_networks"),
    ("firewall choice twice", "firewall", ["input", "input"], "firewall"),
    ("cipher twice", "ike_encryption", ["aes256", "aes256"], "ike_encryption"),
]


@pytest.fixture
def seeded(browser, data_dir):
    r = browser.post("/peers", valid_peer_form(name="existing", remote_gateway="192.0.2.9",
                                               remote_networks="10.99.0.0/16"))
    assert r.status_code == 303
    return (data_dir / "peers.json").read_bytes()


def test_there_are_at_least_forty_cases():
    assert len(BAD) >= 40


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("what,name,value,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_next_to_its_field(browser, data_dir, seeded, what, name, value,
                                                field, htmx):
    form = valid_peer_form(**{name: value})
    if what == "ikev1 with aead":
        form["ike_encryption"] = ["aes256gcm16"]
    r = browser.post("/peers", form, htmx=htmx)
    assert 400 <= r.status_code < 500, r.status_code
    body = r.get_data(as_text=True)
    assert f'id="{field}-error"' in body, f"no message next to {field}"
    assert "Nothing was saved" in body
    assert (data_dir / "peers.json").read_bytes() == seeded


def test_bad_edit_changes_nothing(browser, data_dir, seeded):
    r = browser.post("/peers/existing", valid_peer_form(name="existing", local_networks="oops"),
                     htmx=True)
    assert r.status_code == 422
    assert (data_dir / "peers.json").read_bytes() == seeded


def test_short_psk_is_accepted_with_a_hint(browser):
    r = browser.post("/peers", valid_peer_form(psk="twelve-chars"), htmx=True)
    assert r.status_code == 204  # 12 characters is allowed...


def test_missing_csrf_token_is_refused(app, data_dir, seeded):
    signed_in = Browser(app.test_client()).client  # a session, but the form carries no token
    r = signed_in.post("/peers", data=valid_peer_form(name="sneaky"))
    assert r.status_code == 400
    assert (data_dir / "peers.json").read_bytes() == seeded


def test_identity_forms_that_are_fine(browser, data_dir):
    for i, (local_id, peer_id) in enumerate([("192.0.2.1", "192.0.2.2"), ("vpn.example.com", "b.example.net"),
                                             ("hq@example.com", "branch@example.org"), ("2001:db8::1", "x.example")]):
        r = browser.post("/peers", valid_peer_form(name=f"p{i}", local_id=local_id, peer_id=peer_id,
                                                   remote_networks=f"10.{i}.0.0/16"))
        assert r.status_code == 303, r.get_data(as_text=True)


def test_dns_gateway_and_ipv6(browser):
    r = browser.post("/peers", valid_peer_form(name="dns", remote_gateway="vpn.branch.example.com"))
    assert r.status_code == 303
    r = browser.post("/peers", valid_peer_form(name="six", local_ip="2001:db8::1", remote_gateway="2001:db8::2",
                                               local_networks="2001:db8:1::/48", remote_networks="2001:db8:2::/48"))
    assert r.status_code == 303


def test_only_what_charon_supports_is_offered_and_accepted(app, browser, data_dir):
    ipsec = app.extensions["webui"].drivers.ipsec
    browser.post("/peers", valid_peer_form(name="old", ike_encryption=["3des"], ike_integrity=["sha1"],
                                           remote_networks="10.50.0.0/16"))
    ipsec.supported = frozenset({"aes256", "aes128", "aes256gcm16", "sha256", "sha1", "curve25519",
                                 "ecp256", "modp2048", "none"})
    form = browser.get("/peers/new").get_data(as_text=True)
    assert 'value="aes256"' in form and 'value="3des"' not in form and 'value="chacha20poly1305"' not in form
    before = (data_dir / "peers.json").read_bytes()
    r = browser.post("/peers", valid_peer_form(esp_encryption=["chacha20poly1305"]), htmx=True)
    assert r.status_code == 422 and 'id="esp_encryption-error"' in r.get_data(as_text=True)
    assert (data_dir / "peers.json").read_bytes() == before
    edit = browser.get("/peers/old/edit").get_data(as_text=True)
    assert "3DES-CBC (not supported by this strongSwan)" in edit


def test_the_typed_key_survives_another_fields_error_and_a_bad_key_does_not(browser):
    """htmx keeps an element marked hx-preserve as it is in the page, so a key the admin typed stays
    in the field when only a network was wrong; the answer itself never carries the key."""
    import re
    key_field = re.compile(r'<input[^>]*\bid="psk"[^>]*>')
    r = browser.post("/peers", valid_peer_form(remote_networks="oops", psk="kept-in-the-browser"),
                     htmx=True)
    assert r.status_code == 422 and "kept-in-the-browser" not in r.text
    assert "data-hx-preserve" in key_field.search(r.text).group()
    assert re.search(r'<span id="psk-strength"[^>]*data-hx-preserve', r.text)
    r = browser.post("/peers", valid_peer_form(psk="short"), htmx=True)
    assert r.status_code == 422 and 'id="psk-error"' in r.text
    assert "data-hx-preserve" not in key_field.search(r.text).group()
    assert "data-hx-preserve" not in r.text


# --- Advanced options (issue 15): (what, fields changed, field whose message must show) ---------
ANY = {"remote_gateway": "any", "peer_id": "branch.example", "start_action": "none",
       "dpd_action": "clear"}
BAD_ADVANCED = [
    ("dpd negative", {"dpd_delay": "-1"}, "dpd_delay"),
    ("dpd too long", {"dpd_delay": "3601"}, "dpd_delay"),
    ("dpd empty", {"dpd_delay": ""}, "dpd_delay"),
    ("dpd not a number", {"dpd_delay": "30s"}, "dpd_delay"),
    ("dpd action unknown", {"dpd_action": "hold"}, "dpd_action"),
    ("ike rekey too short", {"ike_rekey_time": "299"}, "ike_rekey_time"),
    ("ike rekey too long", {"ike_rekey_time": str(7 * 86400 + 1)}, "ike_rekey_time"),
    ("ike rekey not a number", {"ike_rekey_time": "4h"}, "ike_rekey_time"),
    ("child rekey too short", {"child_rekey_time": "59"}, "child_rekey_time"),
    ("child rekey too long", {"child_rekey_time": "86401"}, "child_rekey_time"),
    ("child rekey empty", {"child_rekey_time": ""}, "child_rekey_time"),
    ("start action unknown", {"start_action": "route"}, "start_action"),
    ("fragmentation unknown", {"fragmentation": "force"}, "fragmentation"),
    ("aggressive with ikev2", {"aggressive": "y"}, "aggressive"),
    ("any without peer id", {**ANY, "peer_id": ""}, "peer_id"),
    ("any with an ip peer id", {**ANY, "peer_id": "192.0.2.77"}, "peer_id"),
    ("any that starts", {**ANY, "start_action": "start"}, "start_action"),
    ("any started by traffic", {**ANY, "start_action": "trap", "dpd_action": "trap"}, "start_action"),
    ("responder that restarts", {"start_action": "none", "dpd_action": "restart"}, "dpd_action"),
]


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("what,changes,field", BAD_ADVANCED, ids=[b[0] for b in BAD_ADVANCED])
def test_bad_advanced_input_is_refused_next_to_its_field_in_an_open_group(
        browser, data_dir, seeded, what, changes, field, htmx):
    r = browser.post("/peers", valid_peer_form(**changes), htmx=htmx)
    assert r.status_code == 422
    body = r.get_data(as_text=True)
    assert f'id="{field}-error"' in body, f"no message next to {field}"
    assert '<details class="group advanced" id="peer-advanced" open>' in body
    assert (data_dir / "peers.json").read_bytes() == seeded
    edit = valid_peer_form(**{"name": "existing", "remote_gateway": "192.0.2.9",
                              "remote_networks": "10.99.0.0/16", **changes})
    r = browser.post("/peers/existing", edit)
    assert r.status_code == 422 and (data_dir / "peers.json").read_bytes() == seeded


def test_the_advanced_group_is_closed_at_the_defaults_and_open_when_one_differs(app, browser):
    assert '<details class="group advanced" id="peer-advanced">' in browser.get("/peers/new").text
    browser.post("/peers", valid_peer_form())
    assert '<details class="group advanced" id="peer-advanced">' in browser.get(
        "/peers/branch-a/edit").text
    browser.post("/peers", valid_peer_form(name="short", remote_networks="10.7.0.0/16",
                                           child_rekey_time="600"))
    edit = browser.get("/peers/short/edit").text
    assert '<details class="group advanced" id="peer-advanced" open>' in edit
    assert 'value="600"' in tag(edit, "child_rekey_time")


def test_advanced_options_are_saved_and_shown_again(app, browser):
    changes = dict(ANY, dpd_delay="10", ike_rekey_time="3600", child_rekey_time="120",
                   ike_reauth="y", encap="y", disable_mobike="y", fragmentation="no")
    r = browser.post("/peers", valid_peer_form(**changes), htmx=True)
    assert r.status_code == 204, r.text
    peer = app.extensions["webui"].store.get("branch-a")
    assert (peer.remote_gateway, peer.peer_id, peer.start_action, peer.dpd_action) == (
        "%any", "branch.example", "none", "clear")
    assert (peer.dpd_delay, peer.ike_rekey_time, peer.child_rekey_time) == (10, 3600, 120)
    assert (peer.ike_reauth, peer.encap, peer.disable_mobike, peer.fragmentation, peer.aggressive) == (
        True, True, True, "no", False)
    edit = browser.get("/peers/branch-a/edit").text
    for name, value in (("dpd_delay", "10"), ("ike_rekey_time", "3600"), ("child_rekey_time", "120"),
                        ("remote_gateway", "%any")):
        assert f'value="{value}"' in tag(edit, name)
    for name in ("ike_reauth", "encap", "disable_mobike", "start_action-2"):
        assert " checked " in tag(edit, name)
    assert " checked " not in tag(edit, "aggressive")
    assert re.search(r'<select[^>]*id="fragmentation".*?</select>', edit, re.S).group().count(
        '<option selected value="no">') == 1


def tag(page: str, element_id: str) -> str:
    """The opening tag of the element with this id."""
    found = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', page)
    assert found, f"no element {element_id}"
    return found.group()


def test_a_script_that_does_not_know_the_advanced_fields_gets_todays_behaviour(app, browser):
    """An HTML form post without them, as a script written before them sends it."""
    from webui.peers import ADVANCED_DEFAULTS
    form = valid_peer_form()
    assert not set(ADVANCED_DEFAULTS) & set(form)
    assert browser.post("/peers", form, htmx=True).status_code == 204
    peer = app.extensions["webui"].store.get("branch-a")
    assert {name: getattr(peer, name) for name in ADVANCED_DEFAULTS} == ADVANCED_DEFAULTS


def test_lifetimes_that_differ_from_the_defaults_come_with_a_warning(browser):
    warning = "differ from strongSwan&#39;s defaults"
    assert warning not in browser.get("/peers/new").text
    r = browser.post("/peers", valid_peer_form(child_rekey_time="600", ike_version="1", psk=""),
                     htmx=True)
    assert r.status_code == 422
    assert warning in r.text and "IKEv1 gateways compare" in r.text
    assert browser.post("/peers", valid_peer_form(ike_rekey_time="3600")).status_code == 303
    edit = browser.get("/peers/branch-a/edit").text
    assert warning in edit and "IKEv2 does not negotiate them" in edit
