"""Issue 18: what the admin is told after each change, and where a refused form leaves them."""
from __future__ import annotations

import re

from tests.conftest import ADMIN_PASSWORD, LEAKS, Browser, valid_peer_form
from webui import create_app

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
    assert "maxlength" not in form
    assert 'title="1–32 letters, digits, _ or -, starting with a letter"' in form
    page = browser.post("/peers", valid_peer_form(name="a" * 40)).get_data(as_text=True)
    assert "At most 32 characters; this has 40." in page
    page = browser.post("/peers", valid_peer_form(peer_id="a" * 300)).get_data(as_text=True)
    assert "At most 253 characters; this has 300." in page


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
    assert 'id="first-start"' in page and "run.py set-password" in page and "journal" in page
