"""What a peer's page shows, gathered from the service: plain data for the templates of
`webui/blueprints/tunnel.py`. No view logic and no driver calls here: the service answers."""
from __future__ import annotations

import time

from webui import diagnosis
from webui import history as peer_history
from webui import status as peer_state
from webui.drivers.failure_reasons import failure_reason
from webui.drivers.monitor import CLOSED_BY_REMOTE
from webui.peers import Peer

TRANSITIONS_SHOWN = 12
# The words for the monitor's states in the history table.
STATE_WORDS = {"up": "up", "ike-up": "IKE up, no tunnel", "connecting": "connecting", "down": "down"}


# SA states charon passes through while it replaces or closes an SA (a rekey, a reauthentication)
_CHANGING = {"REKEYING", "REKEYED", "DELETING", "CREATED", "INSTALLING", "UPDATING"}


def now(service, peer: Peer) -> dict:
    """The Now section: the peer's state as the rows show it, and its SAs as charon has them.
    Every age and timer is as of one moment (`as_of`, when charon last listed this peer's SAs),
    so the summary's "up for", each SA's "established … ago" and the counters agree."""
    snap = service.snapshot()
    notices = service.notices()
    tunnel = snap.tunnels.get(peer.name)
    loaded = snap.loaded if snap.version else None
    state = peer_state.of(peer, tunnel, notices["not_applied"].get(peer.name, ""), loaded,
                          snap.problem)
    sas = [sa for sa in snap.sas if sa.name == peer.name]
    # Disconnect while there is something to take down, or retries to stop (as the rows do)
    idle = state.kind in ("down", "waiting", "disconnected") and not sas \
        and not (tunnel and tunnel.retry_at)
    return {"peer": peer, "tunnel": tunnel, "state": state, "snapshot": snap, "sas": sas,
            "oob": False, "lacking": notices["lacking"].get(peer.name, ""),
            "poll_key": service.poll_key(snap),
            "as_of": snap.listed_at.get(peer.name) or snap.as_of or time.time(),
            "offer_connect": state.kind not in ("up", "partial", "connecting"),
            "offer_disconnect": not idle,
            "changing": any(sa.state in _CHANGING or any(c.state in _CHANGING for c in sa.children)
                            for sa in sas)}


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
    return {"transitions": [(t.at, STATE_WORDS.get(t.old, t.old), STATE_WORDS.get(t.new, t.new),
                             t.reason, bool(t.asked))
                            for t in reversed(transitions[-TRANSITIONS_SHOWN:])],
            "uptime": peer_history.uptime(transitions, at),
            "chart": peer_history.chart(samples, transitions, current, at)}


# The form's fields a finding may point at: their labels, and the id to jump to on the edit form
# (a checkbox group's fieldset is `<id>-group`, webui/templates/peers/_macros.html).
FIELD_LABELS = {
    "ike_encryption": "IKE encryption", "ike_integrity": "IKE integrity",
    "ike_dh_groups": "IKE DH groups", "esp_encryption": "ESP encryption",
    "esp_integrity": "ESP integrity", "esp_dh_groups": "ESP DH groups",
    "local_id": "Local ID", "peer_id": "Peer ID", "psk": "Pre-shared key",
    "local_networks": "Local networks", "remote_networks": "Remote networks",
    "remote_gateway": "Remote gateway",
}
_GROUPS = {"ike_encryption", "ike_integrity", "ike_dh_groups", "esp_encryption", "esp_integrity",
           "esp_dh_groups"}
FIELD_ANCHORS = {name: f"{name}-group" if name in _GROUPS else name for name in FIELD_LABELS}


# A change of the IDs or the key, as "Why it is down" names it (the key's value never)
CHANGE_WORDS = {"local_id": "the Local ID", "peer_id": "the Peer ID", "psk": "the pre-shared key"}


def why(applier, peer: Peer, state) -> dict:
    """Section 3: what charon's lines say about the last failed negotiation (webui/diagnosis.py),
    and a change of the peer's IDs or key made here just before it. Nothing while the tunnel is
    up: an old failure is history then, not a reason."""
    quiet = state.kind in ("up", "disabled", "disconnected")
    found = [] if quiet else diagnosis.explain(peer, applier.log_lines(peer.name),
                                               applier.auth_changed(peer.name))
    # A failure from before the tunnel last came up is history, not this outage's reason (a
    # fresh-eyes review: after the remote's DELETE it still blamed a key fixed minutes before).
    came_up = max((t.at for t in applier.history(peer.name) if t.new == "up"), default=0.0)
    found = [f for f in found if f.at >= came_up]
    # The remote's DELETE is no failure here: nothing in this side's log explains it, and the
    # section says so plainly instead of "nothing this page can explain".
    tunnel = applier.snapshot().tunnels.get(peer.name)
    closed = not quiet and not found and tunnel is not None and tunnel.reason == CLOSED_BY_REMOTE
    return {"findings": found, "field_labels": FIELD_LABELS, "field_anchors": FIELD_ANCHORS,
            "change_words": CHANGE_WORDS, "closed_by_remote": tunnel.reason_at if closed else 0.0}


# The live log's filter: charon's level 0 is the main events (initiating, established, deleting),
# 1 adds every message and packet; "problems" is the lines that give a reason for a failure.
LOG_LEVELS = (("all", "Everything (levels 0 and 1)"), ("events", "Main events (level 0)"),
              ("problems", "Problems only"))


def log(applier, peer: Peer, level: str = "all") -> dict:
    """Section 4: charon's recent lines about the peer, filtered by `level` (one of LOG_LEVELS:
    the view refuses any other)."""
    lines = applier.log_lines(peer.name)
    if level == "events":
        lines = [line for line in lines if line.level == 0]
    elif level == "problems":
        lines = [line for line in lines if failure_reason(line.text)]
    key = f"{level}.{len(lines)}.{lines[-1].at:.3f}" if lines else f"{level}.0"
    return {"log_lines": lines, "log_level": level, "log_levels": LOG_LEVELS, "log_key": key}


def log_text(lines) -> str:
    """The lines as the download has them: one a line, with the date and charon's level."""
    return "".join(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(line.at))} "
                   f"[{line.level}] {line.text}\n" for line in lines)
