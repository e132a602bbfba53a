"""Issue 11 against the lab: tunnel state from charon's events, and a UI that a hung charon does
not break. The router's charon is real; so are its stops, restarts and the remote's changes."""
from __future__ import annotations

import os
import signal
import threading
import time

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer, cell


def concurrently(browser, paths) -> list[tuple[str, int, float, str]]:
    """GET every path at once (htmx), each in its own thread: (path, status, seconds, text)."""
    answers = []

    def get(path):
        started = time.monotonic()
        page = browser.get(path, htmx=True)
        answers.append((path, page.status, time.monotonic() - started, page.text))

    threads = [threading.Thread(target=get, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_a_stopped_charon_answers_every_poll_without_a_500(serve, clean_lab):
    """Issue 11's measurement: charon stopped with SIGSTOP (a wedged daemon), then 8 concurrent
    polls and one Get IPsec status. None may answer 500, and at most one may wait on charon."""
    live = serve(VICI_TIMEOUT=2)
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    pid = int(clean_lab._pidfile("router").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        answers = concurrently(browser, ["/peers/states"] * 8 + ["/commands/status"])
        pages = [(path, browser.get(path).status) for path in ("/", "/peers/new")]
    finally:
        os.kill(pid, signal.SIGCONT)
    summary = [(path, status, round(took, 2)) for path, status, took, _ in answers]
    assert len(answers) == 9, summary
    assert all(status != 500 for _, status, _, _ in answers), summary
    assert all(took < 2 + 1.5 for _, _, took, _ in answers), summary
    waited = [text for _, _, _, text in answers if "did not answer within 2 s" in text]
    busy = [text for _, _, _, text in answers if "busy or not answering" in text]
    assert len(waited) <= 1 and len(waited) + len(busy) == 9, summary
    assert pages == [("/", 200), ("/peers/new", 200)]
    # charon back: the status is current again, without a click
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=10)
