"""Peers: add, edit, delete. Validation lives in webui/forms.py, storage in webui/store.py."""
from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, abort, flash, render_template, request, url_for

from webui.apply import Refused, service
from webui.drivers import DriverError
from webui.forms import PeerForm
from webui.htmx import redirect_303, render, retarget, wants_fragment
from webui.pages import output
from webui.remote_config import for_other_side
from webui.store import StoreError

bp = Blueprint("peers", __name__, url_prefix="/peers")


def stored_peer(name):
    peer = service().peer(name)
    if peer is None:
        abort(404, f"There is no peer named {name}.")
    return peer


def supported_algorithms():
    """What charon can do (cached by the driver); None when it cannot be asked: offer everything."""
    return service().supported_algorithms()


def came_from_its_page(form) -> bool:
    """Whether the edit was opened from the peer's own page (its "Change …" links and Edit peer
    say so in `next`). Only that exact path is recognised, and never followed as given: the
    answer is a redirect this app builds, so `next` cannot send anyone elsewhere."""
    return bool(form.editing) and \
        request.values.get("next") == url_for("tunnel.page", name=form.editing.name)


def form_response(form, status=200):
    if form.router_addresses is None:  # the Local IP's pick-list
        form.router_addresses = service().router_addresses()
    back = url_for("tunnel.page", name=form.editing.name) if came_from_its_page(form) else ""
    return render("peers/form.html", "peers/_form.html", status=status, form=form, back=back)


@bp.get("/new")
def new():
    """The empty peer form."""
    return form_response(PeerForm.blank(supported_algorithms()))


@bp.post("")
def create():
    """Validate and save a new peer, then apply it."""
    form = PeerForm(supported=supported_algorithms(), router_addresses=service().router_addresses())
    if not form.validate_peer(service().peers(), warn=True):
        return form_response(form, 422)
    return save(form, lambda peer: service().add(peer), "Peer {} added.")


@bp.get("/<name>/edit")
def edit(name):
    """The form for a stored peer (the pre-shared key is never sent back)."""
    return form_response(PeerForm.for_peer(stored_peer(name), supported_algorithms()))


@bp.post("/<name>")
def update(name):
    """Validate and save changes to a peer (renaming included), then apply them."""
    old = service().peer(name)
    if old is None:
        return gone(name)
    form = PeerForm(editing=old, supported=supported_algorithms(),
                    router_addresses=service().router_addresses())
    if not form.validate_peer(service().peers(), warn=True):
        return form_response(form, 422)
    return save(form, lambda peer: service().update(old, peer), "Changes to {} saved.")


def gone(name):
    """An edit of a peer deleted meanwhile (another tab, the API): said on the form, which keeps
    what was typed and becomes the add form, so the admin can add it as new or leave."""
    form = PeerForm(supported=supported_algorithms(), router_addresses=service().router_addresses())
    form.gone = name
    return form_response(form, 409)


def save(form, action, done: str):
    peer = form.to_peer()
    try:
        action(peer)
    except Refused as e:
        getattr(form, e.field or "name").errors.append(f"strongSwan refused this: {e.reason}")
        return form_response(form, 422)
    except StoreError as e:
        form.name.errors.append(str(e))
        return form_response(form, 409)
    flash(done.format(peer.name))
    if came_from_its_page(form):  # back to see whether the change worked (renamed: its new page)
        return redirect_303(url_for("tunnel.page", name=peer.name))
    return redirect_303(url_for("ipsec.index"))


@bp.get("/<name>/delete")
def confirm_delete(name):
    """Without JavaScript, deleting asks here (with htmx, the browser's confirm dialog asks)."""
    return render_template("peers/confirm_delete.html", peer=stored_peer(name))


@bp.delete("/<name>")
@bp.post("/<name>/delete")
def delete(name):
    """Delete a peer and unload it; htmx gets an empty 200 so the row disappears."""
    s = service()
    s.delete(stored_peer(name))
    done = f"Peer {name} deleted."
    if wants_fragment():
        notice = render_template("_notice.html", message=done)
        if not s.peers():  # the last one: the table gives way to the empty state's next step
            return retarget(render_template("ipsec/_peer_table.html", peers=[], pager=None)
                            + notice, "#peer-table")
        return notice
    flash(done)
    return redirect_303(url_for("ipsec.index"))


@bp.post("/<name>/enable")
def enable(name):
    """Load a disabled peer again (the row's switch)."""
    return set_enabled(stored_peer(name), True)


@bp.post("/<name>/disable")
def disable(name):
    """Keep a peer but take its tunnel down and unload it (the row's switch)."""
    return set_enabled(stored_peer(name), False)


def set_enabled(peer, enabled: bool):
    s = service()
    changed = replace(peer, enabled=enabled)
    if enabled and peer.key_missing:
        # Restored without a key (webui/backup.py): it could only fail to authenticate.
        changed, done = peer, f"Peer {peer.name} not enabled: it has no key; edit it to enter one."
    else:
        try:
            s.update(peer, changed)
            done = f"Peer {peer.name} {'enabled' if enabled else 'disabled'}."
        except Refused as e:
            changed, done = peer, f"Peer {peer.name} not enabled: strongSwan refused it: {e}"
    if not wants_fragment():
        flash(done)
        return redirect_303(url_for("ipsec.index"))
    # The table with this one row: the switch's hx-select takes the row from it, and its
    # hx-select-oob the emptied poll version, so the next poll fills the row's "…" status cell.
    return (render_template("ipsec/_peer_table.html", peers=[changed], pager=None, states={},
                            status_error="", **s.notices())
            + render_template("_notice.html", message=done))


@bp.get("/<name>/other-side")
def other_side(name):
    """The configuration for the other side of a peer (without the PSK), for the output pane."""
    return output("peers/_other_side.html", other_side=for_other_side(stored_peer(name)))


@bp.post("/<name>/connect")
def connect(name):
    """Bring the tunnel up now (initiate); the outcome shows in the peer's status cell."""
    return tunnel_action(stored_peer(name), "connect")


@bp.post("/<name>/disconnect")
def disconnect(name):
    """Take the tunnel down now (terminate); the outcome shows in the peer's status cell."""
    return tunnel_action(stored_peer(name), "disconnect")


def tunnel_action(peer, verb):
    s = service()
    try:
        if verb == "connect" and peer.responder_only:
            message = f"{peer.name} waits for the other side to connect (responder only)."
        else:
            message = s.tunnel_command(peer.name, verb)
        states, error = s.tunnel_states([peer.name]), ""
    except DriverError as e:
        message, states, error = str(e), {}, str(e)
    if not wants_fragment():
        return redirect_303(url_for("ipsec.index"))
    return render_template("ipsec/_state_cell.html", peer=peer, states=states, status_error=error,
                           message=message, **s.notices())
