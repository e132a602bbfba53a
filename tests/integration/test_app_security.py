"""Issue 5 against the lab: what the remote side can influence comes out escaped."""
from __future__ import annotations

from tests.integration.conftest import wait_for
from webui.drivers import strongswan, vici_messages
from tests.lab import REMOTE_WAN, ROUTER_WAN
from webui.peers import Peer

PAYLOAD = "<img src=x onerror=alert(1)>"


def test_a_remote_id_with_markup_is_shown_escaped(live, clean_lab):
    """A connection loaded outside the UI (as swanctl.conf would) whose remote presents an ID that
    is markup: the status pane lists it as external and shows the ID as text."""
    external = Peer(name="swanctl-conn", local_ip=ROUTER_WAN, remote_gateway=REMOTE_WAN,
                    local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                    peer_id=PAYLOAD, psk="external-connection-key")
    clean_lab.load_remote_mirror(external)  # the remote site presents PAYLOAD as its ID
    strongswan.call(clean_lab.router_vici, "load-shared", vici_messages.load_shared(external))
    strongswan.call(clean_lab.router_vici, "load-conn", vici_messages.load_conn(external))
    browser = live.browser()

    def established():
        page = browser.get("/commands/status", htmx=True).text
        return page if "ESTABLISHED" in page else ""
    page = wait_for(established, timeout=10)
    assert page, "the external connection did not come up"
    assert "Connections not managed here" in page and "swanctl-conn" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img" not in page
