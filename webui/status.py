"""A peer's state as the administrator reads it: one of a few plain states, from the store (enabled,
applied) and the monitor's snapshot. The rows, the status pane and its counts all call `of`, so
they cannot disagree; `status_overview` is the status pane's content, a page at a time."""
from __future__ import annotations

import time
from dataclasses import dataclass

from webui.drivers import IPsecStatus, TunnelState
from webui.paging import page_of
from webui.peers import Peer

# kind -> (label, badge class); the order is the order counts are shown in
KINDS = {
    "up": ("up", "up"),
    "partial": ("up but partial", "warn"),
    "refused": ("IKE up, tunnel refused", "down"),
    "connecting": ("connecting", "warn"),
    "waiting": ("waiting for the other side", "warn"),
    "down": ("down", "down"),
    "disconnected": ("disconnected by the admin", "off"),
    "not-applied": ("not applied", "warn"),
    "not-loaded": ("not loaded", "warn"),
    "disabled": ("disabled", "off"),
    "unknown": ("unknown", "unknown"),
    "restarting": ("restarting", "unknown"),
}
# Said instead of the socket error while strongSwan restarts because the admin asked.
RESTARTING = "strongSwan is restarting (Restart IPsec); the states show again once it answers."
# What charon logs when the other side never answered: before any answer it is not "down" yet.
_SILENT = ("not responding",)


@dataclass(frozen=True)
class PeerStatus:
    kind: str
    detail: str = ""  # the reason, the attempt, the networks missing: what to act on
    since: float = 0.0

    @property
    def label(self) -> str:
        return KINDS[self.kind][0]

    @property
    def badge(self) -> str:
        return KINDS[self.kind][1]


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _direction(tunnel: TunnelState) -> str:
    if tunnel.direction == "we":
        return "when we initiated"
    if tunnel.direction:
        return f"when {tunnel.direction} initiated"
    return ""


def _reason(tunnel: TunnelState) -> str:
    parts = [tunnel.reason]
    if tunnel.reason and tunnel.reason_at:
        parts.append(f"at {_clock(tunnel.reason_at)}")
    direction = _direction(tunnel)
    if direction:
        parts.append(direction)
    if tunnel.retry_at:
        # A time, not "in 25 s": a row is drawn again only when something changes, and a
        # countdown would stand still in between (a fresh-eyes review saw it).
        parts.append(f"retrying at {_clock(tunnel.retry_at)}")
    return ", ".join(p for p in parts if p)


def missing_networks(peer: Peer, tunnel: TunnelState) -> list[str]:
    """Configured networks that no installed CHILD_SA carries (the remote narrowed them)."""
    return [n for n in peer.local_networks if n not in tunnel.local_ts] + \
           [n for n in peer.remote_networks if n not in tunnel.remote_ts]


def of(peer: Peer, tunnel: TunnelState | None, not_applied: str = "",
       loaded: frozenset[str] | None = None, problem: str = "") -> PeerStatus:
    """The peer's state. `loaded` is what charon holds (None: not known)."""
    if not peer.enabled:
        return PeerStatus("disabled")
    if not_applied:
        return PeerStatus("not-applied", not_applied)
    if problem:
        return PeerStatus("restarting") if problem == RESTARTING else PeerStatus("unknown", problem)
    if loaded is not None and peer.name not in loaded:
        return PeerStatus("not-loaded", "strongSwan does not have it")
    if tunnel is None:
        return PeerStatus("unknown")
    if tunnel.state == "up":
        # A listing that did not read the networks (the answer to Connect) knows nothing missing.
        missing = missing_networks(peer, tunnel) if tunnel.local_ts or tunnel.remote_ts else []
        if missing:
            return PeerStatus("partial", "not in the tunnel: " + ", ".join(missing), tunnel.since)
        return PeerStatus("up", since=tunnel.since)
    if tunnel.state == "ike-up":
        if tunnel.disconnected:  # its CHILD_SA terminated by the admin
            return PeerStatus("disconnected", "its IKE SA is up; no tunnel until Connect",
                              tunnel.reason_at or tunnel.since)
        if tunnel.reason:
            return PeerStatus("refused", _reason(tunnel), tunnel.since)
        return PeerStatus("connecting", "IKE up, building the tunnel", tunnel.since)
    if tunnel.state == "connecting":
        parts = [f"attempt {tunnel.attempts}"] if tunnel.attempts else []
        if tunnel.since:
            parts.append(f"since {_clock(tunnel.since)}")
        if tunnel.reason:  # charon is trying again: why the last attempt failed
            parts.append(f"again, after: {_reason(tunnel)}")
        return PeerStatus("connecting", ", ".join(parts), tunnel.since)
    if tunnel.disconnected:
        return PeerStatus("disconnected", "stays down until Connect or Restart IPsec",
                          tunnel.reason_at or tunnel.since)
    # Down since it stopped being up, however many attempts failed since (each failure has its
    # own time in the reason): a retry every 30 s must not make a long outage look new.
    if not tunnel.ever_up and (not tunnel.reason or any(s in tunnel.reason for s in _SILENT)):
        return PeerStatus("waiting", _reason(tunnel) or "never reached it yet",
                          tunnel.down_since or tunnel.since)
    return PeerStatus("down", _reason(tunnel),
                      tunnel.down_since or tunnel.reason_at or tunnel.since)


def counts(statuses) -> list[tuple[str, str, int]]:
    """(label, badge, how many) for each kind present, in KINDS order."""
    found: dict[str, int] = {}
    for status in statuses:
        found[status.kind] = found.get(status.kind, 0) + 1
    return [(KINDS[k][0], KINDS[k][1], found[k]) for k in KINDS if k in found]


def status_overview(peers, result: IPsecStatus, page: int = 1, per_page: int = 100,
                    tunnels=None, not_applied=None) -> dict:
    """The status pane's content: counts for every peer, then one page of peers (those with IKE
    SAs in detail first, the others in one line each, as many rows a page as the peer table), and
    the connections this UI did not create. A router with a thousand tunnels gets a pane that
    renders, and refreshes, in a fraction of the time of all of them at once."""
    by_name: dict[str, list] = {}
    for sa in result.sas:
        by_name.setdefault(sa.name, []).append(sa)
    loaded = {c.name for c in result.connections}
    active, idle = [], []
    for peer in peers:
        if by_name.get(peer.name):
            active.append((peer, by_name[peer.name]))
        elif tunnels is not None:
            idle.append((peer, of(peer, tunnels.get(peer.name),
                                  (not_applied or {}).get(peer.name, ""), loaded)))
        else:
            idle.append((peer, PeerStatus("disabled") if not peer.enabled else
                         PeerStatus("not-loaded") if peer.name not in loaded else
                         PeerStatus("down", "no IKE SA")))
    established = sum(1 for _, sas in active if any(sa.state == "ESTABLISHED" for sa in sas))
    page, pages, start = page_of(len(peers), per_page, page)
    end = start + per_page
    external = [(c, by_name.get(c.name, [])) for c in result.connections if not c.managed]
    # The same states as the rows, counted over every peer: the pane and the table agree.
    kinds = counts(of(p, tunnels.get(p.name), (not_applied or {}).get(p.name, ""), loaded)
                   for p in peers) if tunnels is not None else None
    return {"active": active[start:end], "counts": kinds,
            "idle": idle[max(0, start - len(active)):max(0, end - len(active))],
            "external": external, "configured": len(peers), "established": established,
            "negotiating": len(active) - established, "without": len(idle),
            "page": page, "pages": pages, "first": start + 1, "last": min(end, len(peers))}
