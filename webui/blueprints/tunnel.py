"""A peer's page: its tunnel now, its history, why it is down, its live log, and a test.

Each section is a fragment of `tunnel/page.html`; the htmx endpoints return the fragment alone,
and without JavaScript the same URL answers with the whole page. The page's data comes from the
service (`webui/apply.py`), gathered by `webui/peer_page.py`.
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, abort, flash, render_template, request, url_for

from webui import peer_page
from webui.apply import service
from webui.auth import polled
from webui.drivers import DaemonUnavailable, DriverError
from webui.htmx import redirect_303, wants_fragment

bp = Blueprint("tunnel", __name__, url_prefix="/peers")

ACTIONS = ("connect", "disconnect", "rekey-ike", "reauthenticate", "rekey-child", "terminate-child")


def stored_peer(name):
    peer = service().peer(name)
    if peer is None:
        abort(404, f"There is no peer named {name}.")
    return peer


def log_level() -> str:
    """The live log's level filter from the query; a level it does not have is a 400 with a
    plain message, not everything instead (the filter's own choices are the only levels)."""
    level = request.args.get("level", "all")
    if level not in dict(peer_page.LOG_LEVELS):
        abort(Response("The live log has no such level. Choose one of: "
                       + ", ".join(dict(peer_page.LOG_LEVELS)) + ".\n", 400,
                       mimetype="text/plain"))
    return level


def page_context(peer, **extra) -> dict:
    """What the whole of tunnel/page.html needs: each section adds its keys here. A section's
    own endpoint (its poll, its form) gathers only what its fragment shows."""
    now = peer_page.now(service(), peer)
    service().watch_log(peer.name)  # someone looks: its log keeps its whole ring a while
    return now | {"history": history_of(peer, now),
                  "test": None} | peer_page.why(service(), peer, now["state"]) \
        | peer_page.log(service(), peer, log_level()) | extra


def history_of(peer, now: dict) -> dict:
    """Section 2 for the Now section's context `now` (peer_page.now)."""
    return peer_page.history(service(), peer, now["tunnel"], now["snapshot"].confirmed_at)


def page_or(fragment: str, peer, status: int = 200, **context):
    """The fragment alone for htmx (with `context`), else the whole page."""
    if wants_fragment():
        return render_template(fragment, peer=peer, **context), status
    return render_template("tunnel/page.html", **page_context(peer, **context)), status


@bp.get("/<name>")
def page(name):
    """The peer's page."""
    return render_template("tunnel/page.html", **page_context(stored_peer(name)))


@bp.get("/<name>/now")
@polled
def now(name):
    """The Now section, for its poll: 204 while nothing it shows has changed. A changed Now
    brings sections 2 and 3 along (out of band), so History has its drop as soon as Now shows
    it and "why it is down" never outlives the failure."""
    peer = stored_peer(name)
    context = peer_page.now(service(), peer)
    key = context["poll_key"]
    if key and wants_fragment() and request.args.get("v") == key:
        return "", 204
    if not wants_fragment():
        return render_template("tunnel/page.html", **page_context(peer))
    # History too: a drop shown here is a row and maybe a flap there (review25 m2).
    return render_template("tunnel/_now.html", **context) + why_oob(peer, context["state"]) + \
        render_template("tunnel/_history.html", peer=peer, oob=True,
                        history=history_of(peer, context))


def why_oob(peer, state) -> str:
    """Section 3 for the state just shown, to swap in out of band."""
    return render_template("tunnel/_why.html", peer=peer, state=state, oob=True,
                           **peer_page.why(service(), peer, state))


@bp.get("/<name>/history")
@polled
def history(name):
    """The History section, for its poll (once a minute, as often as the counters are sampled)."""
    peer = stored_peer(name)
    return page_or("tunnel/_history.html", peer,
                   history=history_of(peer, peer_page.now(service(), peer)))


@bp.post("/<name>/tunnel/<verb>")
def action(name, verb):
    """Connect, Disconnect, or act on one SA (named by charon's id in `sa`); the outcome in
    the Now section (htmx), or on the page after a redirect (a plain form)."""
    peer = stored_peer(name)
    if verb not in ACTIONS:
        abort(404)
    sa = request.form.get("sa", "")
    status = 200
    try:
        message = service().tunnel_action(peer, verb, int(sa) if sa.isdigit() else None)
    except DriverError as e:
        message, status = str(e), 503 if isinstance(e, DaemonUnavailable) else 502
    if not wants_fragment():
        flash(message)
        return redirect_303(url_for("tunnel.page", name=name))
    context = peer_page.now(service(), peer)
    return render_template("tunnel/_outcome.html", message=message, said_at=time.time(),
                           **(context | {"oob": True})) + why_oob(peer, context["state"]), status


@bp.post("/<name>/test")
def test(name):
    """Test the tunnel: ping a host in the peer's remote networks from the router."""
    peer = stored_peer(name)
    outcome = service().test_tunnel(peer, request.form.get("host", ""))
    status = 422 if outcome.field_error else 429 if outcome.limited else 200
    return page_or("tunnel/_test.html", peer, status, test=outcome)


@bp.get("/<name>/log")
@polled
def log(name):
    """The live log's lines, for its refresh: 204 while no line came (the whole page without
    htmx, which is where the level filter's plain form lands)."""
    peer = stored_peer(name)
    context = peer_page.log(service(), peer, log_level())
    if wants_fragment():
        service().watch_log(peer.name)
        if request.args.get("v") == context["log_key"]:
            return "", 204
    return page_or("tunnel/_log_lines.html", peer, **context)


@bp.get("/<name>/log.txt")
def log_text(name):
    """The live log's lines as a text file."""
    peer = stored_peer(name)
    context = peer_page.log(service(), peer, log_level())
    return Response(peer_page.log_text(context["log_lines"]), mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{peer.name}-log.txt"'})
