"""The IPsec page: quick commands, the peer table, and the per-peer status cells that poll."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from webui.auth import polled
from webui.drivers import DriverError

bp = Blueprint("ipsec", __name__)


def applier():
    return current_app.extensions["webui"]


@bp.get("/")
def index():
    """The IPsec page."""
    a = applier()
    return render_template("ipsec/index.html", peers=a.store.all(), applier=a, output=None)


@bp.get("/peers/states")
@polled
def states():
    """Every peer's status cell, swapped out of band: one list-sas per poll for all peers."""
    a = applier()
    try:
        tunnel_states, error = a.drivers.ipsec.tunnel_states(), ""
    except DriverError as e:
        tunnel_states, error = {}, str(e)
    return render_template("ipsec/_states.html", peers=a.store.all(), states=tunnel_states,
                           status_error=error, applier=a)
