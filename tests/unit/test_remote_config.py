"""The configuration for the other side: swapped, same proposals, never the PSK; and its route."""
from __future__ import annotations

import pytest

from tests.conftest import valid_peer_form
from webui.peers import PRESETS, Peer
from webui.remote_config import PSK_PLACEHOLDER, for_other_side

PSK = "s3cret-psk-never-shown"


def make_peer(**kw) -> Peer:
    base = dict(name="branch", local_ip="192.0.2.1", remote_gateway="vpn.branch.example",
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24", "10.9.0.0/16"),
                local_id="hq.example.com", psk=PSK)
    return Peer(**{**base, **kw})


def test_swanctl_snippet_is_the_peer_seen_from_the_other_side():
    assert for_other_side(make_peer()).swanctl == """\
connections {
    branch {
        version = 2
        local_addrs = %any
        remote_addrs = 192.0.2.1
        proposals = aes256-sha256-curve25519-ecp256
        keyingtries = 0
        dpd_delay = 30s
        rekey_time = 14400s
        reauth_time = 6h
        unique = replace
        send_certreq = no
        local {
            auth = psk
            id = vpn.branch.example
        }
        remote {
            auth = psk
            id = hq.example.com
        }
        children {
            branch {
                mode = tunnel
                local_ts = 203.0.113.0/24,10.9.0.0/16
                remote_ts = 198.51.100.0/24
                esp_proposals = aes256gcm16-curve25519-ecp256
                rekey_time = 3600s
                start_action = start
                dpd_action = restart
                close_action = none
            }
        }
    }
}

secrets {
    ike-branch {
        id-1 = vpn.branch.example
        id-2 = hq.example.com
        secret = "<the pre-shared key you agreed with this router's administrator>"
    }
}
"""


def test_plain_list_has_the_same_settings_in_words():
    settings = dict(for_other_side(make_peer(ike_version=1, **PRESETS["compatible"])).settings)
    assert settings["Key exchange"] == "IKEv1"
    assert settings["Your address (as this router reaches it)"] == "vpn.branch.example"
    assert settings["Peer gateway (this router)"] == "192.0.2.1"
    assert settings["Your ID (local)"] == "vpn.branch.example"
    assert settings["Peer ID (this router)"] == "hq.example.com"
    assert settings["Your networks (local)"] == "203.0.113.0/24, 10.9.0.0/16"
    assert settings["Peer networks (remote)"] == "198.51.100.0/24"
    assert settings["IKE proposals"] == "aes256-aes128-sha256-sha1-modp2048-modp1024"
    assert settings["ESP proposals"] == "aes256-aes128-sha256-sha1-modp2048-modp1024"


def test_plain_list_has_one_algorithm_a_line_with_group_numbers_for_other_vendors():
    settings = dict(for_other_side(make_peer(ike_version=1, **PRESETS["compatible"])).settings)
    assert settings["IKE (phase 1) encryption"] == "AES-256-CBC, AES-128-CBC"
    assert settings["IKE (phase 1) integrity"] == "HMAC-SHA-256-128, HMAC-SHA1-96"
    assert settings["IKE (phase 1) PRF"] == "PRF-HMAC-SHA-256, PRF-HMAC-SHA1"
    assert settings["IKE (phase 1) DH groups"] == "group 14 (MODP-2048), group 2 (MODP-1024)"
    assert settings["ESP (phase 2) PFS groups"] == "group 14 (MODP-2048), group 2 (MODP-1024)"
    assert settings["IKE SA lifetime"].startswith("14400 s (4 h)")
    assert settings["Tunnel (CHILD SA) lifetime"] == "3600 s (1 h)"

    aead = dict(for_other_side(make_peer(ike_encryption=("aes256gcm16",), ike_integrity=(),
                                         esp_encryption=("aes128gcm16",), esp_integrity=(),
                                         ike_dh_groups=("curve25519", "ecp256"),
                                         esp_dh_groups=("ecp384", "none"))).settings)
    assert aead["IKE (phase 1) encryption"] == "AES-256-GCM (16-byte ICV)"
    assert aead["IKE (phase 1) integrity"] == "none: included in the AEAD cipher"
    assert aead["IKE (phase 1) PRF"] == "PRF-HMAC-SHA-256", "strongSwan's own choice, said"
    assert aead["IKE (phase 1) DH groups"] == "group 31 (Curve25519), group 19 (ECP-256, NIST P-256)"
    assert aead["ESP (phase 2) integrity"] == "none: included in the AEAD cipher"
    assert aead["ESP (phase 2) PFS groups"] == "group 20 (ECP-384, NIST P-384), none (no PFS)"


def test_empty_ids_become_the_addresses_the_other_side_must_use():
    config = for_other_side(make_peer(local_id="", remote_gateway="203.0.113.9"))
    assert "id = 203.0.113.9" in config.swanctl  # theirs: the gateway address we call them by
    assert "id = 192.0.2.1" in config.swanctl  # ours: our local IP


@pytest.mark.parametrize("version", [1, 2])
def test_never_the_psk(version):
    config = for_other_side(make_peer(ike_version=version))
    assert PSK not in config.swanctl and PSK not in str(config.settings)
    assert PSK_PLACEHOLDER in config.swanctl


def test_route_shows_it_escaped_and_without_the_psk(browser):
    form = valid_peer_form()
    browser.post("/peers", form)
    r = browser.get("/peers/branch-a/other-side", htmx=True)
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="output-other-side"' in text
    assert "remote_addrs = 192.0.2.1" in text and "local_ts = 203.0.113.0/24" in text
    assert form["psk"] not in text
    # Markup in stored peers is covered in test_escaping; here the placeholder's own brackets.
    assert "&lt;the pre-shared key you agreed with this router&#39;s administrator&gt;" in text


def test_route_without_htmx_is_the_page_with_the_output_filled(browser):
    browser.post("/peers", valid_peer_form())
    text = browser.get("/peers/branch-a/other-side").get_data(as_text=True)
    assert "<h2 id=\"peers-heading\" tabindex=\"-1\">Peers</h2>" in text and 'id="output-other-side"' in text


def test_route_for_an_unknown_peer_is_404(browser):
    assert browser.get("/peers/nobody/other-side", htmx=True).status_code == 404


# --- Advanced options (issue 15) -----------------------------------------------------------------

def test_the_other_side_of_an_any_peer_is_told_to_initiate_to_this_router():
    config = for_other_side(make_peer(remote_gateway="%any", peer_id="branch.example",
                                      start_action="none", dpd_action="clear", dpd_delay=10,
                                      child_rekey_time=600, encap=True))
    assert "remote_addrs = 192.0.2.1" in config.swanctl and "local_addrs = %any" in config.swanctl
    assert "id = branch.example" in config.swanctl
    assert "start_action = start" in config.swanctl and "dpd_action = restart" in config.swanctl
    assert "dpd_delay = 10s" in config.swanctl and "rekey_time = 600s" in config.swanctl
    assert "encap = yes" in config.swanctl
    settings = dict(config.settings)
    assert settings["Your address (as this router reaches it)"].startswith("any")
    assert settings["Start the tunnel"].startswith("yes")
    assert settings["Dead peer detection"] == "every 10 s"
    assert settings["Tunnel (CHILD SA) lifetime"] == "600 s (10 min)"
    assert settings["UDP encapsulation (NAT-T)"] == "forced, even without NAT"


def test_the_other_side_gets_lifetimes_and_the_options_that_differ():
    settings = dict(for_other_side(make_peer(ike_version=1, aggressive=True, dpd_delay=0,
                                             ike_rekey_time=28800, fragmentation="no",
                                             **PRESETS["compatible"])).settings)
    assert settings["Key exchange"] == "IKEv1, aggressive mode"
    assert settings["Start the tunnel"].startswith("yes") and "this router starts it too" in \
        settings["Start the tunnel"]
    assert settings["Dead peer detection"] == "off"
    assert settings["IKE SA lifetime"] == "28800 s (8 h), reauthenticate"
    assert settings["Tunnel (CHILD SA) lifetime"] == "3600 s (1 h)"
    assert settings["IKE fragmentation"] == "no" and "MOBIKE" not in settings
    v2 = dict(for_other_side(make_peer(disable_mobike=True, ike_rekey_time=3601)).settings)
    assert v2["IKE SA lifetime"] == "3601 s, rekey; reauthenticate every 6h" and v2["MOBIKE"] == "off"
    assert for_other_side(make_peer(ike_version=1, aggressive=True)).swanctl.count("aggressive = yes") == 1


@pytest.mark.parametrize("start_action", ["start", "none"])
def test_the_other_side_keeps_trying_and_replaces_a_duplicate(start_action):
    # Once this router has spent its keying tries, only the other side can bring the tunnel back.
    config = for_other_side(make_peer(start_action=start_action, dpd_action="clear"))
    for line in ("keyingtries = 0", "unique = replace", "start_action = start",
                 "dpd_action = restart", "close_action = none"):
        assert line in config.swanctl, line
    assert dict(config.settings)["A second IKE SA with this router"].startswith("keep the newer")


def test_a_tunnel_started_by_traffic_is_started_by_traffic_there_too():
    config = for_other_side(make_peer(start_action="trap"))
    assert "start_action = trap" in config.swanctl
    assert "unique" not in config.swanctl and "keyingtries = 3" in config.swanctl
    assert "A second IKE SA with this router" not in dict(config.settings)
