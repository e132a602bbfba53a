"""A peer's page (webui/blueprints/tunnel.py) with the fake drivers: what it shows, what its
buttons do on the plain and the htmx paths, and the tunnel test's checks and limits."""
from __future__ import annotations

import html
import re
import time

import pytest

from tests.conftest import valid_peer_form
from webui.drivers import ChildSA, IkeSA

SA = IkeSA(name="branch-a", unique_id=7, state="ESTABLISHED", version=2, local_host="192.0.2.1",
           remote_host="192.0.2.2", local_id="192.0.2.1", remote_id="branch.example.com",
           initiator=True, encryption="AES_CBC-256", integrity="HMAC_SHA2_256_128",
           prf="PRF_HMAC_SHA2_256", dh_group="CURVE_25519", established_for=120, rekey_in=3000,
           children=(ChildSA(name="branch-a", state="INSTALLED", protocol="ESP",
                             encryption="AES_GCM_16-256", local_ts=("198.51.100.0/24",),
                             remote_ts=("203.0.113.0/24",), bytes_in=1000, bytes_out=2000,
                             packets_in=10, packets_out=20, rekey_in=900, spi_in="c1a2b3c4",
                             spi_out="d5e6f708", unique_id=9),))


@pytest.fixture
def peer(browser):
    assert browser.post("/peers", valid_peer_form()).status_code == 303
    return "branch-a"


def fakes(app):
    drivers = app.extensions["webui"].drivers
    return drivers.ipsec, drivers.kernel


def test_the_peer_list_links_each_row_to_its_page(browser, peer):
    assert 'href="/peers/branch-a"' in browser.get("/").get_data(as_text=True)


def test_the_page_shows_the_sas_as_negotiated(app, browser, peer):
    ipsec, _ = fakes(app)
    ipsec.sas.append(SA)
    page = browser.get("/peers/branch-a")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    for shown in ("IKE SA #7", "branch.example.com", "AES_CBC-256 / HMAC_SHA2_256_128",
                  "CURVE_25519", "AES_GCM_16-256", "c1a2b3c4", "d5e6f708", "198.51.100.0/24 → 203.0.113.0/24",
                  "Rekey IKE", "Reauthenticate", "Terminate", 'data-state="up"'):
        assert shown in text, shown
    assert ">Disconnect</button>" in text and ">Connect</button>" not in text, "up: no Connect"
    # the places sections 3 and 4 fill
    assert 'id="section-why"' in text and 'id="section-log"' in text


@pytest.mark.parametrize("nat,said", [
    (dict(nat_remote=True), "charon detected NAT: the other side seems to be behind one (or the "
                            "other side forces UDP encapsulation)"),
    (dict(nat_local=True), "charon detected NAT: this router seems to be behind one"),
    (dict(nat_local=True, nat_remote=True), "charon detected NAT: this router and the other side "
                                            "seem to be behind one (or the other side forces UDP "
                                            "encapsulation)"),
    (dict(nat_local=True, nat_forced=True), "UDP encapsulation forced"),
    ({}, None)])
def test_the_nat_line_says_it_is_what_charon_detected(app, browser, peer, nat, said):
    from dataclasses import replace
    ipsec, _ = fakes(app)
    ipsec.sas.append(replace(SA, **nat))
    text = html.unescape(browser.get("/peers/branch-a").get_data(as_text=True))
    shown = re.search(r"<dt>NAT</dt><dd>([^<]*)</dd>", text)
    assert (shown and shown.group(1)) == said


def test_without_an_sa_the_page_says_so_and_offers_no_sa_button(browser, peer):
    text = browser.get("/peers/branch-a").get_data(as_text=True)
    assert "strongSwan has no SA for branch-a" in text
    assert "Rekey IKE" not in text and "Connect" in text


def test_an_unknown_peer_is_404(browser):
    assert browser.get("/peers/nobody").status_code == 404
    assert browser.post("/peers/nobody/tunnel/connect").status_code == 404


def test_the_now_poll_answers_204_while_nothing_changed(browser, peer):
    fragment = browser.get("/peers/branch-a/now", htmx=True).get_data(as_text=True)
    key = re.search(r'/peers/branch-a/now\?v=([^"]+)"', fragment).group(1)
    assert browser.get(f"/peers/branch-a/now?v={key}", htmx=True).status_code == 204
    changed = browser.get("/peers/branch-a/now?v=stale", htmx=True)
    assert changed.status_code == 200
    # History comes along, so a drop Now shows is in its rows at once (review25 m2)
    assert re.search(r'<section[^>]*id="section-history"[^>]*hx-swap-oob="true"',
                     changed.get_data(as_text=True))


@pytest.mark.parametrize("verb, sa, said", [
    ("rekey-ike", "7", "IKE SA #7 of branch-a is rekeying."),
    ("reauthenticate", "7", "IKE SA #7 of branch-a is reauthenticating."),
    ("rekey-child", "9", "CHILD_SA #9 of branch-a is rekeying."),
    ("terminate-child", "9", "CHILD_SA #9 of branch-a is closed."),
    ("rekey-child", "8", "CHILD_SA #8 is no longer there"),
])
def test_sa_buttons_act_on_that_sa_and_say_so_inline(app, browser, peer, verb, sa, said):
    ipsec, _ = fakes(app)
    ipsec.sas.append(SA)
    r = browser.post(f"/peers/branch-a/tunnel/{verb}", {"sa": sa}, htmx=True)
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and said in text
    assert re.search(r'<div id="now"[^>]* hx-swap-oob="true"', text), "the Now section comes along, out of band"
    # it stays until the next action: its time says when it was true (review25 m1)
    assert re.search(re.escape(said) + r'[^<]* <small class="live">\(at \d\d:\d\d:\d\d\)</small>', text)


def test_an_sa_of_another_peer_is_not_acted_on(app, browser, peer):
    ipsec, _ = fakes(app)
    ipsec.sas.append(SA)
    browser.post("/peers", valid_peer_form(name="branch-b", remote_networks="10.9.0.0/16"))
    r = browser.post("/peers/branch-b/tunnel/rekey-ike", {"sa": "7"}, htmx=True)
    assert "IKE SA #7 is no longer there" in r.get_data(as_text=True)
    assert not [c for c in ipsec.calls if c[0] == "rekeying"]


def test_without_javascript_an_action_redirects_to_the_page_with_its_outcome(app, browser, peer):
    ipsec, _ = fakes(app)
    ipsec.sas.append(SA)
    r = browser.post("/peers/branch-a/tunnel/rekey-ike", {"sa": "7"})
    assert r.status_code == 303 and r.headers["Location"] == "/peers/branch-a"
    assert "IKE SA #7 of branch-a is rekeying." in browser.get("/peers/branch-a").get_data(as_text=True)


def as_monitor_has_it(ipsec, monkeypatch, tunnel, sas=(), listed_ago=0.0):
    """The fake's snapshot replaced by one the monitor could hold: `tunnel` and `sas`, charon
    last answering now and its SAs listed `listed_ago` seconds before."""
    from webui.drivers import StateSnapshot
    now = time.time()
    snap = StateSnapshot(version=9, tunnels={tunnel.name: tunnel}, sas=tuple(sas),
                         loaded=frozenset({tunnel.name}), confirmed_at=now,
                         listed_at={tunnel.name: now - listed_ago})
    monkeypatch.setattr(ipsec, "snapshot", lambda: snap)
    return now


def buttons(text):
    return re.findall(r">(Connect|Disconnect)</button>", text)


@pytest.mark.parametrize("tunnel, offered", [
    (dict(state="down", disconnected=True, reason="disconnected by the admin"), ["Connect"]),
    (dict(state="down", ever_up=True, reason="peer not responding"), ["Connect"]),
    (dict(state="down", ever_up=True, reason="peer not responding", retry_at=1e10),
     ["Connect", "Disconnect"]),  # Disconnect stops the retries
    (dict(state="connecting"), ["Disconnect"]),
], ids=["disconnected", "down, nothing to take down", "down, retrying", "connecting"])
def test_now_offers_the_button_that_makes_sense(app, browser, peer, monkeypatch, tunnel, offered):
    from webui.drivers import TunnelState
    ipsec, _ = fakes(app)
    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", **tunnel))
    assert buttons(browser.get("/peers/branch-a").get_data(as_text=True)) == offered


def test_a_terminated_child_reads_down_on_purpose_and_offers_connect(app, browser, peer,
                                                                    monkeypatch):
    from webui.drivers import TunnelState
    ipsec, _ = fakes(app)
    ike_only = IkeSA(name="branch-a", unique_id=7, state="ESTABLISHED", version=2,
                     established_for=60)
    as_monitor_has_it(ipsec, monkeypatch, TunnelState(
        "branch-a", "ike-up", ike_up=True, disconnected=True, reason_at=time.time(),
        reason="child SA terminated by the admin"), [ike_only])
    text = html.unescape(browser.get("/peers/branch-a").get_data(as_text=True))
    assert 'data-state="disconnected"' in text and "no tunnel until Connect" in text
    assert buttons(text) == ["Connect", "Disconnect"], "Connect builds it again; Disconnect ends IKE"


def test_the_summary_and_the_sa_age_are_on_one_clock(app, browser, peer, monkeypatch):
    from webui.drivers import TunnelState
    ipsec, _ = fakes(app)
    # listed 10 s before charon last answered: the SA was 120 s old then. Everything is as of
    # that listing, the counters included (they cannot be carried forward, so neither are ages)
    now = as_monitor_has_it(ipsec, monkeypatch, TunnelState(
        "branch-a", "up", ike_up=True, up_since=time.time() - 130, local_ts=SA.children[0].local_ts,
        remote_ts=SA.children[0].remote_ts), [SA], listed_ago=10)
    text = browser.get("/peers/branch-a").get_data(as_text=True)
    assert "<small>for 2m 0s</small>" in text and "Established</dt><dd>2m 0s ago" in text, text
    assert f"as of {time.strftime('%H:%M:%S', time.localtime(now - 10))}" in text
    assert "Rekey in</dt><dd>50m 0s" in text and ">15m 0s</td>" in text, "timers too"


def test_now_says_when_strongswan_is_still_replacing_an_sa(app, browser, peer, monkeypatch):
    from dataclasses import replace
    from webui.drivers import TunnelState
    ipsec, _ = fakes(app)
    rekeying = replace(SA, children=(replace(SA.children[0], state="REKEYED"),
                                     replace(SA.children[0], unique_id=10, spi_in="aa")))
    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "up"), [rekeying])
    assert 'id="now-changing"' in browser.get("/peers/branch-a").get_data(as_text=True)
    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "up"), [SA])
    assert 'id="now-changing"' not in browser.get("/peers/branch-a").get_data(as_text=True)


def test_actions_need_the_csrf_token(browser, peer):
    r = browser.client.post("/peers/branch-a/tunnel/connect", data={})
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and "<html" in text and "reload the page, and try again" in text
    r = browser.client.post("/peers/branch-a/tunnel/connect", data={"csrf_token": "stale"})
    assert r.status_code == 400 and "the form had expired" in r.get_data(as_text=True)
    r = browser.client.post("/peers/branch-a/tunnel/connect", headers={"HX-Request": "true"})
    assert r.status_code == 400 and r.headers["X-Form-Expired"] == "true", "htmx: app.js's banner"
    assert r.mimetype == "text/plain" and "<" not in r.get_data(as_text=True)
    assert r.get_data(as_text=True).startswith("Nothing was changed: the form had expired.")
    assert "Reload the page and try again." in r.get_data(as_text=True)
    r = browser.client.post("/peers/branch-a/tunnel/connect", headers={"HX-Request": "true",
                                                                       "X-CSRFToken": "stale"})
    assert r.status_code == 400 and r.headers["X-Form-Expired"] == "true"


def test_connect_on_a_daemon_that_is_down_says_so_with_503(app, browser, peer):
    ipsec, _ = fakes(app)
    ipsec.fail = True
    r = browser.post("/peers/branch-a/tunnel/connect", htmx=True)
    assert r.status_code == 503 and "strongSwan is not running" in r.get_data(as_text=True)


# --- Test the tunnel ----------------------------------------------------------------------------

@pytest.mark.parametrize("host, said", [
    ("", "Enter the address of a host in 203.0.113.0/24."),
    ("203.0.113.0", "the network's own address"),
    ("203.0.113.255", "203.0.113.255 is the broadcast address of 203.0.113.0/24"),
    ("10.1.2.3", "10.1.2.3 is not inside the peer's remote networks (203.0.113.0/24)."),
    ("203.0.113.1; reboot", "is not an IP address"),
    ("2001:db8::1", "not inside the peer's remote networks"),
])
def test_a_test_host_outside_the_remote_networks_is_refused_next_to_the_field(app, browser, peer,
                                                                              host, said):
    _, kernel = fakes(app)
    r = browser.post("/peers/branch-a/test", {"host": host}, htmx=True)
    text = html.unescape(r.get_data(as_text=True))
    assert r.status_code == 422 and said in text and 'id="test-host-error"' in text
    assert kernel.pinged == []


def test_a_test_pings_from_the_routers_address_in_the_local_network(app, browser, peer):
    _, kernel = fakes(app)
    kernel.replies["203.0.113.5"] = 4
    r = browser.post("/peers/branch-a/test", {"host": "203.0.113.5"}, htmx=True)
    text = r.get_data(as_text=True)
    assert r.status_code == 200
    assert kernel.pinged == [("198.51.100.1", "203.0.113.5")]
    assert "4 of 4 replied" in text and "sent from 198.51.100.1" in text and "Round trips" in text
    assert "The tunnel is not up: the packets did not go into it." in text


def test_without_javascript_the_test_answers_with_the_page(app, browser, peer):
    r = browser.post("/peers/branch-a/test", {"host": "203.0.113.5"})
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and "<html" in text and "0 of 4 replied" in text


def test_with_no_local_address_the_test_says_so_and_sends_nothing(app, browser):
    browser.post("/peers", valid_peer_form(local_networks="10.50.0.0/16"))
    _, kernel = fakes(app)
    r = browser.post("/peers/branch-a/test", {"host": "203.0.113.5"}, htmx=True)
    assert "This router has no address inside the peer's local networks (10.50.0.0/16)" in \
        html.unescape(r.get_data(as_text=True))
    assert kernel.pinged == []


def test_tests_are_rate_limited(app, browser, peer):
    _, kernel = fakes(app)
    assert browser.post("/peers/branch-a/test", {"host": "203.0.113.5"}, htmx=True).status_code == 200
    r = browser.post("/peers/branch-a/test", {"host": "203.0.113.6"}, htmx=True)
    assert r.status_code == 429 and "at most one every" in r.get_data(as_text=True)
    assert len(kernel.pinged) == 1


# --- The kernel driver's ping: argument list and output, without running it -------------------

from webui.drivers.kernel import parse_ping, ping_argv  # noqa: E402

IPUTILS = """PING 203.0.113.1 (203.0.113.1) from 198.51.100.1 : 56(84) bytes of data.
64 bytes from 203.0.113.1: icmp_seq=1 ttl=64 time=0.412 ms
64 bytes from 203.0.113.1: icmp_seq=2 ttl=64 time=0.298 ms

--- 203.0.113.1 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.298/0.355/0.412/0.057 ms
"""
BUSYBOX = """PING 203.0.113.1 (203.0.113.1): 56 data bytes
64 bytes from 203.0.113.1: seq=0 ttl=64 time=1.210 ms

--- 203.0.113.1 ping statistics ---
4 packets transmitted, 1 packets received, 75% packet loss
round-trip min/avg/max = 1.210/1.210/1.210 ms
"""


def test_ping_output_is_read_from_iputils_and_busybox():
    iputils = parse_ping(IPUTILS)
    assert (iputils.sent, iputils.received, iputils.rtts) == (3, 2, (0.412, 0.298))
    busybox = parse_ping(BUSYBOX)
    assert (busybox.sent, busybox.received, busybox.rtts) == (4, 1, (1.21,))
    assert parse_ping("ping: bind: Cannot assign requested address\n").error


def test_ping_is_an_argument_list_bounded_in_time():
    argv = ping_argv("198.51.100.1", "203.0.113.1", 4, 5.0)
    assert argv == ["ping", "-n", "-c", "4", "-W", "1", "-w", "5", "-I", "198.51.100.1",
                    "203.0.113.1"]
    assert "-n" not in ping_argv("198.51.100.1", "203.0.113.1", 4, 5.0, busybox=True)


# --- History --------------------------------------------------------------------------------------

def test_the_history_shows_transitions_uptime_flaps_and_the_chart(app, browser, peer):
    ipsec, _ = fakes(app)
    now = time.time()
    ipsec.transitions["branch-a"] = [(now - 1800, "down", "up", ""),
                                     (now - 600, "up", "down", "peer not responding <b>x</b>"),
                                     (now - 300, "down", "up", "")]
    ipsec.samples["branch-a"] = [(now - 60 * k, 6000 * (30 - k), 600 * (30 - k))
                                 for k in range(30, 0, -1)]
    page = browser.get("/peers/branch-a").get_data(as_text=True)
    section = page[page.index('id="section-history"'):page.index('id="section-why"')]
    assert re.search(r"Up 83\.\d %</strong> of the time it was meant to be up, over the last 30m",
                     section), section[:600]
    assert "1 flap</strong>" in section
    assert "peer not responding &lt;b&gt;x&lt;/b&gt;" in section, "reasons are escaped"
    assert section.count('<rect class="down"') == 1 and '<path class="in" d="M' in section
    assert "in, peak 100 B/s" in section
    fragment = browser.get("/peers/branch-a/history", htmx=True).get_data(as_text=True)
    assert fragment.startswith('<section class="card" aria-labelledby="history-heading"')


def test_a_peer_with_no_history_says_so(browser, peer):
    page = browser.get("/peers/branch-a").get_data(as_text=True)
    assert "Nothing recorded yet" in page and "No traffic samples in the last hour" in page


def test_the_peer_list_shows_each_state_without_waiting_for_a_poll(app, browser, peer, monkeypatch):
    """Review 24 M3: without JavaScript nothing polls, so the page itself carries the states
    (from the monitor's snapshot), their age, and the version the first poll would send."""
    from webui.drivers import TunnelState
    from webui.formatting import clock
    ipsec, _ = fakes(app)
    now = as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "up", established_for=5))
    text = browser.get("/").get_data(as_text=True)
    cell = re.search(r'<td id="state-branch-a"[^>]*>.*?</td>', text, re.S).group(0)
    assert 'data-state="up"' in cell and ">up</span>" in cell and "…" not in cell
    assert f'<p id="states-age" class="live">as of {clock(now)}</p>' in text
    key = re.search(r'id="states-version" hidden><input type="hidden" name="v" value="([^"]+)"', text)
    assert browser.get(f"/peers/states?v={key.group(1)}", htmx=True).status_code == 204, \
        "the page is that version already: the first poll renders nothing"
    assert re.search(r'<p id="status-error"[^>]*hidden></p>', text)

    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "down", reason="no answer"))
    cell = re.search(r'<td id="state-branch-a"[^>]*>', browser.get("/").get_data(as_text=True)).group(0)
    assert 'data-state="down"' in cell


def test_the_peer_list_says_why_when_the_states_are_not_current(app, browser, peer, monkeypatch):
    from dataclasses import replace
    from webui.drivers import TunnelState
    ipsec, _ = fakes(app)
    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "up"))
    stale = replace(ipsec.snapshot(), unanswered_since=time.time(), error="strongSwan does not answer")
    monkeypatch.setattr(ipsec, "snapshot", lambda: stale)
    text = browser.get("/").get_data(as_text=True)
    assert re.search(r'<p id="status-error" class="banner error" role="status">[^<]*strongSwan does not answer', text)
    assert '<p id="states-age" class="live"></p>' in text, "no 'as of' beside a problem"


def test_why_says_the_remote_closed_it_when_it_sent_a_delete(app, browser, peer, monkeypatch):
    """Not "nothing this page can explain (its state: closed by the remote …)": the remote's
    DELETE is the whole story this side has (a fresh-eyes review)."""
    from webui.drivers import TunnelState
    from webui.drivers.monitor import CLOSED_BY_REMOTE
    ipsec, _ = fakes(app)
    at = time.time() - 5
    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "down", reason=CLOSED_BY_REMOTE,
                                                      reason_at=at, ever_up=True))
    text = re.sub(r"\s+", " ", browser.get("/peers/branch-a").get_data(as_text=True))
    assert (f"The remote closed the tunnel: it sent a DELETE at "
            f"{time.strftime('%H:%M:%S', time.localtime(at))}.") in text
    assert "nothing this page can explain" not in text


def test_a_failure_from_before_the_tunnel_last_came_up_is_not_this_outages_reason(
        app, browser, peer, monkeypatch):
    """A wrong key, fixed; the tunnel came up; then the remote closed it. "Why it is down" must
    not blame the key again (a fresh-eyes review saw it), and History's outage is not over."""
    from webui.drivers import LogLine, Transition, TunnelState
    from webui.drivers.monitor import CLOSED_BY_REMOTE
    ipsec, _ = fakes(app)
    service = app.extensions["webui"]
    now = time.time()
    failed, up, closed = now - 300, now - 200, now - 20
    lines = [LogLine(failed - 1, 0, 5, "initiating IKE_SA branch-a[5] to 192.0.2.2"),
             LogLine(failed, 1, 5, "received AUTHENTICATION_FAILED notify error")]
    history = [Transition(failed, "connecting", "down", "authentication failed"),
               Transition(up, "down", "up"), Transition(closed, "up", "down", CLOSED_BY_REMOTE)]
    monkeypatch.setattr(service, "log_lines", lambda name: lines)
    monkeypatch.setattr(service, "history", lambda name: history)
    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "down", reason=CLOSED_BY_REMOTE,
                                                      reason_at=closed, ever_up=True, since=closed))
    text = html.unescape(re.sub(r"\s+", " ", browser.get("/peers/branch-a").get_data(as_text=True)))
    assert "The remote closed the tunnel: it sent a DELETE" in text
    assert "refused this router's authentication" not in text
    assert f"Not up: {time.strftime('%H:%M:%S', time.localtime(failed))}–" in text
    assert f"since {time.strftime('%H:%M:%S', time.localtime(closed))} (" in text and "so far)" in text

    history.pop()  # the same failure while it is the latest thing that happened: it is the reason
    as_monitor_has_it(ipsec, monkeypatch, TunnelState("branch-a", "down", reason="authentication",
                                                      reason_at=failed, since=failed))
    monkeypatch.setattr(service, "history", lambda name: history[:1])
    text = html.unescape(re.sub(r"\s+", " ", browser.get("/peers/branch-a").get_data(as_text=True)))
    assert "refused this router's authentication" in text
