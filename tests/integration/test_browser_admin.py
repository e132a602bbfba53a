"""Issue 18 in Debian's Chromium against the lab: where a refused save leaves the admin, what each
change says, a restart that asks first, the phone and touch layout, and axe-core on every page and
pane in both colour schemes. Same rules as test_browser.py: any console error or CSP violation
that a test did not provoke fails it."""
from __future__ import annotations

import pytest

from tests.integration.conftest import peer_form
from tests.integration.test_app_ipsec import add_peer
from tests.integration.test_browser import (DESKTOP, PHONE, chromium, fill_peer, open_page,  # noqa: F401 (fixtures)
                                            shots)

pytestmark = pytest.mark.browser


def focused_id(page) -> str:
    return page.evaluate("document.activeElement.id")


def in_viewport(page, selector: str) -> bool:
    return page.eval_on_selector(selector, """e => { const r = e.getBoundingClientRect();
        return r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth; }""")


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_refused_save_lands_on_the_first_refused_field(open_page, live, clean_lab, size):
    page, console = open_page(PHONE if size == "phone" else DESKTOP)
    page.goto(live.url + "/peers/new")
    fill_peer(page, peer_form(remote_networks="203.0.113.9/24"))
    page.fill("#psk", "a-long-enough-key-1234")
    with console.expecting(page, r"status of 422"):
        page.click("button:has-text('Add peer')")
        page.wait_for_selector("#remote_networks-error")
        page.wait_for_function("document.activeElement.id === 'remote_networks'")
    assert in_viewport(page, "#remote_networks"), "the refused field is in view, not 1,500 px down"
    link = page.locator(".refused a[href='#remote_networks']")
    assert "did you mean 203.0.113.0/24?" in link.inner_text()
    page.focus("#name")
    link.click()
    assert focused_id(page) == "remote_networks", "the banner's links go to their fields"


def test_after_a_delete_the_focus_goes_to_the_next_row_then_the_heading(open_page, live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    add_peer(browser, clean_lab, peer_form(name="site-c", remote_networks="10.9.0.0/16"))
    page, console = open_page()
    assert page.inner_text("#notice") == ""
    for name, then in (("site-b", "site-c"), ("site-c", "peers-heading")):
        page.once("dialog", lambda dialog: dialog.accept())
        page.focus(f"#peer-{name} a:has-text('Delete')")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#peer-{name}", state="detached")
        page.wait_for_function("n => document.getElementById('notice').innerText.includes(n)", arg=name)
        assert page.inner_text("#notice") == f"Peer {name} deleted."
        active = page.evaluate("document.activeElement.closest('tr')?.id || document.activeElement.id")
        assert active == (f"peer-{then}" if then != "peers-heading" else then), active


def test_add_and_password_change_say_so(open_page, live, clean_lab):
    page, console = open_page()
    page.goto(live.url + "/peers/new")
    fill_peer(page, peer_form())
    page.click("#psk-generate")
    page.click("button:has-text('Add peer')")
    page.wait_for_url(live.url + "/")
    assert page.inner_text("#notice") == "Peer site-b added."

    page.click("a:has-text('Change password')")
    page.fill("#current", "Test-admin-passw0rd-Qx7")
    page.fill("#new", "A-new-admin-passw0rd-1")
    page.fill("#confirm", "A-new-admin-passw0rd-2")
    with console.expecting(page, r"status of 422"):
        page.click("button:has-text('Change password')")
        page.wait_for_selector("#confirm-error")
    assert page.input_value("#current") == "Test-admin-passw0rd-Qx7", "what was right is kept"
    assert page.input_value("#confirm") == "" and focused_id(page) == "confirm"
