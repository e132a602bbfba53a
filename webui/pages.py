"""What the IPsec page shows, for every blueprint that renders it: its peer table with the notices
beside it, and the output pane a quick command fills. Kept out of the blueprints so that none
imports another."""
from __future__ import annotations

from flask import current_app, render_template, request

from webui.apply import service
from webui.htmx import wants_fragment


def page_context(from_request: bool = True) -> dict:
    """The IPsec page's context besides its output pane, as plain data: the page of peers the
    request asks for (`?page=N&q=text`; with `from_request` False, the first page of all, for a
    URL whose own `page` is another pane's), and the notices. The status cells come from the
    monitor's snapshot, as the poll renders them (no request waits on charon), so the page is
    whole without JavaScript; with it, the poll carries on from the same version."""
    args = request.args if from_request else {}
    s = service()
    page = s.page(args.get("q", ""), _number(args.get("page")), current_app.config["PEERS_PER_PAGE"])
    snap = s.snapshot()
    return {"peers": page.peers, "pager": page, "states": snap.tunnels,
            "status_error": s.status_problem(snap), "snapshot": snap, "poll_key": s.poll_key(snap),
            **s.notices()}


def _number(text: str | None) -> int:
    try:
        return int(text or 1) or 1
    except ValueError:
        return 1


def output(template: str, status: int = 200, **context):
    """A quick command's fragment for htmx, else the IPsec page with it in the output pane."""
    if wants_fragment():
        return render_template(template, **context), status
    return render_template("ipsec/index.html", output=template,
                           **(page_context(from_request=False) | context)), status
