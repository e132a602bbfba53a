"""Quick commands: Restart IPsec, Get IPsec status, Get interfaces, Get routes (and Reconcile).

Each answers with a fragment for the output pane; without JavaScript the same URL answers with the
whole IPsec page, the output filled in.
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from webui.apply import service
from webui.auth import polled
from webui.drivers import DaemonUnavailable, DriverError
from webui.htmx import wants_fragment
from webui.pages import output
from webui.paging import route_page

bp = Blueprint("commands", __name__, url_prefix="/commands")
ROUTES_PER_PAGE = 100  # a route per tunnel in table 220: a thousand tunnels, ten pages


def error_status(error: DriverError) -> int:
    return 503 if isinstance(error, DaemonUnavailable) else 502


@bp.get("/status")
@polled
def status():
    """Get IPsec status: IKE and child SAs from one list-sas, connections from one list-conns."""
    s = service()
    snap = s.snapshot()
    key = s.poll_key(snap)
    if key and wants_fragment() and request.args.get("v") == key:
        return "", 204  # htmx leaves the pane as it is: nothing changed since it was rendered
    try:
        overview = s.status_overview(request.args.get("page", 1, type=int) or 1,
                                     current_app.config["PEERS_PER_PAGE"], snap)
    except DriverError as e:
        return output("commands/_status.html", error_status(e), error=str(e), poll_key=key)
    return output("commands/_status.html", overview=overview, error="",
                  lacking=s.notices()["lacking"], poll_key=key, snapshot=snap)


@bp.get("/interfaces")
def interfaces():
    """Get interfaces: one netlink dump of links and addresses."""
    try:
        found = service().interfaces()
    except DriverError as e:
        return output("commands/_error.html", error_status(e), title="Interfaces", error=str(e))
    return output("commands/_interfaces.html", interfaces=found)


@bp.get("/routes")
def routes():
    """Get routes: the main table, strongSwan's table 220 (a page at a time, `?q=` filters), and
    the policy rules."""
    try:
        found = service().routes()
    except DriverError as e:
        return output("commands/_error.html", error_status(e), title="Routes", error=str(e))
    page = route_page(found.routes, request.args.get("q", ""),
                      request.args.get("page", 1, type=int) or 1, ROUTES_PER_PAGE)
    return output("commands/_routes.html", page=page, rules=found.rules)


@bp.get("/restart")
def confirm_restart():
    """Restart IPsec asks first: a dialog for htmx, a page of its own without JavaScript."""
    s = service()
    context = {"up": len(s.tunnels_up()), "enabled": sum(1 for p in s.peers() if p.enabled),
               "disconnected": s.tunnels_disconnected()}
    if wants_fragment():
        return render_template("commands/_restart_dialog.html", **context)
    return render_template("commands/restart.html", **context)


@bp.post("/restart")
def restart():
    """Restart IPsec: restart strongSwan, wait for it, then load every configured peer again."""
    steps = service().restart()
    return output("commands/_steps.html", title="Restart IPsec", steps=steps)


@bp.post("/reconcile")
def reconcile():
    """Load every enabled peer into strongSwan and unload what this UI loaded that is gone."""
    steps = service().reconcile()
    return output("commands/_steps.html", title="Reload all peers", steps=steps)


@bp.get("/clear")
def clear():
    """Close the output pane (this also stops the status pane's polling)."""
    return output("commands/_empty.html")
