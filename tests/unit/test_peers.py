"""Peers over HTTP: create, edit, rename, disable, delete, on the plain and the htmx paths."""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Browser, valid_peer_form


def stored(data_dir) -> dict:
    doc = json.loads((data_dir / "peers.json").read_text())
    return {p["name"]: p for p in doc["peers"].values()}


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_create_edit_rename_disable_delete(browser, data_dir, make_app, htmx):
    r = browser.post("/peers", valid_peer_form(), htmx=htmx)
    if htmx:
        assert r.status_code == 204 and r.headers["HX-Redirect"] == "/"
    else:
        assert r.status_code == 303 and r.headers["Location"] == "/"
    assert stored(data_dir)["branch-a"]["remote_networks"] == ["203.0.113.0/24"]

    r = browser.post("/peers/branch-a", valid_peer_form(remote_networks="203.0.113.0/25\n10.9.0.0/16",
                                                         psk=""), htmx=htmx)
    assert r.status_code in (204, 303)
    peer = stored(data_dir)["branch-a"]
    assert peer["remote_networks"] == ["203.0.113.0/25", "10.9.0.0/16"]
    assert peer["psk"] == "correct-horse-battery-staple-42", "an empty PSK on edit keeps the stored one"

    r = browser.post("/peers/branch-a", valid_peer_form(name="branch-b", enabled=None, psk=""),
                     htmx=htmx)
    assert r.status_code in (204, 303)
    assert set(stored(data_dir)) == {"branch-b"}
    assert stored(data_dir)["branch-b"]["enabled"] is False

    # An app restart (a new process would do the same) reads what was saved.
    again = Browser(make_app().test_client())
    page = again.get("/").get_data(as_text=True)
    assert "branch-b" in page and "branch-a" not in page

    if htmx:
        r = again.delete("/peers/branch-b")
        # The last peer: the table gives way to the empty state, which says what to do next.
        assert r.status_code == 200 and r.headers["HX-Retarget"] == "#peer-table"
        assert "No peers yet" in r.get_data(as_text=True)
    else:
        assert "Delete peer branch-b?" in again.get("/peers/branch-b/delete").get_data(as_text=True)
        r = again.post("/peers/branch-b/delete")
        assert r.status_code == 303
    assert stored(data_dir) == {}
    assert again.get("/peers/branch-b/edit").status_code == 404


def test_htmx_delete_of_one_of_several_peers_removes_just_its_row(browser):
    browser.post("/peers", valid_peer_form())
    browser.post("/peers", valid_peer_form(name="branch-b", remote_networks="10.9.0.0/16"))
    r = browser.delete("/peers/branch-a")
    assert r.status_code == 200 and "HX-Retarget" not in r.headers
    # Nothing replaces the row; the only element is the notice, swapped out of band.
    assert r.get_data(as_text=True).strip() == \
        '<div id="notice" hx-swap-oob="innerHTML"><p>Peer branch-a deleted.</p></div>'
    assert "branch-b" in browser.get("/").get_data(as_text=True)


def test_the_pages_delete_button_sends_delete_to_a_url_that_takes_it(browser, data_dir):
    """Two rules share the endpoint (DELETE for htmx, POST for the no-script form): the button
    must name the DELETE one."""
    browser.post("/peers", valid_peer_form())
    page = browser.get("/").get_data(as_text=True)
    url = re.search(r'hx-delete="([^"]+)"', page).group(1)
    assert browser.delete(url).status_code == 200
    assert stored(data_dir) == {}


def test_fake_driver_is_told_and_page_says_demo(app, browser):
    browser.post("/peers", valid_peer_form())
    assert "branch-a" in app.extensions["webui"].drivers.ipsec.loaded
    assert "Demo mode" in browser.get("/").get_data(as_text=True)
    browser.post("/peers/branch-a", valid_peer_form(enabled=None, psk=""))
    assert "branch-a" not in app.extensions["webui"].drivers.ipsec.loaded
    assert app.extensions["webui"].drivers.firewall.peers == ("branch-a",)


def test_real_driver_without_charon_says_so(make_app, tmp_path):
    socket = tmp_path / "no-charon.vici"
    browser = Browser(make_app(DRIVER="real", VICI_SOCKET=str(socket), VICI_WATCH=False,
                               NETNS="", LAN_INTERFACES="", WAN_INTERFACES="",
                               RECONCILE_ON_START=False).test_client())
    page = browser.get("/").get_data(as_text=True)
    assert "Demo mode" not in page
    r = browser.get("/commands/status", htmx=True)
    assert r.status_code == 503
    assert f"strongSwan is not running (no VICI socket at {socket})" in r.get_data(as_text=True)


def test_edit_form_never_contains_the_psk(browser):
    browser.post("/peers", valid_peer_form())
    page = browser.get("/peers/branch-a/edit").get_data(as_text=True)
    assert "correct-horse" not in page
    assert 'value="branch-a"' in page


def test_page_and_fragment_share_a_url(browser):
    browser.post("/peers", valid_peer_form())
    page = browser.get("/peers/branch-a/edit")
    fragment = browser.get("/peers/branch-a/edit", htmx=True)
    assert "<html" in page.get_data(as_text=True)
    assert fragment.get_data(as_text=True).lstrip().startswith("<form id=\"peer-form\"")
    assert "HX-Request" in fragment.headers["Vary"]


def test_quick_commands_swap_or_fill_the_page(browser):
    fragment = browser.get("/commands/interfaces", htmx=True).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section class="output" id="output-interfaces"')
    page = browser.get("/commands/interfaces").get_data(as_text=True)
    assert "<html" in page and 'id="output-interfaces"' in page
    restart = browser.post("/commands/restart", htmx=True)
    assert restart.status_code == 200 and "Restart IPsec" in restart.get_data(as_text=True)


def test_daemon_down_is_a_message_not_a_traceback(make_app):
    browser = Browser(make_app(FAKE_FAIL=True).test_client())
    assert browser.get("/").status_code == 200
    r = browser.get("/commands/status", htmx=True)
    assert r.status_code == 503 and "not running" in r.get_data(as_text=True)
    r = browser.post("/peers", valid_peer_form())
    assert r.status_code == 303, "the peer is saved even though strongSwan is down"
    assert "not applied" in browser.get("/").get_data(as_text=True)


def test_reload_all_peers_button_reconciles(app, browser):
    browser.post("/peers", valid_peer_form())
    app.extensions["webui"].drivers.ipsec.loaded.clear()  # as if charon had forgotten everything
    page = browser.get("/").get_data(as_text=True)
    assert 'action="/commands/reconcile"' in page and "Reload all peers" in page
    steps = browser.post("/commands/reconcile", htmx=True).get_data(as_text=True)
    assert "Reload all peers" in steps and "Loaded 1 enabled peer(s)" in steps
    assert set(app.extensions["webui"].drivers.ipsec.loaded) == {"branch-a"}


def _peer(i: int):
    from webui.peers import Peer
    return Peer(name=f"p{i:03d}", local_ip="192.0.2.1", remote_gateway=f"gw{i}.example",
                local_networks=("198.51.100.0/24",), remote_networks=(f"10.{i}.0.0/16",),
                psk="k" * 20)


def test_the_peer_table_pages_and_filters(app, browser):
    store = app.extensions["webui"].store
    for i in range(250):
        store.add(_peer(i))
    first = browser.get("/").get_data(as_text=True)
    assert first.count('<tr id="peer-') == 100 and "Peers 1–100 of 250" in first
    assert 'href="/?page=2" rel="next"' in first and 'id="peer-p099"' in first
    last = browser.get("/?page=3").get_data(as_text=True)
    assert last.count('<tr id="peer-') == 50 and 'id="peer-p249"' in last and 'rel="next"' not in last
    assert browser.get("/?page=99").get_data(as_text=True).count('<tr id="peer-') == 50  # clamped

    found = browser.get("/?q=10.17.0.0").get_data(as_text=True)
    assert found.count('<tr id="peer-') == 1 and 'id="peer-p017"' in found
    assert "matching “10.17.0.0” (250 in all)" in found
    assert "No peer matches" in browser.get("/?q=nothing-like-it").get_data(as_text=True)

    cells = browser.get("/peers/states?page=2", htmx=True).get_data(as_text=True)
    assert cells.count('<td id="state-') == 100 and 'id="state-p100"' in cells
    assert 'id="state-p000"' not in cells
    assert 'hx-get="/peers/states?page=2"' in browser.get("/?page=2").get_data(as_text=True)


def test_status_overview_pages_peers_with_sas_first():
    from webui.status import status_overview
    from webui.drivers import Connection, IkeSA, IPsecStatus
    peers = [_peer(i) for i in range(250)]
    # every second peer of the first 240 has an IKE SA; a third of those are established
    sas = tuple(IkeSA(name=f"p{i:03d}", unique_id=i, state="ESTABLISHED" if i % 3 == 0 else "CONNECTING",
                      version=2) for i in range(0, 240, 2))
    result = IPsecStatus(connections=tuple(Connection(name=p.name, managed=True) for p in peers),
                         sas=sas)
    pages = [status_overview(peers, result, n, 100) for n in (1, 2, 3)]
    assert [(len(o["active"]), len(o["idle"])) for o in pages] == [(100, 0), (20, 80), (0, 50)]
    assert pages[1]["active"][0][0].name == "p200" and pages[1]["idle"][0][0].name == "p001"
    assert [(o["first"], o["last"]) for o in pages] == [(1, 100), (101, 200), (201, 250)]
    assert (pages[0]["established"], pages[0]["negotiating"], pages[0]["without"]) == (40, 80, 130)
    assert status_overview(peers, result, 99, 100)["page"] == 3  # clamped


def test_the_status_pane_pages_and_keeps_its_page_when_it_refreshes(make_app):
    app = make_app(PEERS_PER_PAGE=2)
    browser = Browser(app.test_client())
    for i in range(3):
        app.extensions["webui"].store.add(_peer(i))
    first = browser.get("/commands/status", htmx=True).get_data(as_text=True)
    assert "3 peers:" in first and "Peers 1–2 of 3" in first and 'id="status-p002"' not in first
    assert 'hx-get="/commands/status?page=2"' in first
    # the refresh carries the snapshot's version, so an unchanged pane costs a 204
    assert re.search(r'hx-get="/commands/status\?v=[\w.]+" hx-trigger', first)
    second = browser.get("/commands/status?page=2", htmx=True).get_data(as_text=True)
    assert 'id="status-p002"' in second and 'id="status-p000"' not in second
    assert re.search(r'hx-get="/commands/status\?page=2&amp;v=[\w.]+" hx-trigger', second), \
        "the refresh stays on page 2"
    assert 'rel="prev"' in second and 'rel="next"' not in second


def test_connect_without_javascript_submits_the_shared_form(browser):
    browser.post("/peers", valid_peer_form())
    page = browser.get("/").get_data(as_text=True)
    assert '<form id="tunnel-action" method="post"' in page
    assert 'form="tunnel-action" formaction="/peers/branch-a/connect"' in page
    browser.post("/peers", valid_peer_form(name="branch-b", remote_networks="10.7.0.0/16"))
    two_peers = browser.get("/").get_data(as_text=True)
    assert two_peers.count('name="csrf_token"') == page.count('name="csrf_token"')  # not per row
    r = browser.post("/peers/branch-a/connect")  # what the button sends: the form's token
    assert r.status_code == 303 and r.headers["Location"] == "/"


def test_the_form_names_the_lan_and_wan_interfaces(make_app):
    browser = Browser(make_app(LAN_INTERFACES="br-lan", WAN_INTERFACES="").test_client())
    form = browser.get("/peers/new").get_data(as_text=True)
    assert "LAN means br-lan; WAN means no interface: Forward to WAN allows nothing." in form
    assert "WEBUI_" not in form.split("<main>")[1], "the admin is told interfaces, not variables"


def test_connect_on_a_responder_only_peer_says_it_waits(browser):
    browser.post("/peers", valid_peer_form(remote_gateway="any", peer_id="branch.example",
                                           start_action="none", dpd_action="clear"))
    r = browser.post("/peers/branch-a/connect", htmx=True)
    assert "branch-a waits for the other side to connect (responder only)." in r.text
