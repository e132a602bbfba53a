"""Issue 11 against the lab: the other side started by its own configuration (the one the "Other
side" page gives its administrator), the router told who started each tunnel, and two ends that
both start never piling up duplicate SAs."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import as_peer, cell, router_conns
from webui.drivers import DriverError, strongswan
from webui.drivers import vici_messages as vm
from tests.lab import REMOTE_WAN
from webui.remote_config import other_side

NEVER = 3600  # seconds: the router's own retry, out of the way of what these tests watch


HOLD = ("add table inet wuihold",
        "add chain inet wuihold in { type filter hook input priority 0 ; }",
        "add rule inet wuihold in udp dport { 500, 4500 } drop")


def router_nft(lab, *commands: str) -> None:
    for command in commands:
        done = lab.exec("router", ["nft", *command.split()])
        assert done.returncode == 0, done.stderr


def load_other_side(lab, peer, psk: str | None = None) -> None:
    """The lab's remote site configured exactly as the "Other side" page says, with the key."""
    remote, conn = other_side(peer)
    strongswan.call(lab.remote_vici, "load-shared",
                    vm.load_shared(replace(remote, psk=peer.psk if psk is None else psk)))
    strongswan.call(lab.remote_vici, "load-conn", conn)


def sas(vici, name: str) -> list:
    return list(vm.parse_sas(strongswan.stream(vici, "list-sas", "list-sa",
                                               {"ike": name, "noblock": "yes"})))


def up(vici, name: str) -> list:
    """The IKE SAs of `name` that are established and carry an installed CHILD_SA."""
    return [sa for sa in sas(vici, name) if sa.state == "ESTABLISHED"
            and any(child.state == "INSTALLED" for child in sa.children)]


def initiate(vici, name: str) -> None:
    try:
        strongswan.stream(vici, "initiate", "control-log",
                          {"child": name, "ike": name, "timeout": 10000})
    except DriverError:
        pass  # the other end's SA may win the race: what is left is what the test looks at


def test_the_other_side_brings_up_a_tunnel_the_router_gave_up_on(serve, clean_lab):
    live = serve(RETRY_SECONDS=NEVER, RETRY_MAX_SECONDS=NEVER)
    browser = live.browser()
    form = peer_form(keying_retries="1")
    peer = as_peer(form)
    clean_lab.stop_remote_charon()  # the branch is off: the router's tries go unanswered
    try:
        assert browser.post("/peers", form, htmx=True).status == 204
        assert wait_for(lambda: "site-b" in router_conns(clean_lab))
        # charon has spent its keying tries: no SA left, and the UI will not retry for an hour
        assert wait_for(lambda: not sas(clean_lab.router_vici, "site-b"), timeout=40, interval=0.5)
        given_up = wait_for(lambda: (c := cell(browser, "site-b")).get("state") == "waiting" and c)
        assert given_up, cell(browser, "site-b")
    finally:
        clean_lab.start_remote_charon()
    started = time.monotonic()
    load_other_side(clean_lab, peer)  # the branch comes back with the configuration it was given
    assert wait_for(lambda: up(clean_lab.router_vici, "site-b"), timeout=20)
    [sa] = up(clean_lab.router_vici, "site-b")
    assert not sa.initiator, "the router had given up: the branch must be the one that started it"
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    print(f"\nup {time.monotonic() - started:.1f} s after the branch came back, started by it")

    # Both ends start at the same moment (both booting, or the router's retry meeting the
    # branch's): the router drops every IKE packet until both have sent their first, so both
    # negotiations complete together and two IKE SAs come up for one tunnel. After a grace the
    # router's monitor closes the older; closing it starts nothing on either end.
    strongswan.stream(clean_lab.router_vici, "terminate", "control-log",
                      {"ike": "site-b", "timeout": 5000})
    assert wait_for(lambda: not sas(clean_lab.router_vici, "site-b")
                    and not sas(clean_lab.remote_vici, "site-b"), timeout=10)
    time.sleep(2)
    assert not sas(clean_lab.router_vici, "site-b"), "a closed tunnel must stay closed"
    router_nft(clean_lab, *HOLD)
    try:
        racers = [threading.Thread(target=initiate, args=(vici, "site-b"))
                  for vici in (clean_lab.router_vici, clean_lab.remote_vici)]
        for racer in racers:
            racer.start()
        assert wait_for(lambda: sas(clean_lab.router_vici, "site-b")
                        and sas(clean_lab.remote_vici, "site-b"), timeout=10)
    finally:
        router_nft(clean_lab, "delete table inet wuihold")
    ids, seen, most = set(), [], 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        router, branch = sas(clean_lab.router_vici, "site-b"), sas(clean_lab.remote_vici, "site-b")
        ids |= {sa.unique_id for sa in router if sa.state == "ESTABLISHED"}
        if not seen or seen[-1][0] != (len(router), len(branch)):
            seen.append(((len(router), len(branch)), round(60 - (deadline - time.monotonic()), 1)))
        most = max(most, len(router), len(branch))
        time.sleep(0.2)
    for racer in racers:
        racer.join(timeout=15)
    print(f"\nIKE SAs (router, branch) from when both started at once, at s: {seen}; "
          f"the router had {len(ids)} established")
    assert len(ids) >= 2, "both negotiations should have completed: the race did not happen"
    assert most <= 2, f"duplicates piled up: {seen}"
    assert len(up(clean_lab.router_vici, "site-b")) == 1 and len(up(clean_lab.remote_vici, "site-b")) == 1
    assert seen[-1][0] == (1, 1) and seen[-1][1] < 45, f"one SA left within the minute, and kept: {seen}"
    assert cell(browser, "site-b").get("state") == "up"


def test_a_tunnel_the_remote_starts_is_shown_up_and_who_started_it(serve, clean_lab):
    live = serve()
    browser = live.browser()
    form = peer_form(start_action="none", dpd_action="clear")
    peer = as_peer(form)
    assert browser.post("/peers", form, htmx=True).status == 204
    # Waited on, not slept on: the branch's first try must find the router's connection loaded.
    assert wait_for(lambda: "site-b" in router_conns(clean_lab))
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "waiting"), cell(browser, "site-b")
    load_other_side(clean_lab, peer, psk="not-the-key-we-agreed-0")
    shown = wait_for(lambda: (c := cell(browser, "site-b")).get("state") == "down" and c, timeout=20)
    assert shown, cell(browser, "site-b")
    assert f"when {REMOTE_WAN} initiated" in shown["text"], shown
    assert not up(clean_lab.router_vici, "site-b")

    # The branch's key is fixed. Its connection is unchanged, so loading it starts nothing, and
    # charon never retries after AUTHENTICATION_FAILED: its administrator starts it once.
    load_other_side(clean_lab, peer)
    initiate(clean_lab.remote_vici, "site-b")
    assert wait_for(lambda: up(clean_lab.router_vici, "site-b"), timeout=20)
    [sa] = up(clean_lab.router_vici, "site-b")
    assert not sa.initiator and sa.remote_host == REMOTE_WAN
    shown = wait_for(lambda: (c := cell(browser, "site-b")).get("state") == "up" and c)
    assert shown, cell(browser, "site-b")
    assert "when" not in shown["text"], "a reason is history once the tunnel is up"
    pane = browser.get("/commands/status", htmx=True).text
    assert "the other side" in pane
