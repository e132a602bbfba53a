"""Issue 18: what the admin is told after each change, and where a refused form leaves them."""
from __future__ import annotations

import re

from tests.conftest import ADMIN_PASSWORD, LEAKS, Browser, valid_peer_form
from webui import create_app
from webui.drivers import TunnelState

NEW_PASSWORD = "Another-long-passw0rd"


def notice(page: str) -> str:
    found = re.search(r'<div id="notice" class="notice" role="status">(.*?)</div>', page, re.S)
    assert found, "every page has the notice area, empty or not"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_each_change_says_what_it_did_once(browser):
    assert notice(browser.get("/").get_data(as_text=True)) == ""
    assert browser.post("/peers", valid_peer_form(), htmx=True).status_code == 204
    assert notice(browser.get("/").get_data(as_text=True)) == "Peer branch-a added."
    assert notice(browser.get("/").get_data(as_text=True)) == "", "said once, not on every visit"
    browser.post("/peers/branch-a", valid_peer_form(psk=""))
    assert notice(browser.get("/").get_data(as_text=True)) == "Changes to branch-a saved."
    browser.post("/peers/branch-a/delete")
    assert notice(browser.get("/").get_data(as_text=True)) == "Peer branch-a deleted."


def test_htmx_delete_says_so_out_of_band_and_the_last_one_too(browser):
    browser.post("/peers", valid_peer_form())
    r = browser.delete("/peers/branch-a")
    body = r.get_data(as_text=True)
    assert r.headers["HX-Retarget"] == "#peer-table" and "No peers yet" in body
    assert '<div id="notice" hx-swap-oob="innerHTML"><p>Peer branch-a deleted.</p></div>' in body


def test_password_change_says_so(browser):
    LEAKS.secrets.add(NEW_PASSWORD)
    r = browser.post("/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert r.status_code == 303
    assert notice(browser.get("/").get_data(as_text=True)).startswith("Password changed.")


def test_a_refused_form_lists_its_errors_as_links_and_focuses_the_first(browser):
    r = browser.post("/peers", valid_peer_form(local_ip="router", remote_networks="10.0.0.1/8"))
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    links = re.findall(r'<li><a href="#([\w-]+)">([^<]+)</a></li>', page)
    assert [target for target, _ in links] == ["local_ip", "remote_networks"]
    assert links[1][1] == "Remote networks: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"
    focused = re.findall(r"<(?:input|textarea)[^>]* autofocus[^>]*>", page)
    assert len(focused) == 1 and 'id="local_ip"' in focused[0], "the first refused field, without JS too"


def test_a_refused_checkbox_group_links_to_its_first_box(browser):
    page = browser.post("/peers", valid_peer_form(ike_encryption=[])).get_data(as_text=True)
    assert '<a href="#ike_encryption-0">IKE encryption: Choose at least one' in page
    assert re.search(r'<input [^>]*autofocus[^>]*id="ike_encryption-0"|<input [^>]*id="ike_encryption-0"[^>]*autofocus', page)


def test_nothing_is_cut_without_a_word(browser):
    """No maxlength: a browser cuts a pasted name silently; the server says what is too long."""
    form = browser.get("/peers/new").get_data(as_text=True)
    assert "maxlength" not in form and "minlength" not in form, "no browser bubble before our message"
    assert 'title="1–32 letters, digits, _ or -, starting with a letter"' in form
    page = browser.post("/peers", valid_peer_form(name="a" * 40)).get_data(as_text=True)
    assert "At most 32 characters; this has 40." in page
    page = browser.post("/peers", valid_peer_form(peer_id="a" * 300)).get_data(as_text=True)
    assert "At most 253 characters; this has 300." in page
    tokens = browser.get("/tokens").get_data(as_text=True)
    assert "maxlength" not in tokens, "a token's name is not cut short either"
    page = browser.post("/tokens", {"name": "a" * 60}).get_data(as_text=True)
    assert "1–48 letters, digits, spaces" in page and "aaaa" * 15 in page


def test_a_mismatch_keeps_the_right_current_password_in_the_browser(browser):
    """htmx keeps the field (hx-preserve); the password itself is never sent back."""
    LEAKS.secrets.add(NEW_PASSWORD)
    r = browser.post("/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": "different-one-123"},
                     htmx=True)
    body = r.get_data(as_text=True)
    assert r.status_code == 422 and body.startswith('<form id="password-form"')
    current = re.search(r'<input[^>]*id="current"[^>]*>', body).group(0)
    assert "data-hx-preserve" in current and 'value=""' in current
    assert '<a href="#confirm">New password again: The two entries differ.</a>' in body

    r = browser.post("/password", {"current": "not-it-at-all", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
                     htmx=True)
    current = re.search(r'<input[^>]*id="current"[^>]*>', r.get_data(as_text=True)).group(0)
    assert "data-hx-preserve" not in current, "a wrong current password is asked again"
    r = browser.post("/password", {"current": ADMIN_PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
                     htmx=True)
    assert r.status_code == 204 and r.headers["HX-Redirect"] == "/"


def test_the_login_page_says_where_the_first_password_is_until_it_is_changed(tmp_path, capfd, browser):
    assert 'id="first-start"' not in Browser(browser.client, login=False).get("/login").get_data(as_text=True)
    app = create_app({"DATA_DIR": str(tmp_path), "DRIVER": "fake", "TESTING": True})
    LEAKS.secrets.add(re.search(r"password (\S+)", capfd.readouterr().err).group(1))
    page = Browser(app.test_client(), login=False).get("/login").get_data(as_text=True)
    assert 'id="first-start"' in page and "dev set-password" in page and "journal" in page


def test_restart_asks_first_with_a_page_or_a_dialog(browser):
    browser.post("/peers", valid_peer_form())
    index = browser.get("/").get_data(as_text=True)
    button = re.search(r'<form method="(\w+)" action="/commands/restart"', index)
    assert button.group(1) == "get", "the page's Restart IPsec only asks; it restarts nothing"
    page = browser.get("/commands/restart").get_data(as_text=True)
    assert "<h1" in page and "Restart IPsec?" in page and "No tunnel is up right now." in page
    assert "1 enabled peer is loaded again" in page
    assert re.search(r'<form method="post" action="/commands/restart"', page)
    dialog = browser.get("/commands/restart", htmx=True).get_data(as_text=True)
    assert dialog.lstrip().startswith('<dialog id="restart-dialog"') and "data-modal" in dialog
    assert '<form method="dialog"><button type="submit" autofocus>Cancel</button></form>' in dialog


def test_restart_says_which_tunnels_the_admin_disconnected_it_brings_back(app, browser, monkeypatch):
    """Review 25: a restart starts every enabled peer as configured, so a tunnel the admin had
    disconnected comes up again; the question says so before, not after."""
    browser.post("/peers", valid_peer_form())
    ipsec = app.extensions["webui"].drivers.ipsec
    monkeypatch.setattr(ipsec, "tunnel_states", lambda names=None: {
        "branch-a": TunnelState("branch-a", "down", disconnected=True)})
    dialog = browser.get("/commands/restart", htmx=True).get_data(as_text=True)
    assert "1 tunnel you disconnected (branch-a) will come up again" in dialog
    assert "Disable a peer to keep it down." in browser.get("/commands/restart").get_data(as_text=True)
    monkeypatch.setattr(ipsec, "tunnel_states", lambda names=None: {
        "branch-a": TunnelState("branch-a", "down")})
    assert "you disconnected" not in browser.get("/commands/restart", htmx=True).get_data(as_text=True)


def stored_peer(app, name="branch-a"):
    return app.extensions["webui"].store.get(name)


def test_integrity_beside_aead_alone_is_ignored_not_refused(app, browser):
    r = browser.post("/peers", valid_peer_form(esp_encryption=["aes256gcm16"], esp_integrity=["sha256"],
                                               ike_encryption=["aes256gcm16"], ike_integrity=["sha384"]))
    assert r.status_code == 303, r.get_data(as_text=True)
    peer = stored_peer(app)
    assert peer.esp_integrity == () and peer.ike_integrity == ()
    page = browser.get("/peers/new").get_data(as_text=True)
    assert 'data-aead' in page and 'id="esp_integrity-group"' in page


def test_a_local_ip_the_router_does_not_have_is_held_back_until_save_anyway(app, browser):
    form = valid_peer_form(local_ip="192.0.2.99", remote_gateway="192.0.2.2")
    r = browser.post("/peers", form)
    page = r.get_data(as_text=True)
    assert r.status_code == 422 and stored_peer(app) is None
    assert ('<p class="warning" id="local_ip-warning">192.0.2.99 is not an address of this router '
            '(it has 192.0.2.1 on wan0, 2001:db8::1 on wan0, 198.51.100.1 on lan0).') in page
    assert '<a href="#local_ip">Local IP: 192.0.2.99 is not an address' in page
    assert re.search(r'<input[^>]*autofocus[^>]*id="local_ip"', page)
    assert 'id="save_anyway"' in page and "Nothing was saved" not in page
    r = browser.post("/peers", {**form, "save_anyway": "y"})
    assert r.status_code == 303 and stored_peer(app).local_ip == "192.0.2.99"


def test_networks_of_one_family_against_the_other_are_refused_and_a_lonely_one_warned(app, browser):
    page = browser.post("/peers", valid_peer_form(remote_networks="2001:db8:1::/48")).get_data(as_text=True)
    assert "These are IPv6 only and the local networks IPv4 only: no pair of them can be tunnelled." in page
    assert 'id="save_anyway"' not in page, "an error cannot be saved anyway"
    page = browser.post("/peers", valid_peer_form(
        local_networks="198.51.100.0/24\n2001:db8:9::/48")).get_data(as_text=True)
    assert "2001:db8:9::/48: no IPv6 network on the remote side to pair with, so it is not tunnelled." in page
    assert stored_peer(app) is None


def test_the_api_is_not_held_back_by_warnings(app):
    """Warnings are the web form's: a program has no one to tick Save anyway."""
    from webui.forms import PeerForm
    with app.test_request_context("/", method="POST", data=valid_peer_form(local_ip="192.0.2.99")):
        form = PeerForm(meta={"csrf": False}, router_addresses={"192.0.2.1": "wan0"})
        assert form.validate_peer([]) and form.warnings == {}


def test_a_router_with_many_addresses_has_the_first_six_named_in_the_warning(app):
    from webui.forms import PeerForm
    addresses = {f"192.0.2.{n}": f"wan{n}" for n in range(1, 9)}
    with app.test_request_context("/", method="POST", data=valid_peer_form(local_ip="192.0.2.99")):
        form = PeerForm(meta={"csrf": False}, router_addresses=addresses)
        assert not form.validate_peer([], warn=True)
    assert form.warnings == {"local_ip": [
        "192.0.2.99 is not an address of this router (it has 192.0.2.1 on wan1, 192.0.2.2 on wan2, "
        "192.0.2.3 on wan3, 192.0.2.4 on wan4, 192.0.2.5 on wan5, 192.0.2.6 on wan6). strongSwan "
        "could not send from it, and the tunnel would stay connecting."]}


def test_a_router_without_addresses_says_it_has_none(app):
    from webui.forms import PeerForm
    with app.test_request_context("/", method="POST", data=valid_peer_form(local_ip="192.0.2.99")):
        form = PeerForm(meta={"csrf": False}, router_addresses={})
        assert not form.validate_peer([], warn=True)
    assert form.warnings == {"local_ip": [
        "192.0.2.99 is not an address of this router (it has none). strongSwan could not send "
        "from it, and the tunnel would stay connecting."]}


def test_remote_networks_with_no_local_network_of_their_family_are_warned_beside_their_field(app):
    from webui.forms import PeerForm
    form_data = valid_peer_form(remote_networks="203.0.113.0/24\n2001:db8:9::/48\n2001:db8:a::/48")
    with app.test_request_context("/", method="POST", data=form_data):
        form = PeerForm(meta={"csrf": False}, router_addresses={"192.0.2.1": "wan0"})
        assert not form.validate_peer([], warn=True)
    assert form.warnings == {"remote_networks": [
        "2001:db8:9::/48, 2001:db8:a::/48: no IPv6 network on the local side to pair with, so they "
        "are not tunnelled."]}


def test_an_edit_that_keeps_a_warned_network_is_not_warned_again_but_a_changed_one_is(app, browser):
    lonely = valid_peer_form(remote_networks="203.0.113.0/24\n2001:db8:9::/48")
    assert browser.post("/peers", lonely).status_code == 422
    assert browser.post("/peers", {**lonely, "save_anyway": "y"}).status_code == 303
    kept = browser.post("/peers/branch-a", {**lonely, "psk": ""})
    assert kept.status_code == 303, "saved as it was: no warning held it back"
    changed = browser.post("/peers/branch-a", {
        **lonely, "psk": "", "remote_networks": "203.0.113.0/24\n2001:db8:a::/48"})
    assert changed.status_code == 422
    assert ("2001:db8:a::/48: no IPv6 network on the local side to pair with, so it is not "
            "tunnelled.") in changed.get_data(as_text=True)
    assert stored_peer(app).remote_networks == ("203.0.113.0/24", "2001:db8:9::/48")


def test_the_form_reads_as_an_administrator_needs(browser):
    page = browser.get("/peers/new", htmx=True).get_data(as_text=True)
    assert 'placeholder="e.g. 198.51.100.20"' in page and 'placeholder="192.0.2.1"' not in page
    assert "WEBUI_" not in page
    assert "LAN means br-lan, lan0; WAN means wan, wan0, eth0." in page
    details = re.search(r'<details class="group algorithms" id="algorithms"( open)?>\s*<summary>(.*?)</summary>',
                        page, re.S)
    assert details and details.group(1) is None, "folded on a new form"
    assert re.sub(r"<[^>]+>", "", details.group(2)).split() == ["Algorithms:", "Modern", "—", "change"]
    refused = browser.post("/peers", valid_peer_form(esp_encryption=[])).get_data(as_text=True)
    assert '<details class="group algorithms" id="algorithms" open>' in refused
    custom = browser.post("/peers", valid_peer_form(name="", esp_dh_groups=["ecp384"])).get_data(as_text=True)
    assert re.search(r'id="algorithms-preset">Custom<', custom)


def test_the_row_switch_disables_and_enables_a_peer(app, browser):
    browser.post("/peers", valid_peer_form())
    ipsec = app.extensions["webui"].drivers.ipsec
    page = browser.get("/").get_data(as_text=True)
    switch = re.search(r'<button type="submit" class="switch" role="switch" aria-checked="true"[^>]*>on</button>', page)
    assert switch and 'hx-post="/peers/branch-a/disable"' in switch.group(0)
    r = browser.post("/peers/branch-a/disable", htmx=True)
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and '<tr id="peer-branch-a">' in body
    assert 'aria-checked="false"' in body and 'hx-post="/peers/branch-a/enable"' in body
    assert "<p>Peer branch-a disabled.</p>" in body
    assert stored_peer(app).enabled is False and "branch-a" not in ipsec.loaded
    r = browser.post("/peers/branch-a/enable")  # without JavaScript: the page again, and the notice
    assert r.status_code == 303 and stored_peer(app).enabled is True and "branch-a" in ipsec.loaded
    assert notice(browser.get("/").get_data(as_text=True)) == "Peer branch-a enabled."


def test_the_switch_does_not_enable_a_peer_restored_without_a_key(app, browser):
    """A restored peer with no key (webui/backup.py) could only fail to authenticate."""
    from dataclasses import replace
    browser.post("/peers", valid_peer_form())
    browser.post("/peers/branch-a/disable", htmx=True)
    store = app.extensions["webui"].store
    store.replace("branch-a", replace(stored_peer(app), psk=""))
    page = browser.get("/").get_data(as_text=True)
    assert re.search(r'aria-checked="false"[^>]*>off</button> <span class="badge off"[^>]*>key missing</span>', page)
    body = browser.post("/peers/branch-a/enable", htmx=True).get_data(as_text=True)
    assert "<p>Peer branch-a not enabled: it has no key; edit it to enter one.</p>" in body
    assert 'aria-checked="false"' in body and stored_peer(app).enabled is False
    assert "branch-a" not in app.extensions["webui"].drivers.ipsec.loaded


def test_a_tunnel_the_monitor_will_retry_is_marked_for_the_stylesheet(app, browser, monkeypatch):
    """Connect or Disconnect by state (style.css): a down tunnel offers Disconnect too while the
    monitor will initiate it again, since Disconnect is what stops that."""
    import time
    from webui.drivers import TunnelState
    browser.post("/peers", valid_peer_form())
    ipsec = app.extensions["webui"].drivers.ipsec
    for retry_at, marked in ((0.0, False), (time.time() + 120, True)):
        monkeypatch.setattr(ipsec, "tunnel_states", lambda names=None, at=retry_at: {"branch-a": TunnelState(
            name="branch-a", state="down", loaded=True, reason="authentication failed", retry_at=at)})
        cell = re.search(r'<td id="state-branch-a"[^>]*>', browser.get("/peers/states", htmx=True)
                         .get_data(as_text=True)).group(0)
        assert 'data-state="down"' in cell and ("data-retrying" in cell) == marked, cell


def test_connect_and_disconnect_are_told_apart_for_the_stylesheet(browser):
    browser.post("/peers", valid_peer_form())
    page = browser.get("/").get_data(as_text=True)
    assert re.search(r'<button type="submit" class="connect"[^>]*>Connect</button>', page)
    assert re.search(r'<button type="submit" class="disconnect"[^>]*>Disconnect</button>', page)


def test_outputs_are_announced_by_summary_not_by_a_live_pane(browser):
    page = browser.get("/").get_data(as_text=True)
    assert '<div id="command-output">' in page and 'id="announce"' in page
    status = browser.get("/commands/status", htmx=True).get_data(as_text=True)
    assert 'data-announce="IPsec status: no peers"' in status
    browser.post("/peers", valid_peer_form())
    status = browser.get("/commands/status", htmx=True).get_data(as_text=True)
    # The same words as the pane's counts (webui/status.py), so the two cannot disagree.
    said = re.search(r'data-announce="IPsec status: ([^"]*)"', status).group(1)
    assert re.fullmatch(r"1 [a-z ]+", said), said
    assert '<span class="badge' in status and said.split(" ", 1)[1] in status


def test_saving_an_edit_of_a_peer_deleted_meanwhile_says_so_on_the_form(browser):
    browser.post("/peers", valid_peer_form())
    browser.post("/peers/branch-a/delete")  # another tab
    r = browser.post("/peers/branch-a", valid_peer_form(remote_networks="10.9.0.0/16", psk=""), htmx=True)
    page = r.get_data(as_text=True)
    assert r.status_code == 409, "swapped in (htmx-config), not a generic error bar"
    gone = re.search(r'<div [^>]*id="peer-gone"[^>]*>(.*?)</div>', page, re.S)
    assert gone and "data-focus-first" in gone.group(0), "app.js lands the admin on the message"
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", gone.group(1))).strip()
    assert text.startswith("Peer branch-a no longer exists: it was deleted elsewhere")
    assert "Nothing was saved." in text and 'href="/"' in gone.group(1), "a way back to the list"
    assert 'action="/peers"' in page and ">Add as a new peer</button>" in page
    assert re.search(r">\s*10.9.0.0/16</textarea>", page), "what was typed is kept"
    assert browser.get("/peers/branch-a/edit").status_code == 404, "nothing was saved"
    plain = browser.post("/peers/branch-a", valid_peer_form(psk=""))
    assert plain.status_code == 409 and "Peer branch-a no longer exists" in plain.get_data(as_text=True)
    assert "<h1>Add a peer</h1>" in plain.get_data(as_text=True)


def test_the_local_ip_offers_the_routers_addresses(browser):
    for url in ("/peers/new", "/peers/branch-a/edit"):
        if url.endswith("edit"):
            browser.post("/peers", valid_peer_form())
        page = browser.get(url).get_data(as_text=True)
        assert re.search(r'<input [^>]*id="local_ip"[^>]*list="local_ip-choices"|<input [^>]*list="local_ip-choices"[^>]*id="local_ip"', page)
        choices = re.findall(r'<option value="([^"]+)" label="([^"]+)">', page.split('<datalist id="local_ip-choices">')[1].split("</datalist>")[0])
        assert ("192.0.2.1", "192.0.2.1 on wan0") in choices and ("198.51.100.1", "198.51.100.1 on lan0") in choices
        assert not any(a.startswith(("127.", "::1")) for a, _ in choices), "loopback is no endpoint"


def test_an_invisible_character_in_a_network_is_named(browser):
    page = browser.post("/peers", valid_peer_form(remote_networks="203.0.113.0/24\u200b")).get_data(as_text=True)
    assert ("it contains an invisible character (ZERO WIDTH SPACE, U+200B) after 203.0.113.0/24."
            in page.replace("&#39;", "'"))


def test_a_message_in_the_status_cell_is_its_own_sentence(browser):
    browser.post("/peers", valid_peer_form())
    cell = browser.post("/peers/branch-a/disconnect", {}, htmx=True).get_data(as_text=True)
    text = re.sub(r"<[^>]+>", "", cell)
    assert re.search(r"\S <small class=\"message\">", cell) and "branch-a" in text
    assert not re.search(r"[a-z.](branch-a)", text), text
