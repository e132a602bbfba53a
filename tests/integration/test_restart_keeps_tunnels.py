"""Issue 19: an upgrade restarts the UI, not strongSwan. The UI stops, a new one starts with the
same data directory and reloads every peer into charon: a tunnel whose peer did not change keeps
its IKE and child SAs (no renegotiation, no outage), as `./dev upgrade` promises."""
from __future__ import annotations

from tests.integration.conftest import wait_for
from tests.integration.test_app_ipsec import add_peer, cell, router_conns
from tests.integration.conftest import peer_form
from webui.drivers import strongswan, vici_messages
from tests.lab import REMOTE_LAN, ROUTER_LAN


def router_sas(lab) -> list[tuple[str, int, str, tuple]]:
    sas = vici_messages.parse_sas(strongswan.stream(lab.router_vici, "list-sas", "list-sa"))
    return [(sa.name, sa.unique_id, sa.state, tuple(c.name for c in sa.children)) for sa in sas]


def test_a_restarted_ui_reloads_its_peers_without_dropping_their_tunnels(serve, clean_lab):
    first = serve()
    browser = first.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=10)
    before = router_sas(clean_lab)
    assert [sa[:1] + sa[2:3] for sa in before] == [("site-b", "ESTABLISHED")]
    first.close()  # the old version stops: charon keeps the connection and its SAs
    log = clean_lab.charon_log("router")
    reloads = lambda: log.read_text().count("updated vici connection: site-b")  # noqa: E731
    reloaded_before = reloads()

    second = serve()  # the new version starts on the same data directory and reconciles
    browser = second.browser()
    assert wait_for(lambda: reloads() > reloaded_before, timeout=10), "the peer was reloaded"
    assert router_conns(clean_lab) == ["site-b"]
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=10)
    assert router_sas(clean_lab) == before, "the same IKE SA, not a renegotiated one"
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=2)
