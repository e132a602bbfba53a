"""Quick commands: Restart IPsec, Get IPsec status, Get interfaces, Get routes (and Reconcile).

Each answers with a fragment for the output pane; without JavaScript the same URL answers with the
whole IPsec page, the output filled in.
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from webui.auth import polled
from webui.blueprints.ipsec import page_context, page_of
from webui.drivers import DaemonUnavailable, DriverError
from webui.htmx import wants_fragment
from webui import status as peer_state

bp = Blueprint("commands", __name__, url_prefix="/commands")


def applier():
    return current_app.extensions["webui"]


def output(template: str, status: int = 200, **context):
    """The command's fragment for htmx, else the IPsec page with the fragment in its output pane."""
    if wants_fragment():
        return render_template(template, **context), status
    return render_template("ipsec/index.html", output=template,
                           **(page_context() | context)), status


def error_status(error: DriverError) -> int:
    return 503 if isinstance(error, DaemonUnavailable) else 502


@bp.get("/status")
@polled
def status():
    """Get IPsec status: IKE and child SAs from one list-sas, connections from one list-conns."""
    a = applier()
    snap = a.snapshot()
    key = a.poll_key(snap)
    if key and wants_fragment() and request.args.get("v") == key:
        return "", 204  # htmx leaves the pane as it is: nothing changed since it was rendered
    try:
        result = a.drivers.ipsec.status()
    except DriverError as e:
        return output("commands/_status.html", error_status(e), error=str(e), poll_key=key)
    overview = status_overview(a.store.all(), result, request.args.get("page", 1, type=int) or 1,
                               current_app.config["PEERS_PER_PAGE"], snap.tunnels, a.not_applied)
    return output("commands/_status.html", overview=overview, error="", lacking=a.lacking,
                  poll_key=key, snapshot=snap)


def status_overview(peers, result, page: int = 1, per_page: int = 100, tunnels=None,
                    not_applied=None) -> dict:
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
            idle.append((peer, peer_state.of(peer, tunnels.get(peer.name),
                                         (not_applied or {}).get(peer.name, ""), loaded)))
        else:
            idle.append((peer, peer_state.PeerStatus("disabled") if not peer.enabled else
                         peer_state.PeerStatus("not-loaded") if peer.name not in loaded else
                         peer_state.PeerStatus("down", "no IKE SA")))
    established = sum(1 for _, sas in active if any(sa.state == "ESTABLISHED" for sa in sas))
    page, pages, start = page_of(len(peers), per_page, page)
    end = start + per_page
    external = [(c, by_name.get(c.name, [])) for c in result.connections if not c.managed]
    # The same states as the rows, counted over every peer: the pane and the table agree.
    kinds = peer_state.counts(peer_state.of(p, tunnels.get(p.name), (not_applied or {}).get(p.name, ""),
                                    loaded) for p in peers) if tunnels is not None else None
    return {"active": active[start:end], "counts": kinds,
            "idle": idle[max(0, start - len(active)):max(0, end - len(active))],
            "external": external, "configured": len(peers), "established": established,
            "negotiating": len(active) - established, "without": len(idle),
            "page": page, "pages": pages, "first": start + 1, "last": min(end, len(peers))}


@bp.get("/interfaces")
def interfaces():
    """Get interfaces: one netlink dump of links and addresses."""
    try:
        found = applier().drivers.kernel.interfaces()
    except DriverError as e:
        return output("commands/_error.html", error_status(e), title="Interfaces", error=str(e))
    return output("commands/_interfaces.html", interfaces=found)


@bp.get("/routes")
def routes():
    """Get routes: the main table, strongSwan's table 220, and the policy rules."""
    a = applier()
    peers = a.store.all()
    try:
        found = a.drivers.kernel.routes(peers)
    except DriverError as e:
        return output("commands/_error.html", error_status(e), title="Routes", error=str(e))
    return output("commands/_routes.html", routes=found, peers=peers)


@bp.post("/restart")
def restart():
    """Restart IPsec: restart strongSwan, wait for it, then load every configured peer again."""
    steps = applier().restart()
    return output("commands/_steps.html", title="Restart IPsec", steps=steps)


@bp.post("/reconcile")
def reconcile():
    """Load every enabled peer into strongSwan and unload what this UI loaded that is gone."""
    steps = applier().reconcile()
    return output("commands/_steps.html", title="Reload all peers", steps=steps)


@bp.get("/clear")
def clear():
    """Close the output pane (this also stops the status pane's polling)."""
    return output("commands/_empty.html")
