"""What a peer's page shows, gathered from the service: plain data for the templates of
`webui/blueprints/tunnel.py`. No view logic and no driver calls here: the Applier answers."""
from __future__ import annotations

import time

from webui import history as peer_history
from webui import status as peer_state
from webui.peers import Peer

TRANSITIONS_SHOWN = 12
# The words for the monitor's states in the history table.
STATE_WORDS = {"up": "up", "ike-up": "IKE up, no tunnel", "connecting": "connecting", "down": "down"}


def now(service, peer: Peer) -> dict:
    """The Now section: the peer's state as the rows show it, and its SAs as charon has them."""
    snap = service.snapshot()
    notices = service.notices()
    tunnel = snap.tunnels.get(peer.name)
    loaded = snap.loaded if snap.version else None
    state = peer_state.of(peer, tunnel, notices["not_applied"].get(peer.name, ""), loaded,
                          snap.problem)
    return {"peer": peer, "tunnel": tunnel, "state": state, "snapshot": snap,
            "sas": [sa for sa in snap.sas if sa.name == peer.name], "oob": False,
            "lacking": notices["lacking"].get(peer.name, ""), "poll_key": service.poll_key(snap)}


def history(service, peer: Peer, tunnel, confirmed_at: float = 0.0, at: float | None = None) -> dict:
    """The History section: the last transitions (newest first), uptime and flaps over a day,
    and the traffic chart of the last hour."""
    at = at or time.time()
    transitions = service.history(peer.name)
    samples = service.counters(peer.name)
    current = tunnel.state if tunnel else "down"
    if tunnel and tunnel.state == "up" and confirmed_at:
        # the counters as the monitor last listed them: the chart reaches up to now, not to the
        # last of its once-a-minute samples
        if not samples or confirmed_at - samples[-1][0] > 1:
            samples = [*samples, (confirmed_at, tunnel.bytes_in, tunnel.bytes_out)]
    return {"transitions": [(t, STATE_WORDS.get(frm, frm), STATE_WORDS.get(to, to), reason)
                            for t, frm, to, reason in reversed(transitions[-TRANSITIONS_SHOWN:])],
            "uptime": peer_history.uptime(transitions, at),
            "chart": peer_history.chart(samples, transitions, current, at)}
