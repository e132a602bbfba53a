"""The IPsec page: quick commands, the peer table, and the per-peer status cells that poll."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, current_app, render_template, request

from webui.auth import polled
from webui.paging import QUERY_MAX, matching, page_of  # noqa: F401 (page_of: commands.py)
from webui.peers import Peer

bp = Blueprint("ipsec", __name__)


def applier():
    return current_app.extensions["webui"]


@dataclass(frozen=True)
class PeerPage:
    """One page of the peer table, after the filter: a router with hundreds of tunnels shows
    them a page at a time, and its status cells poll only for the rows on screen."""

    peers: list[Peer]
    number: int  # 1-based
    pages: int
    total: int  # peers matching the filter
    stored: int  # peers in the store
    query: str
    first: int  # 1-based index of the first row shown

    def args(self, number: int | None = None) -> dict:
        """Query arguments that reproduce this page (or page `number` of the same filter)."""
        args = {"page": number or self.number} if (number or self.number) > 1 else {}
        return args | ({"q": self.query} if self.query else {})


def peer_page() -> PeerPage:
    """The page of peers the request asks for (`?page=N&q=text`)."""
    every = applier().store.all()
    query = request.args.get("q", "").strip()[:QUERY_MAX]
    found = matching(every, query)
    size = current_app.config["PEERS_PER_PAGE"]
    number, pages, start = page_of(len(found), size, request.args.get("page", 1, type=int) or 1)
    return PeerPage(found[start:start + size], number, pages, len(found), len(every), query,
                    start + 1)


def page_context() -> dict:
    """What the IPsec page's template needs besides the output pane."""
    page = peer_page()
    return {"peers": page.peers, "pager": page, "applier": applier()}


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
    a = applier()
    snap = a.snapshot()
    key = a.poll_key(snap)
    if key and request.args.get("v") == key:
        return "", 204
    return render_template("ipsec/_states.html", peers=peer_page().peers, states=snap.tunnels,
                           status_error=snap.problem, applier=a, snapshot=snap,
                           poll_key=key)
