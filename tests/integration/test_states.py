"""Issue 11, item 4 against the lab: each state a peer can be in, produced by a real
misconfiguration of the lab's remote site, as its row shows it; then the remote is fixed and the
tunnel comes up by itself within the retry backoff, without a click."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import as_peer, cell

RETRY = 2  # seconds: the backoff's first wait in these tests (30 s by default)


def remote_nft(lab, *commands: str) -> None:
    for command in commands:
        done = lab.exec("remote", ["nft", *command.split()])
        assert done.returncode == 0, done.stderr


SILENCE = ("add table inet wuisilent",
           "add chain inet wuisilent in { type filter hook input priority 0 ; }",
           "add rule inet wuisilent in udp dport { 500, 4500 } drop")


# name: (router form overrides, how the remote is broken (a change to the router's peer that the
#        remote mirrors, or None: the remote has no configuration), remote psk, kind, text shown)
CASES = {
    "esp-mismatch": ({}, lambda p: replace(p, esp_encryption=("aes128",), esp_integrity=("sha1",),
                                           esp_dh_groups=("modp2048",)),
                     None, "refused", "IKE up, tunnel refused"),
    "networks-mismatch": ({}, lambda p: replace(p, remote_networks=("10.99.0.0/24",)), None,
                          "refused", "IKE up, tunnel refused"),
    "narrowed": ({"remote_networks": "203.0.113.0/24\n10.88.0.0/24"},
                 lambda p: replace(p, remote_networks=("203.0.113.0/24",)), None,
                 "partial", "not in the tunnel: 10.88.0.0/24"),
    "wrong-key": ({}, lambda p: p, "not-the-same-key-at-all-0", "down", "authentication failed"),
    "wrong-id": ({}, lambda p: replace(p, local_id="someone-else.example"), None, "down",
                 "when we initiated"),
    "not-configured": ({}, None, None, ("down", "waiting"), "when we initiated"),
    "silent": ({}, "silent", None, "waiting", "waiting for the other side"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_state_is_shown_and_the_fixed_remote_comes_up_by_itself(serve, clean_lab, case):
    overrides, breaking, remote_psk, kinds, text = CASES[case]
    live = serve(RETRY_SECONDS=RETRY, RETRY_MAX_SECONDS=RETRY * 2)
    browser = live.browser()
    form = peer_form(keying_retries="1", **overrides)
    peer = as_peer(form)
    silent = breaking == "silent"
    if silent:
        clean_lab.load_remote_mirror(peer)
        remote_nft(clean_lab, *SILENCE)
    elif breaking is not None:
        clean_lab.load_remote_mirror(breaking(peer), psk=remote_psk)
    try:
        assert browser.post("/peers", form, htmx=True).status == 204
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        shown = wait_for(lambda: (c := cell(browser, "site-b")).get("state") in kinds and c,
                         timeout=20)
        assert shown, cell(browser, "site-b")
        assert text in shown["text"], shown
    finally:
        if silent:
            remote_nft(clean_lab, "delete table inet wuisilent")
    if kinds == ("partial",):
        return  # not retried on purpose: see Monitor._retry_given_up
    # The remote is fixed: the monitor retries (charon itself has given up) and it comes up.
    clean_lab.load_remote_mirror(peer)
    started = time.monotonic()
    up = wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=RETRY * 2 + 15)
    assert up, cell(browser, "site-b")
    print(f"\n{case}: {shown['state']} ({shown['text'].strip()}); up again "
          f"{time.monotonic() - started:.1f} s after the remote was fixed, without a click")


def test_disconnect_is_shown_as_such_and_not_retried(serve, clean_lab):
    live = serve(RETRY_SECONDS=1, RETRY_MAX_SECONDS=2)
    browser = live.browser()
    form = peer_form()
    clean_lab.load_remote_mirror(as_peer(form))
    assert browser.post("/peers", form, htmx=True).status == 204
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    answer = browser.post("/peers/site-b/disconnect", htmx=True)
    assert "disconnected by the admin" in answer.text or \
        wait_for(lambda: cell(browser, "site-b").get("state") == "disconnected")
    time.sleep(3)  # more than the backoff: nothing brings it back but Connect
    assert cell(browser, "site-b").get("state") == "disconnected"
    browser.post("/peers/site-b/connect", htmx=True)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
