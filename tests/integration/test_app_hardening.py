"""Issue 17 against the lab: a new key locks the old one out, and a bad peer (typed or stored)
never costs the others their tunnels. Real charons, real nftables, the app under waitress."""
from __future__ import annotations

import json
import time
from dataclasses import replace

from tests.integration.conftest import FIREWALL_TABLE, peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer, as_peer, cell, router_conns
from webui.drivers import CommandFailed, strongswan, vici_messages
from webui.lab import REMOTE_LAN, ROUTER_LAN
from webui.store import PeerStore

OLD_KEY = "the-old-key-that-leaked-1"
NEW_KEY = "the-new-key-after-rotation-2"


def router_sas(lab, name):
    return [sa for sa in vici_messages.parse_sas(strongswan.stream(lab.router_vici, "list-sas",
                                                                   "list-sa", {"ike": name}))]


def remote_initiates(lab, name) -> bool:
    """The remote site (only ever a responder in the lab) starts the tunnel itself."""
    try:
        strongswan.stream(lab.remote_vici, "initiate", "control-log",
                          {"child": name, "ike": name, "timeout": 5000}, timeout=8)
        return True
    except CommandFailed:
        return False


def test_a_new_key_ends_the_sa_the_old_key_made(live, clean_lab):
    browser = live.browser()
    form = peer_form(psk=OLD_KEY, keying_retries="1")
    add_peer(browser, clean_lab, form)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    (old_sa,) = router_sas(clean_lab, "site-b")
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)

    saved = time.monotonic()
    assert browser.post("/peers/site-b", dict(form, psk=NEW_KEY), htmx=True).status == 204
    gone = wait_for(lambda: old_sa.unique_id not in
                    [sa.unique_id for sa in router_sas(clean_lab, "site-b")], timeout=5)
    assert gone, f"IKE SA #{old_sa.unique_id} authenticated with the old key is still there"
    print(f"\nold IKE SA gone {time.monotonic() - saved:.2f} s after the save")

    # The remote still holds only the old key: neither side can bring the tunnel up.
    assert not remote_initiates(clean_lab, "site-b")
    assert not clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=2)

    # Given the new key, the remote comes up and traffic passes.
    clean_lab.load_remote_mirror(as_peer(dict(form, psk=NEW_KEY)))
    assert remote_initiates(clean_lab, "site-b")
    assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1), timeout=5)
    status = browser.get("/commands/status", htmx=True).text
    assert "Reauthenticate in" in status


def test_a_key_changed_while_the_ui_was_away_is_renewed_by_reconcile(serve, clean_lab, data_dir):
    """The store changed behind a running charon (a restore, an edit while the UI was down): the
    next reconcile finds the key differs from what it loaded and ends the old SA."""
    live = serve()
    browser = live.browser()
    form = peer_form(psk=OLD_KEY, keying_retries="1")
    add_peer(browser, clean_lab, form)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    (old_sa,) = router_sas(clean_lab, "site-b")
    live.close()

    store = PeerStore(data_dir / "peers.json")
    peer = store.get("site-b")
    store.replace("site-b", replace(peer, psk=NEW_KEY))
    serve(VICI_WATCH=False)  # reconcile once at start
    assert wait_for(lambda: old_sa.unique_id not in
                    [sa.unique_id for sa in router_sas(clean_lab, "site-b")], timeout=5)


def test_a_scoped_gateway_is_refused_and_reaches_no_charon(live, clean_lab):
    browser = live.browser()
    page = browser.post("/peers", peer_form(remote_gateway="2001:db8::4%x,192.0.2.2",
                                            local_ip="2001:db8::1"), htmx=True)
    assert page.status == 422 and 'id="remote_gateway-error"' in page.text
    page = browser.post("/peers", peer_form(remote_networks="2001:db8::%x/64"), htmx=True)
    assert page.status == 422 and 'id="remote_networks-error"' in page.text
    assert router_conns(clean_lab) == []


def test_stored_bad_peers_do_not_stop_the_good_one(serve, clean_lab, data_dir):
    """Peers stored before these rules (a 70,000-character ID, a scoped gateway, a scoped network):
    start-up, the firewall and Restart IPsec still load the good peer and bring its tunnel up."""
    good = as_peer(peer_form(name="good"))
    store = PeerStore(data_dir / "peers.json")
    store.add(good)
    store.add(replace(good, name="long-id", local_id="a" * 70000, remote_networks=("10.1.0.0/24",)))
    store.add(replace(good, name="scoped-gw", remote_gateway="2001:db8::4%x,192.0.2.2",
                      local_ip="2001:db8::1", remote_networks=("10.2.0.0/24",)))
    store.add(replace(good, name="scoped-net", remote_networks=("2001:db8::%x/64",)))
    clean_lab.load_remote_mirror(good)

    live = serve()
    browser = live.browser()
    assert wait_for(lambda: router_conns(clean_lab) == ["good"], timeout=10), router_conns(clean_lab)
    assert wait_for(lambda: cell(browser, "good").get("state") == "up", timeout=10)
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)
    table = json.loads(clean_lab.exec("router", ["nft", "-j", "list", "table", "inet",
                                                 FIREWALL_TABLE]).stdout or "{}")
    assert "203.0.113.0" in json.dumps(table), "the good peer's firewall rules are missing"
    assert "not loaded: its local id is invalid" in browser.get("/").text

    page = browser.post("/commands/restart", htmx=True)
    assert "Load 1 of 1 enabled peer(s)" in page.text, page.text
    assert router_conns(clean_lab) == ["good"]
    assert wait_for(lambda: cell(browser, "good").get("state") == "up", timeout=15)
