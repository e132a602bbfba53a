"""Issue 15 against the lab's real charons, through the web app: IPv6 end to end, and each advanced
option doing what it says (a remote gateway of "any", short lifetimes, DPD, forced encapsulation,
responder only). The start on traffic (trap) needs kernel IPsec, which the lab does not have: its
VICI message is tested in tests/unit/test_vici_messages.py."""
from __future__ import annotations

import pytest

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer, cell
from webui.lab import (LANHOST, LANHOST6, REMOTE_LAN, REMOTE_LAN6, REMOTE_WAN6, ROUTER_LAN,
                       ROUTER_LAN6, ROUTER_WAN6)

V6 = dict(local_ip=ROUTER_WAN6, remote_gateway=REMOTE_WAN6, local_networks="2001:db8:1::/64",
          remote_networks="2001:db8:2::/64")


# --- IPv6 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["2", "1"], ids=["IKEv2", "IKEv1"])
def test_an_ipv6_peer_is_a_working_tunnel(live, clean_lab, version):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form(ike_version=version, **V6))
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up"), cell(browser, "site-b")
    status = browser.get("/commands/status", htmx=True).text
    assert f"{REMOTE_WAN6}" in status and "2001:db8:1::/64 → 2001:db8:2::/64" in status
    assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN6, REMOTE_LAN6, count=1), timeout=5)
    # and from the LAN behind the router, forwarded into the tunnel
    assert clean_lab.ping("lanhost", LANHOST6, REMOTE_LAN6)


@pytest.mark.parametrize("family", [4, 6], ids=["IPv4", "IPv6"])
def test_the_firewall_decides_for_traffic_out_of_the_tunnel(live, clean_lab, family):
    """The remote site's LAN pings the router's LAN host and the router itself through the tunnel:
    each firewall choice lets through exactly its own, in IPv6 as in IPv4."""
    browser = live.browser()
    if family == 6:
        form, remote, lanhost, router = peer_form(**V6), REMOTE_LAN6, LANHOST6, ROUTER_LAN6
    else:
        form, remote, lanhost, router = peer_form(), REMOTE_LAN, LANHOST, ROUTER_LAN
    add_peer(browser, clean_lab, dict(form, firewall=["forward_lan"]))
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    assert wait_for(lambda: clean_lab.ping("remote", remote, lanhost, count=1), timeout=5)
    assert not clean_lab.ping("remote", remote, router, count=2), "reached the router without input"

    change = dict(form, firewall=["input"], psk="")
    assert browser.post("/peers/site-b", change, htmx=True).status == 204
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    assert not clean_lab.ping("remote", remote, lanhost, count=2), "forwarded without forward_lan"
    assert wait_for(lambda: clean_lab.ping("remote", remote, router, count=1), timeout=5)
    # the LAN may still start a conversation with the remote site: replies come back in
    assert clean_lab.ping("lanhost", lanhost, remote)
