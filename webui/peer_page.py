"""What a peer's page shows, gathered from the service: plain data for the templates of
`webui/blueprints/tunnel.py`. No view logic and no driver calls here: the Applier answers."""
from __future__ import annotations

from webui import status as peer_state
from webui.peers import Peer


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
