"""A peer's state as the administrator reads it (webui/status.py): one function for rows, pane
and counts."""
import time

from webui import status
from webui.drivers import TunnelState
from webui.peers import Peer

PEER = Peer(name="branch", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
            local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24", "10.9.0.0/16"),
            psk="x" * 20)
BOTH = ("203.0.113.0/24", "10.9.0.0/16")


def tunnel(state, **kw):
    return TunnelState("branch", state, **kw)


def test_up_and_up_but_partial():
    up = tunnel("up", local_ts=("198.51.100.0/24",), remote_ts=BOTH)
    assert status.of(PEER, up).kind == "up"
    narrowed = tunnel("up", local_ts=("198.51.100.0/24",), remote_ts=("203.0.113.0/24",))
    partial = status.of(PEER, narrowed)
    assert (partial.kind, partial.detail) == ("partial", "not in the tunnel: 10.9.0.0/16")


def test_ike_up_with_a_refused_child_is_not_connecting():
    refused = status.of(PEER, tunnel("ike-up", reason="no matching proposal", reason_at=1.0,
                                     direction="we"))
    assert refused.label == "IKE up, tunnel refused"
    assert "no matching proposal" in refused.detail and "when we initiated" in refused.detail
    assert status.of(PEER, tunnel("ike-up")).kind == "connecting"


def test_down_says_why_when_and_who_initiated():
    down = status.of(PEER, tunnel("down", reason="authentication failed", reason_at=time.time(),
                                  direction="192.0.2.2", ever_up=True))
    assert down.kind == "down"
    assert down.detail.startswith("authentication failed, at ")
    assert down.detail.endswith("when 192.0.2.2 initiated")


def test_never_reached_is_waiting_not_down():
    assert status.of(PEER, tunnel("down")).kind == "waiting"
    silent = status.of(PEER, tunnel("down", reason="the remote gateway is not responding"))
    assert silent.kind == "waiting"
    refused = status.of(PEER, tunnel("down", reason="authentication failed"))
    assert refused.kind == "down"


def test_connecting_counts_attempts():
    st = status.of(PEER, tunnel("connecting", attempts=3, since=time.time()))
    assert st.kind == "connecting" and st.detail.startswith("attempt 3, since ")


def test_disconnected_by_the_admin_and_retrying():
    assert status.of(PEER, tunnel("down", disconnected=True, reason="disconnected by the admin",
                                  ever_up=True)).label == "disconnected by the admin"
    at = time.time() + 125
    retry = status.of(PEER, tunnel("down", reason="authentication failed", ever_up=True,
                                   retry_at=at))
    assert f"retrying at {time.strftime('%H:%M:%S', time.localtime(at))}" in retry.detail


def test_store_states_come_first():
    from dataclasses import replace
    assert status.of(replace(PEER, enabled=False), tunnel("up")).kind == "disabled"
    assert status.of(PEER, tunnel("up"), not_applied="strongSwan is not running").label == \
        "not applied"
    assert status.of(PEER, tunnel("down"), loaded=frozenset()).detail == \
        "strongSwan does not have it"
    assert status.of(PEER, None, problem="strongSwan has not answered").kind == "unknown"


def test_counts_follow_the_kinds_order():
    statuses = [status.PeerStatus("down"), status.PeerStatus("up"), status.PeerStatus("down")]
    assert status.counts(statuses) == [("up", "up", 1), ("down", "down", 2)]


def test_an_up_tunnel_listed_without_its_networks_is_not_called_partial():
    """The answer to Connect lists SAs without their networks: nothing is known missing then."""
    from webui.drivers import TunnelState
    from webui.peers import Peer
    from webui.status import of
    peer = Peer(name="p", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",), psk="k" * 20)
    assert of(peer, TunnelState(name="p", state="up")).kind == "up"
    partial = of(peer, TunnelState(name="p", state="up", local_ts=("198.51.100.0/24",), remote_ts=("203.0.113.0/25",)))
    assert (partial.kind, partial.detail) == ("partial", "not in the tunnel: 203.0.113.0/24")


def test_down_since_is_when_it_went_down_not_the_last_failed_attempt():
    st = status.of(PEER, tunnel("down", reason="authentication failed", ever_up=True,
                                reason_at=2000.0, since=2000.0, down_since=1000.0))
    assert st.kind == "down" and st.since == 1000.0
    waiting = status.of(PEER, tunnel("down", since=2000.0, down_since=1000.0))
    assert waiting.kind == "waiting" and waiting.since == 1000.0
