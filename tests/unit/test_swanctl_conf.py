"""The swanctl.conf the UI can write for boot (webui/drivers/swanctl_conf.py): built from the VICI
messages, quoted as swanctl's parser reads it, written on every change, 0600, enabled peers only.
That swanctl really reads it back as the same configuration is proven against a real charon in
tests/integration/test_swanctl_conf.py."""
from __future__ import annotations

import dataclasses
import re

import pytest

from tests.conftest import Browser, valid_peer_form
from webui.drivers import swanctl_conf, vici_messages
from webui.peers import PRESETS, Peer

PEER = Peer(name="branch", local_ip="192.0.2.1", remote_gateway="vpn.example.net",
            local_networks=("198.51.100.0/24", "2001:db8:1::/64"),
            remote_networks=("203.0.113.0/24", "2001:db8:2::/64"),
            psk="plain-key-0123456789", peer_id="branch@example.net")


def test_a_peer_is_its_vici_messages_in_swanctl_syntax():
    text = swanctl_conf.render([PEER])
    conn = vici_messages.load_conn(PEER)["branch"]
    assert text.startswith("# Written by the router's IPsec web UI")
    body = text.split("\n\n", 1)[1]
    expected = ["connections {", "    branch {"]
    for key, value in conn.items():
        if isinstance(value, dict):
            continue
        expected.append(f"        {key} = {','.join(value) if isinstance(value, list) else value}")
    assert body.splitlines()[:len(expected)] == expected
    assert "        local {\n            auth = psk\n            id = 192.0.2.1\n        }" in body
    assert "        remote {\n            auth = psk\n            id = branch@example.net\n        }" in body
    assert ("            branch {\n                mode = tunnel\n"
            "                local_ts = 198.51.100.0/24,2001:db8:1::/64\n") in body
    assert body.endswith("secrets {\n    ike-webui-branch {\n        id-1 = 192.0.2.1\n"
                         "        id-2 = branch@example.net\n"
                         '        secret = "plain-key-0123456789"\n    }\n}\n')


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("version", [1, 2])
def test_every_preset_and_version_renders(preset, version):
    peer = dataclasses.replace(PEER, ike_version=version, **PRESETS[preset])
    if version == 1:
        peer = dataclasses.replace(peer, ike_encryption=("aes256",))
    text = swanctl_conf.render([peer])
    for name, _, _ in vici_messages.child_selectors(peer):
        assert f"            {name} {{" in text


def test_only_enabled_peers_with_a_key_are_written():
    off = dataclasses.replace(PEER, name="off", enabled=False)
    keyless = dataclasses.replace(PEER, name="keyless", psk="", enabled=True)
    text = swanctl_conf.render([PEER, off, keyless])
    assert "    branch {" in text and "off" not in text and "keyless" not in text


@pytest.mark.parametrize("text, written", [
    ("plain", "plain"),
    ("has space", '"has space"'),
    ('quote"hash#brace{}', r'"quote\"hash#brace{}"'),
    ("back\\slash", r'"back\\slash"'),
    ("new\nline\r\ttab", r'"new\nline\r\ttab"'),
    ("", '""'),
])
def test_quoting(text, written):
    assert swanctl_conf.quote(text) == written


def test_what_swanctl_cannot_carry_is_refused():
    with pytest.raises(swanctl_conf.Unwritable, match="NUL"):
        swanctl_conf.quote("a\0b")
    with pytest.raises(swanctl_conf.Unwritable, match="comma"):
        swanctl_conf.section("x", {"local_ts": ["10.0.0.0/8,x"]})
    with pytest.raises(swanctl_conf.Unwritable, match="would not read this list"):
        swanctl_conf.section("x", {"owners": ["a", "b"]})


def test_a_key_swanctl_would_decode_is_written_as_base64():
    # swanctl reads "0x..." as hex and "0s..." as base64: the key charon gets over VICI is the text.
    assert swanctl_conf.secret("0x6162636465666768") == "0sMHg2MTYyNjM2NDY1NjY2NzY4"
    assert swanctl_conf.secret("0S-anything-at-all") == "0sMFMtYW55dGhpbmctYXQtYWxs"
    assert swanctl_conf.secret('a"b#c{d}') == r'"a\"b#c{d}"'


# --- Written by the app --------------------------------------------------------------------------

def test_every_change_rewrites_the_file_0600(make_app, tmp_path):
    conf = tmp_path / "swanctl" / "webui-peers.conf"
    conf.parent.mkdir()
    browser = Browser(make_app(SWANCTL_CONF=str(conf)).test_client())
    assert "connections {\n}" in conf.read_text(), "written at start, empty"
    assert conf.stat().st_mode & 0o777 == 0o600
    browser.post("/peers", valid_peer_form())
    browser.post("/peers", valid_peer_form(name="branch-b", remote_networks="10.9.0.0/16"))
    text = conf.read_text()
    assert "    branch-a {" in text and "    branch-b {" in text
    assert 'secret = "correct-horse-battery-staple-42"' in text
    browser.post("/peers/branch-b", valid_peer_form(name="branch-b", remote_networks="10.9.0.0/16",
                                                    enabled=None, psk=""))
    assert "branch-b" not in conf.read_text()
    browser.delete("/peers/branch-a")
    assert "branch-a" not in conf.read_text()
    assert conf.stat().st_mode & 0o777 == 0o600
    assert not list(conf.parent.glob(".*.tmp")), "no temp file left behind"


def test_an_unchanged_file_is_not_rewritten(make_app, tmp_path):
    conf = tmp_path / "peers.conf"
    browser = Browser(make_app(SWANCTL_CONF=str(conf)).test_client())
    browser.post("/peers", valid_peer_form())
    inode = conf.stat().st_ino
    browser.post("/commands/reconcile")
    make_app(SWANCTL_CONF=str(conf))  # a restart finds the same text
    assert conf.stat().st_ino == inode


def test_a_file_that_cannot_be_written_is_shown_and_the_save_stands(make_app, tmp_path):
    conf = tmp_path / "missing-dir" / "peers.conf"
    app = make_app(SWANCTL_CONF=str(conf))
    browser = Browser(app.test_client())
    r = browser.post("/peers", valid_peer_form())
    assert r.status_code == 303
    assert app.extensions["webui"].store.get("branch-a") is not None
    page = browser.get("/").get_data(as_text=True)
    assert re.search(r'id="swanctl-error"[^>]*>The peers are saved, but the file strongSwan loads '
                     r"at boot was not updated: .*missing-dir/peers.conf not written", page)


def test_unset_writes_nothing(make_app, tmp_path):
    browser = Browser(make_app().test_client())
    browser.post("/peers", valid_peer_form())
    assert not list(tmp_path.rglob("*.conf"))
