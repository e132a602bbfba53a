"""The IPsec page: quick commands, the peer table, and the per-peer status cells that poll."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from webui.apply import service
from webui.auth import polled
from webui.pages import page_context

bp = Blueprint("ipsec", __name__)


@bp.get("/")
def index():
    """The IPsec page."""
    return render_template("ipsec/index.html", output=None, **page_context())


@bp.get("/peers/states")
@polled
def states():
    """The status cells of the rows on screen, swapped out of band, from the monitor's snapshot
    (no request waits on charon for them). A poll that already shows this version gets 204,
    which htmx leaves alone: an idle page costs next to nothing."""
    s = service()
    snap = s.snapshot()
    key = s.poll_key(snap)
    if key and request.args.get("v") == key:
        return "", 204
    page = s.page(request.args.get("q", ""), request.args.get("page", 1, type=int) or 1,
                  current_app.config["PEERS_PER_PAGE"])
    return render_template("ipsec/_states.html", peers=page.peers, states=snap.tunnels,
                           status_error=s.status_problem(snap), snapshot=snap, poll_key=key,
                           **s.notices())
