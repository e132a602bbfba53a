"""Presets, defaults and stored peers against what the charon at hand supports (webui.capabilities).

The two capability sets are what the lab's real charons report (an integration test,
test_small_router.py, checks that they still do): Debian's full build and a small router's.
"""
from __future__ import annotations

import html
import json
import re

import pytest

from tests.conftest import valid_peer_form
from webui import capabilities
from webui.peers import ALGORITHMS, PRESETS, Peer

# `parse_algorithms(get-algorithms)` of Debian 12's charon with libstrongswan-standard-plugins.
FULL_BUILD = frozenset(ALGORITHMS)
# ... and of the same charon with only the small router's plugins (tests.lab.MINIMAL_PLUGINS).
MINIMAL_BUILD = frozenset({"aes256", "aes128", "sha256", "sha384", "sha512", "sha1", "modp4096",
                           "modp3072", "modp2048", "modp1024", "none"})
BUILDS = {"full": FULL_BUILD, "minimal": MINIMAL_BUILD}


def test_presets_on_a_full_build_are_the_catalogues():
    for name, choices in PRESETS.items():
        assert capabilities.preset(name, FULL_BUILD) == choices, name
        assert capabilities.preset(name, None) == choices, name
        assert capabilities.preset_notes(name, FULL_BUILD) == []


def test_modern_on_a_small_router_falls_back_in_order_of_preference():
    modern = capabilities.preset("modern", MINIMAL_BUILD)
    assert modern["ike_dh_groups"] == modern["esp_dh_groups"] == ("modp3072", "modp2048")
    assert (modern["esp_encryption"], modern["esp_integrity"]) == (("aes256",), ("sha256",))
    without_modp3072 = MINIMAL_BUILD - {"modp3072"}
    assert capabilities.preset("modern", without_modp3072)["ike_dh_groups"] == ("modp2048",)
    no_preferred_group = MINIMAL_BUILD - {"modp3072", "modp2048"}
    assert capabilities.preset("modern", no_preferred_group)["ike_dh_groups"] == ("modp4096",)
    ecp_only = FULL_BUILD - {"curve25519"}
    assert capabilities.preset("modern", ecp_only)["ike_dh_groups"] == ("ecp256", "modp3072")


def test_a_preset_that_cannot_be_honoured_says_what_it_dropped_and_why():
    notes = capabilities.preset_notes("modern", MINIMAL_BUILD)
    assert ("IKE DH groups: Curve25519 (plugin curve25519 or openssl) and ECP-256 (plugin openssl) "
            "left out, as this strongSwan does not support them; MODP-3072 and MODP-2048 instead."
            ) in notes
    assert ("ESP encryption: AES-256-GCM (plugin gcm or openssl) left out, as this strongSwan does "
            "not support it; AES-256-CBC instead.") in notes
    assert "ESP integrity: SHA-256 added, as the ESP cipher used instead has none built in." in notes
    assert capabilities.preset_notes("compatible", MINIMAL_BUILD) == []


def page_presets(page: str) -> dict[str, dict]:
    """The presets as the form's buttons carry them: label -> field -> keywords."""
    return {label: json.loads(html.unescape(data)) for data, label in
            re.findall(r"data-preset='([^']*)'>([^<]+)</button>", page)}


def checked(page: str) -> dict[str, list[str]]:
    """What the form has ticked, as a browser would submit it."""
    ticked: dict[str, list[str]] = {}
    for tag in re.findall(r"<input[^>]*\bchecked\b[^>]*>", page):
        name, value = re.search(r'name="([^"]+)"', tag).group(1), re.search(r'value="([^"]*)"', tag)
        if re.search(r'type="checkbox"', tag) and name in capabilities.FIELDS:
            ticked.setdefault(name, []).append(value.group(1))
    return ticked


@pytest.mark.parametrize("build", BUILDS)
def test_every_preset_saves_through_the_form(make_app, build):
    """Issue 18: "Compatible with older peers" ticked PFS MODP-2048 and None together and could
    not be saved. Each preset, as the form's button fills it in, saves on each build."""
    from tests.conftest import Browser
    app = make_app()
    app.extensions["webui"].drivers.ipsec.supported = BUILDS[build]
    browser = Browser(app.test_client())
    offered = page_presets(browser.get("/peers/new").get_data(as_text=True))
    assert set(offered) == {"Modern", "Compatible with older peers"}
    for i, (label, choices) in enumerate(offered.items()):
        assert all(capabilities.is_supported(k, BUILDS[build]) for v in choices.values() for k in v)
        form = valid_peer_form(name=f"preset-{i}", remote_networks=f"10.{i}.0.0/16",
                               **{field: list(keywords) for field, keywords in choices.items()})
        r = browser.post("/peers", form)
        assert r.status_code == 303, (label, r.get_data(as_text=True))
        stored = app.extensions["webui"].store.get(f"preset-{i}")
        assert {f: getattr(stored, f) for f in choices} == {f: tuple(v) for f, v in choices.items()}


@pytest.mark.parametrize("build", BUILDS)
def test_the_new_peer_form_as_prefilled_saves(make_app, build):
    from tests.conftest import Browser
    app = make_app()
    app.extensions["webui"].drivers.ipsec.supported = BUILDS[build]
    browser = Browser(app.test_client())
    page = browser.get("/peers/new").get_data(as_text=True)
    ticked = checked(page)
    assert {f: tuple(ticked.get(f, [])) for f in capabilities.FIELDS} == \
        capabilities.preset("modern", BUILDS[build])
    form = valid_peer_form(**{f: ticked.get(f, []) for f in capabilities.FIELDS})
    assert browser.post("/peers", form).status_code == 303
    if build == "minimal":
        assert "Curve25519 (plugin curve25519 or openssl)" in page, "the form says what Modern left out"


MODERN_PEER = Peer(name="modern", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                   local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                   psk="x" * 20)


def test_a_peer_is_checked_against_the_build_and_loaded_without_what_it_lacks():
    from dataclasses import replace
    assert capabilities.check(MODERN_PEER, FULL_BUILD) is None
    lacking = capabilities.check(MODERN_PEER, MINIMAL_BUILD)
    assert lacking.keywords == ("curve25519", "ecp256", "aes256gcm16") and not lacking.loadable
    assert lacking.message == (
        "needs Curve25519 (plugin curve25519 or openssl), ECP-256 (plugin openssl) and AES-256-GCM "
        "(plugin gcm or openssl), which this strongSwan does not support; not loaded: no proposal "
        "is possible without them")
    mixed = replace(MODERN_PEER, ike_dh_groups=("curve25519", "modp2048"),
                    esp_encryption=("aes256gcm16", "aes256"), esp_integrity=("sha256",),
                    esp_dh_groups=("curve25519", "none"))
    lacking = capabilities.check(mixed, MINIMAL_BUILD)
    assert lacking.loadable and lacking.message.endswith("; loaded without them")
    loaded = capabilities.loadable(mixed, MINIMAL_BUILD)
    assert (loaded.ike_dh_groups, loaded.esp_encryption, loaded.esp_dh_groups) == \
        (("modp2048",), ("aes256",), ("none",))
    assert capabilities.loadable(mixed, None) is mixed


def test_cbc_without_a_supported_integrity_is_not_a_proposal():
    from dataclasses import replace
    peer = replace(MODERN_PEER, esp_encryption=("aes256",), esp_integrity=("sha256",),
                   ike_dh_groups=("modp2048",), esp_dh_groups=("none",))
    assert capabilities.loadable(peer, MINIMAL_BUILD - {"sha256"}) is None
    assert capabilities.first_lacking_field(peer, MINIMAL_BUILD - {"sha256"}) == "ike_integrity"


def test_every_catalogue_algorithm_names_its_plugins():
    assert set(capabilities.PLUGINS) == set(ALGORITHMS) - {"none"}
    for plugins in capabilities.PLUGINS.values():
        assert "openssl" in plugins


def test_flagged_in_row_status_pane_and_form_and_refused_when_nothing_is_left(make_app, data_dir):
    from tests.conftest import Browser
    app = make_app()
    applier = app.extensions["webui"]
    browser = Browser(app.test_client())
    assert browser.post("/peers", valid_peer_form(name="branch")).status_code == 303
    applier.drivers.ipsec.supported = MINIMAL_BUILD
    applier.reconcile()  # as at start-up and on every reconnect to charon
    why = "needs Curve25519 (plugin curve25519 or openssl)"
    assert why in applier.lacking["branch"]
    assert why in browser.get("/").get_data(as_text=True)
    assert why in browser.get("/peers/states", htmx=True).get_data(as_text=True)
    assert why in browser.get("/commands/status", htmx=True).get_data(as_text=True)
    edit = browser.get("/peers/branch/edit").get_data(as_text=True)
    assert "This peer " + why in html.unescape(edit)
    before = (data_dir / "peers.json").read_bytes()
    r = browser.post("/peers/branch", valid_peer_form(name="branch", psk=""), htmx=True)
    assert r.status_code == 422 and "This strongSwan supports none of these" in r.get_data(as_text=True)
    assert (data_dir / "peers.json").read_bytes() == before, "nothing rewritten"
    fixed = valid_peer_form(name="branch", psk="", ike_dh_groups=["curve25519", "modp2048"],
                            esp_encryption=["aes256"], esp_integrity=["sha256"],
                            esp_dh_groups=["modp2048"])
    assert browser.post("/peers/branch", fixed).status_code == 303
    assert "needs Curve25519" in applier.lacking["branch"] and \
        applier.lacking["branch"].endswith("loaded without it"), "checked on save"
