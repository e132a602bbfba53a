"""Issue 10: the UI on a small router's strongSwan build. The lab router's real charon restarted with
only the plugins of such a build (tests.lab.MINIMAL_PLUGINS: no openssl, so no ECP, Curve25519 or
AES-GCM), against the lab's full remote site. Nothing here is faked."""
from __future__ import annotations

import html

import pytest

from tests.integration.conftest import peer_form, preflight, wait_for
from tests.integration.test_app_ipsec import add_peer, as_peer, cell
from tests.unit.test_capabilities import BUILDS, FULL_BUILD, MINIMAL_BUILD, checked
from webui import capabilities
from tests.lab import MINIMAL_PLUGINS, REMOTE_LAN, ROUTER_LAN, prepare_demo, router_algorithms
from webui.store import PeerStore


def test_the_unit_tests_capability_sets_are_what_the_lab_charons_report(clean_lab):
    assert router_algorithms(clean_lab) == FULL_BUILD
    clean_lab.restart_router_charon(MINIMAL_PLUGINS)
    assert clean_lab.router_plugins == MINIMAL_PLUGINS
    assert router_algorithms(clean_lab) == MINIMAL_BUILD


def test_the_preflight_names_the_missing_plugin_and_package(clean_lab):
    assert preflight(clean_lab) == ""
    clean_lab.restart_router_charon(MINIMAL_PLUGINS)
    line = preflight(clean_lab)
    assert line == ("PREFLIGHT: the lab's router charon lacks AES-256-GCM, AES-128-GCM, Curve25519 "
                    "and ECP-256: needs plugins gcm, openssl (Debian package "
                    "libstrongswan-standard-plugins); ./dev test installs it")


def test_a_peer_made_with_the_forms_defaults_comes_up_on_a_small_router(serve, clean_lab):
    clean_lab.restart_router_charon(MINIMAL_PLUGINS)
    live = serve()
    browser = live.browser()
    page = browser.get("/peers/new").text
    defaults = checked(page)
    assert {f: tuple(defaults.get(f, [])) for f in capabilities.FIELDS} == \
        capabilities.preset("modern", MINIMAL_BUILD)
    assert "Curve25519 (plugin curve25519 or openssl)" in html.unescape(page), "says what it left out"
    form = peer_form(**{f: defaults.get(f, []) for f in capabilities.FIELDS})
    add_peer(browser, clean_lab, form)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up"), cell(browser, "site-b")
    assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1), timeout=5)


def test_a_modern_peer_is_flagged_after_the_router_becomes_a_small_build(serve, clean_lab):
    live = serve()
    browser = live.browser()
    form = peer_form()  # Curve25519 and AES-256-GCM: fine on the full build
    add_peer(browser, clean_lab, form)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up"), cell(browser, "site-b")
    assert "needs" not in cell(browser, "site-b")["text"]

    clean_lab.restart_router_charon(MINIMAL_PLUGINS)  # a firmware change, say
    why = "needs Curve25519 (plugin curve25519 or openssl) and AES-256-GCM (plugin gcm or openssl)"
    flagged = wait_for(lambda: why in html.unescape(cell(browser, "site-b")["text"]), timeout=15)
    assert flagged, cell(browser, "site-b")
    assert why in html.unescape(browser.get("/commands/status", htmx=True).text)
    assert why in html.unescape(browser.get("/peers/site-b/edit").text)
    stored = live.applier.store.get("site-b")
    assert stored.ike_dh_groups == ("curve25519",) and stored.esp_encryption == ("aes256gcm16",), \
        "nothing rewritten behind the administrator's back"


def test_a_peer_with_a_possible_proposal_is_still_loaded_without_what_is_missing(serve, clean_lab):
    """charon 5.9 fails the whole negotiation on an algorithm it lacks (it does not skip it), so
    the UI loads the peer without it, and the tunnel comes up on what is left."""
    clean_lab.restart_router_charon(MINIMAL_PLUGINS)
    live = serve()
    browser = live.browser()
    form = peer_form(ike_dh_groups=["curve25519", "modp2048"], esp_encryption=["aes256"],
                     esp_integrity=["sha256"], esp_dh_groups=["curve25519", "modp2048"])
    clean_lab.load_remote_mirror(as_peer(form))
    # Saved with the minimal build running: the form offers Curve25519 only to a peer that has it,
    # so the admin's peer is stored as a restored one would be, then loaded at start-up.
    live.applier.store.add(as_peer(form))
    live.applier.reconcile()
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up"), cell(browser, "site-b")
    assert "needs Curve25519" in cell(browser, "site-b")["text"]
    assert "loaded without it" in cell(browser, "site-b")["text"]


@pytest.mark.parametrize("build", BUILDS)
def test_the_demo_peer_is_chosen_from_the_router_and_comes_up(serve, clean_lab, data_dir, build):
    """What `./dev run` seeds into an empty store, on either build of the router's charon."""
    if build == "minimal":
        clean_lab.restart_router_charon(MINIMAL_PLUGINS)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    prepare_demo(clean_lab, PeerStore(data_dir / "peers.json"))
    live = serve()  # the same data directory: it loads the demo peer at start-up
    (demo,) = live.applier.store.all()
    assert {f: getattr(demo, f) for f in capabilities.FIELDS} == \
        capabilities.preset("modern", BUILDS[build])
    browser = live.browser()
    assert wait_for(lambda: cell(browser, "lab-remote").get("state") == "up"), \
        cell(browser, "lab-remote")
    assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1), timeout=5)
