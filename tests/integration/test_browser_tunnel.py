"""Issue 12 in a real browser: a peer's page (Debian's Chromium through Playwright), against the
app under waitress managing the lab router's real charon. Desktop in the light scheme, a 360 px
phone in the dark one, and the same buttons with JavaScript off. Screenshots as in
test_browser.py ($WEBUI_SCREENSHOTS, else a temporary directory)."""
from __future__ import annotations

import re

import pytest

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer
from tests.integration.test_browser import (DESKTOP, PHONE, chromium, open_page, shots,  # noqa: F401
                                            sideways_overflow, sign_in)
from webui.drivers import strongswan
from tests.lab import REMOTE_LAN, ROUTER_LAN

pytestmark = pytest.mark.browser


@pytest.fixture
def sampled(monkeypatch):
    """Counter samples every second instead of every minute: a test cannot wait an hour."""
    monkeypatch.setattr("webui.drivers.monitor.SAMPLE_EVERY", 1.0)


def bounce(lab, live, browser):
    """A down-and-up caused here: the remote ends the IKE SA, then the page's Connect."""
    strongswan.stream(lab.remote_vici, "terminate", "control-log", {"ike": "site-b", "timeout": 2000})
    monitor = live.applier.drivers.ipsec.monitor
    assert wait_for(lambda: monitor.snapshot(polled=False).tunnels["site-b"].state != "up", timeout=5)
    answer = browser.post("/peers/site-b/tunnel/connect", htmx=True)
    assert "site-b is up." in answer.text, answer.text[:300]


def traffic(lab, seconds=3):
    lab.exec("router", ["ping", "-n", "-q", "-c", str(seconds * 5), "-i", "0.2", "-s", "1200",
                        "-I", ROUTER_LAN, REMOTE_LAN])


def test_the_peers_page_on_a_desktop(open_page, live, clean_lab, shots, sampled):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    page, console = open_page(DESKTOP, color_scheme="light")
    page.wait_for_selector("#state-site-b[data-state=up]")
    page.click("#peer-site-b th a:has-text('site-b')")
    page.wait_for_url("**/peers/site-b")
    page.evaluate("window.notReloaded = true")
    assert page.is_visible("#now [data-state=up]")
    for _ in range(2):
        traffic(clean_lab)
    bounce(clean_lab, live, browser)
    traffic(clean_lab)
    page.wait_for_timeout(2500)  # two more samples after the bounce

    # Rekey the tunnel from its button: new SPIs, the outcome inline, no reload
    old = page.inner_text("#now .spi")
    page.click("#now tr:has(.badge:has-text('INSTALLED')) button:has-text('Rekey')")
    page.wait_for_selector("#now-outcome:has-text('is rekeying')")
    assert wait_for(lambda: page.wait_for_timeout(200) or
                    old not in page.inner_text("#now tr:has(.badge:has-text('INSTALLED')) .spi"),
                    timeout=8)

    page.fill("#test-host", "10.1.2.3")
    with console.expecting(page, r"status of 422"):
        page.click("#section-test button:has-text('Test')")
        page.wait_for_selector("#test-host-error")
    assert "not inside the peer's remote networks" in page.inner_text("#test-host-error")
    page.wait_for_timeout(3100)  # one test every 3 s
    page.fill("#test-host", REMOTE_LAN)
    page.click("#section-test button:has-text('Test')")
    page.wait_for_selector("#test-result:has-text('replied')", timeout=15_000)
    result = page.inner_text("#test-result")
    assert "4 of 4 replied" in result and "The tunnel carried" in result, result
    assert page.evaluate("window.notReloaded"), "every action swapped its part of the page"

    page.reload()  # the History section as a fresh page draws it
    page.wait_for_timeout(3100)  # one test every 3 s
    page.fill("#test-host", REMOTE_LAN)
    page.click("#section-test button:has-text('Test')")
    page.wait_for_selector("#test-result:has-text('replied')", timeout=15_000)
    history = page.inner_text("#section-history")
    assert re.search(r"Up \d+\.\d %", history) and "1 flap" in history, history
    assert page.locator("#section-history tr:has-text('down')").count() >= 1
    assert page.locator("svg.chart rect.down").count() == 1, "the down-and-up is shaded"
    assert page.locator("svg.chart path.in").count() == 1
    page.screenshot(path=shots / "desktop-peer-page.png", full_page=True)


def test_the_peers_page_on_a_phone_in_the_dark(open_page, live, clean_lab, shots, sampled):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    page, console = open_page(PHONE, color_scheme="dark")
    page.wait_for_selector("#state-site-b[data-state=up]")
    traffic(clean_lab)
    bounce(clean_lab, live, browser)
    traffic(clean_lab)
    page.wait_for_timeout(2500)
    for verb in ("disconnect", "connect"):  # a row with a reason, the widest column
        browser.post(f"/peers/site-b/tunnel/{verb}", htmx=True)
    page.goto(live.url + "/peers/site-b")
    page.wait_for_selector("#now [data-state=up]")
    assert sideways_overflow(page) == 0
    box = page.locator("svg.chart").bounding_box()
    assert box["width"] >= 300, "the chart fills the phone's width"
    colours = page.eval_on_selector("svg.chart", """svg => ({
        card: getComputedStyle(svg.closest('.card')).backgroundColor,
        in_: getComputedStyle(svg.querySelector('path.in')).stroke,
        out: getComputedStyle(svg.querySelector('path.out')).stroke})""")
    assert len({colours["card"], colours["in_"], colours["out"]}) == 3, colours
    assert colours["card"] != "rgb(255, 255, 255)", "the dark scheme applies to the card"
    # History's rows fit: each reason on its own line, nothing scrolled out of sight (review m4)
    rows = page.locator("#section-history table.transitions")
    assert rows.count() == 1
    assert page.eval_on_selector("#section-history .table-wrap",
                                 "w => w.scrollWidth <= w.clientWidth"), "the table scrolls sideways"
    reason = page.locator("#section-history td[data-label=Reason]:not(:empty)").first
    box, wrap = reason.bounding_box(), page.locator("#section-history .table-wrap").bounding_box()
    assert box["x"] + box["width"] <= wrap["x"] + wrap["width"] + 0.5, (box, wrap)
    page.fill("#test-host", REMOTE_LAN)
    page.click("#section-test button:has-text('Test')")
    page.wait_for_selector("#test-result:has-text('replied')", timeout=15_000)
    assert sideways_overflow(page) == 0
    page.screenshot(path=shots / "phone-peer-page.png", full_page=True)


def test_without_javascript_every_button_still_works(chromium, live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    context = chromium.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, live.url)
        assert wait_for(lambda: page.goto(live.url + "/peers/site-b") and
                        page.locator("#now [data-state=up]").count(), timeout=10)
        page.click("#now button:has-text('Rekey IKE')")
        page.wait_for_url(live.url + "/peers/site-b")
        assert "is rekeying" in page.inner_text("#notice")
        page.fill("#test-host", REMOTE_LAN)
        page.click("#section-test button:has-text('Test')")
        assert "4 of 4 replied" in page.inner_text("#test-result")
        page.click("#now button:has-text('Disconnect')")
        assert "site-b is disconnected." in page.inner_text("#notice")
        # the page the action leads to shows what it did, and offers what undoes it
        assert page.locator("#now [data-state=disconnected]").count() == 1
        assert page.locator("#now button").all_inner_texts() == ["Connect"]
        page.click("#now button:has-text('Connect')")
        assert "site-b is up." in page.inner_text("#notice")
        assert page.locator("#now [data-state=up]").count() == 1
        assert "Disconnect" in page.locator("#now .commands").first.inner_text()
    finally:
        context.close()


def test_with_javascript_each_action_answers_with_the_state_it_left(chromium, serve, clean_lab):
    """The Now section an action brings back (no poll in between: it polls once a minute here)."""
    live = serve(STATUS_POLL_SECONDS=60)
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    context = chromium.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        sign_in(page, live.url)
        assert wait_for(lambda: page.goto(live.url + "/peers/site-b") and
                        page.locator("#now [data-state=up]").count(), timeout=10)
        commands = page.locator("#now > .commands")

        def act(button: str, outcome: str) -> None:
            page.click(f"#now button:has-text('{button}')")
            page.wait_for_selector(f"#now-outcome:has-text('{outcome}')")

        act("Disconnect", "is disconnected")
        assert page.locator("#now [data-state=disconnected]").count() == 1
        assert commands.locator("button").all_inner_texts() == ["Connect"]
        act("Connect", "is up")
        assert page.locator("#now [data-state=up]").count() == 1
        assert commands.locator("button").all_inner_texts() == ["Disconnect"]
        act("Terminate", "is closed")
        assert page.locator("#now [data-state=disconnected]").count() == 1
        assert commands.locator("button").all_inner_texts() == ["Connect", "Disconnect"]
        act("Connect", "is up")
        assert page.locator("#now [data-state=up]").count() == 1
        old = page.inner_text("#now article.sa h3")
        act("Reauthenticate", "reauthenticat")
        assert page.locator("#now [data-state=up]").count() == 1
        assert page.inner_text("#now article.sa h3") != old, "the new IKE SA, not the old"
    finally:
        context.close()
