"""Issue 12, sections 3 and 4 against the lab's real charons: after the change a failure asks
for is made through the form, the tunnel comes up."""
from __future__ import annotations

import re

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import as_peer, cell
from webui.drivers import strongswan
from webui.drivers import vici_messages as vm

KEY = "the-routers-key-for-diagnosis-1"
REMOTE_KEY = "the-remotes-own-different-key-2"


def test_a_change_to_a_tunnel_charon_gave_up_on_starts_it_at_once(serve, clean_lab):
    """charon starts a connection when first loaded, not when replaced: the save itself starts
    it, without waiting for the monitor's next retry (ten minutes away here)."""
    live = serve(RETRY_SECONDS=600, RETRY_MAX_SECONDS=600)
    browser = live.browser()
    form = peer_form(psk=KEY, keying_retries="1")
    remote = vm.mirror(as_peer(form), REMOTE_KEY)
    strongswan.call(clean_lab.remote_vici, "load-shared", vm.load_shared(remote))
    strongswan.call(clean_lab.remote_vici, "load-conn", vm.load_conn(remote))
    assert browser.post("/peers", form, htmx=True).status == 204
    failed = wait_for(lambda: "authentication failed" in (c := cell(browser, "site-b"))["text"]
                      and c, timeout=20)
    assert failed and failed["state"] == "down", cell(browser, "site-b")
    answer = browser.post("/peers/site-b", {**form, "psk": REMOTE_KEY}, htmx=True)
    assert answer.status == 204, re.findall(r'class="error"[^>]*>([^<]*)', answer.text)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up", timeout=10), \
        cell(browser, "site-b")
