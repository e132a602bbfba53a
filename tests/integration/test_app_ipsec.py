"""Issue 3 through the web app: HTTP requests to the app under waitress, managing the lab router's
real charon, with the lab's remote site as the other end. Nothing here is faked."""
from __future__ import annotations

import logging
import re
import time

import pytest

from tests.integration.conftest import peer_form, wait_for
from webui.drivers import strongswan
from webui.peers import ALGORITHMS, Peer
from tests.lab import REMOTE_LAN, ROUTER_LAN


def as_peer(form: dict) -> Peer:
    """The Peer a form describes, to configure the lab's remote site as its mirror."""
    lists = ("ike_encryption", "ike_integrity", "ike_dh_groups", "esp_encryption", "esp_integrity",
             "esp_dh_groups", "firewall")
    fields = {k: tuple(v) if k in lists else v for k, v in form.items() if k not in ("enabled",)}
    fields["local_networks"] = tuple(re.split(r"[,\n]\s*", fields["local_networks"]))
    fields["remote_networks"] = tuple(re.split(r"[,\n]\s*", fields["remote_networks"]))
    for name in ("ike_version", "keying_retries", "dpd_delay", "ike_rekey_time", "child_rekey_time"):
        if name in fields:
            fields[name] = int(fields[name])
    for name in ("ike_reauth", "encap", "disable_mobike", "aggressive"):
        if name in fields:
            fields[name] = fields[name] == "y"
    if fields["remote_gateway"] == "any":
        fields["remote_gateway"] = "%any"
    return Peer(**fields)


def cell(browser, name) -> dict:
    """The peer's status cell as the page's poll gets it: state, counters and text."""
    text = browser.get("/peers/states", htmx=True).text
    m = re.search(rf'<td id="state-{re.escape(name)}"([^>]*)>(.*?)</td>', text, re.S)
    assert m, f"no status cell for {name}"
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1)))
    attrs["text"] = re.sub(r"<[^>]+>", " ", m.group(2))
    return attrs


def router_conns(lab) -> list[str]:
    return [name.decode() for name in strongswan.call(lab.router_vici, "get-conns").get("conns", [])]


def add_peer(browser, lab, form, remote_psk=None):
    lab.load_remote_mirror(as_peer(form), psk=remote_psk)
    page = browser.post("/peers", form, htmx=True)
    assert page.status == 204, page.text[:2000]


@pytest.mark.parametrize("version", ["2", "1"], ids=["IKEv2", "IKEv1"])
def test_a_saved_peer_is_a_working_tunnel(live, clean_lab, version):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form(ike_version=version))
    up = wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=10)
    assert up, cell(browser, "site-b")

    status = browser.get("/commands/status", htmx=True).text
    assert "ESTABLISHED" in status and "INSTALLED" in status and f"IKEv{version}" in status
    assert "198.51.100.0/24 → 203.0.113.0/24" in status

    before = cell(browser, "site-b")
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=3)
    # Counters come from the monitor's periodic list-sas: every poll period while pages poll,
    # up to QUIET_STRETCH periods apart while nothing moved (webui/drivers/monitor.py).
    after = wait_for(lambda: (now := cell(browser, "site-b"))
                     and int(now["bytes-in"]) > int(before["bytes-in"]) and now, timeout=10)
    assert after and int(after["bytes-out"]) > int(before["bytes-out"]), (before, after)
    status_after = browser.get("/commands/status", htmx=True).text
    assert re.search(r"\d+ pkts", status_after) and " 0 pkts" not in status_after.split("Child SA")[1]


@pytest.mark.parametrize("version", ["2", "1"], ids=["IKEv2", "IKEv1"])
def test_several_remote_networks_all_pass_traffic(live, clean_lab, version):
    clean_lab.exec("remote", ["ip", "addr", "add", "10.88.0.1/24", "dev", "lo"])
    try:
        browser = live.browser()
        add_peer(browser, clean_lab, peer_form(ike_version=version,
                                               remote_networks="203.0.113.0/24\n10.88.0.0/24"))
        assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
        assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1), timeout=5)
        assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN, "10.88.0.1", count=1), timeout=5)
    finally:
        clean_lab.exec("remote", ["ip", "addr", "del", "10.88.0.1/24", "dev", "lo"])


def test_the_form_offers_what_this_charon_supports(live):
    supported = live.applier.drivers.ipsec.supported_algorithms()
    # Debian's charon with its default plugins does all of these: the mapping must find them.
    assert {"aes256", "aes128gcm16", "sha256", "ecp256", "curve25519", "modp2048"} <= supported
    form = live.browser().get("/peers/new").text
    for keyword in ALGORITHMS:
        assert (f'value="{keyword}"' in form) == (keyword in supported), keyword


def test_wrong_psk_on_the_remote_shows_down_with_the_reason(live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form(keying_retries="1"), remote_psk="not-the-same-key-at-all")
    down = wait_for(lambda: "authentication failed" in cell(browser, "site-b")["text"], timeout=15)
    assert down, cell(browser, "site-b")
    assert cell(browser, "site-b")["state"] == "down"
    connect = browser.post("/peers/site-b/connect", htmx=True)
    assert "authentication failed" in connect.text


def test_editing_networks_renegotiates_and_deleting_unloads(live, clean_lab):
    browser = live.browser()
    form = peer_form()
    add_peer(browser, clean_lab, form)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")

    edited = dict(form, remote_networks="203.0.113.0/25", psk="")
    clean_lab.load_remote_mirror(as_peer(dict(edited, psk=form["psk"])))
    assert browser.post("/peers/site-b", edited, htmx=True).status == 204
    renegotiated = wait_for(lambda: "198.51.100.0/24 → 203.0.113.0/25" in
                            browser.get("/commands/status", htmx=True).text)
    assert renegotiated
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)

    assert browser.request("DELETE", "/peers/site-b", htmx=True).status == 200
    assert "site-b" not in router_conns(clean_lab)
    assert wait_for(lambda: 'id="status-site-b"' not in browser.get("/commands/status", htmx=True).text)
    assert not clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1)


def test_restart_ipsec_really_restarts_and_reloads_every_peer(live, clean_lab, caplog):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    pid_before = clean_lab._pidfile("router").read_text()
    log = clean_lab.charon_log("router")
    log_before = log.stat().st_size

    with caplog.at_level(logging.INFO, logger="webui.apply"):
        page = browser.post("/commands/restart", htmx=True)
        assert page.status == 200
        assert "failed" not in page.text, page.text
        assert "Load 1 of 1 enabled peer(s)" in page.text
        assert clean_lab._pidfile("router").read_text() != pid_before, "charon was not restarted"
        assert router_conns(clean_lab) == ["site-b"]
        assert wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=15)
        assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)
        # The UI's listener found the new charon too, and left its loading to the restart.
        assert wait_for(lambda: "loaded already" in caplog.text, timeout=10), caplog.text
    assert "loading the configured peers" not in caplog.text
    with open(log, "rb") as f:
        f.seek(log_before)
        loaded = re.findall(rb"(?:added|updated|replaced) vici connection: site-b", f.read())
    assert len(loaded) == 1, loaded


def test_charon_killed_the_ui_keeps_working_and_applies_later(live, clean_lab):
    browser = live.browser()
    clean_lab.stop_router_charon()
    for path in ("/", "/peers/new", "/commands/interfaces", "/commands/routes"):
        assert browser.get(path).status == 200, path
    # The status pane reads the monitor's snapshot: it says so once the monitor has seen it.
    status = wait_for(lambda: (page := browser.get("/commands/status", htmx=True)).status == 503
                      and "strongSwan is not running" in page.text and page, timeout=5)
    assert status and "strongSwan has not answered since" in status.text

    form = peer_form()
    clean_lab.load_remote_mirror(as_peer(form))
    assert browser.post("/peers", form, htmx=True).status == 204
    assert "not applied" in browser.get("/").text
    assert "strongSwan is not running" in browser.get("/peers/states", htmx=True).text

    clean_lab.start_router_charon()
    # No request needed: the UI's listener reconnects to charon and applies what was waiting.
    assert wait_for(lambda: router_conns(clean_lab) == ["site-b"], timeout=15)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=15)
    assert "not applied" not in browser.get("/").text


def test_charon_restarted_behind_the_uis_back_gets_its_peers_back(live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    clean_lab.restart_router_charon()  # as `systemctl restart strongswan` by someone else would
    assert wait_for(lambda: router_conns(clean_lab) == ["site-b"], timeout=15)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=15)


def test_fifty_peers_saved_through_the_ui_are_all_loaded(live, clean_lab, capsys):
    browser = live.browser()
    started = time.monotonic()
    for i in range(50):
        form = peer_form(name=f"branch-{i:02d}", remote_networks=f"10.60.{i}.0/24",
                         peer_id=f"branch-{i:02d}.example")
        page = browser.post("/peers", form, htmx=True)
        assert page.status == 204, page.text[:500]
    took = time.monotonic() - started
    loaded = router_conns(clean_lab)
    assert sorted(loaded) == [f"branch-{i:02d}" for i in range(50)]
    with capsys.disabled():
        print(f"\n50 peers saved and applied through the UI in {took:.2f} s "
              f"({took / 50 * 1000:.0f} ms per peer, HTTP included)")
