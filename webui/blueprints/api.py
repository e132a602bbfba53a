"""The JSON API under /api/v1, for automation (Ansible's uri module, curl, scripts).

Not a second way in: a peer is validated by the peer form itself (webui/peer_json.py), saved and
applied by the same service as the form's, and every request needs an API token
(`Authorization: Bearer ...`, made on the Tokens page); the session cookie opens nothing here.
Bad tokens are throttled like bad passwords. Writes say whether anything changed, and writing an
unchanged peer changes nothing, so a playbook's second run reports `changed: false`.
"""
from __future__ import annotations

import logging
from dataclasses import asdict

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from webui import peer_json
from webui.apply import Refused, service
from webui.drivers import DaemonUnavailable, DriverError
from webui.store import StoreError

log = logging.getLogger(__name__)

PREFIX = "/api/"
bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_PER_PAGE = 1000


def init_app(app) -> None:
    """The API's door and its errors, for every URL under /api/ (unknown ones included, so a
    script gets a JSON 401/404/405, never the login page). Registered after the session guard,
    which lets these URLs through to here, and before the CSRF check, which the API does not take
    (the blueprint is exempt: a bearer token is something a cross-site page cannot send)."""

    @app.before_request
    def api_door():
        if not request.path.startswith(PREFIX):
            return None
        refused = require_token()
        if refused is None and request.routing_exception is not None:
            raise request.routing_exception  # a JSON 404/405 now, not a CSRF complaint first
        return refused

    @app.errorhandler(HTTPException)
    def api_errors(error: HTTPException):
        if request.path.startswith(PREFIX):
            return problem(error.code or 500, error.description or error.name)
        return error


def problem(status: int, message: str, **extra):
    return jsonify(error=message, **extra), status


def require_token():
    """Every API request carries a valid token; a session cookie alone is refused."""
    from webui.auth import auth
    kind, _, text = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not text.strip():
        why = ("The API takes an API token, not the browser's session: send "
               "'Authorization: Bearer <token>' (tokens are made on the Tokens page).")
        response, status = problem(401, why)
        response.headers["WWW-Authenticate"] = 'Bearer realm="webui"'
        return response, status
    throttle = auth().throttle
    address = request.remote_addr or ""  # the same count as the login form's
    wait = throttle.admit(address)
    if wait:
        response, status = problem(429, f"Too many failed attempts; try again in {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response, status
    token = current_app.extensions["tokens"].check(text.strip())
    if token is None:
        log.warning("API request with an invalid or expired token from %s", address)
        response, status = problem(401, "The token is unknown, revoked or expired.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="webui", error="invalid_token"'
        return response, status
    throttle.succeeded(address)
    g.token = token


def changed(what: str, name: str) -> None:
    """Every change through the API is logged with the token's name (never the token or a key)."""
    log.info("API token %r: %s peer %s", g.token.name, what, name)


def stored(name: str):
    peer = service().peer(name)
    if peer is None:
        from flask import abort
        abort(404, f"There is no peer named {name}.")
    return peer


def json_body():
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes: not a peer either
        body = None
    if body is None:
        return None, problem(400, "Send the peer as a JSON object (Content-Type: application/json).")
    errors = peer_json.shape_errors(body)
    if errors:
        return None, (jsonify(errors=errors), 422)
    body.pop("psk_set", None)  # read-only: what GET shows may be sent back as it is
    return body, None


# --- Peers --------------------------------------------------------------------------------------

@bp.get("/peers")
def list_peers():
    """The peers, a page at a time, filtered by `q` as the peer table is."""
    size = min(max(request.args.get("per_page", 100, type=int) or 100, 1), MAX_PER_PAGE)
    page = service().page(request.args.get("q", ""), request.args.get("page", 1, type=int) or 1,
                          size)
    return jsonify(peers=[peer_json.to_json(p) for p in page.peers], page=page.number,
                   pages=page.pages, per_page=size, total=page.total, query=page.query)


@bp.get("/peers/<name>")
def get_peer(name):
    """One peer: every field but the key (`psk_set` says whether one is stored)."""
    return jsonify(peer_json.to_json(stored(name)))


@bp.post("/peers")
def create_peer():
    """A new peer; every field the form requires must be given, the rest take the form's defaults."""
    body, error = json_body()
    if error:
        return error
    missing = [f for f in peer_json.required_fields() if f not in body]
    if missing:
        return jsonify(errors={f: ["This field is required."] for f in missing}), 422
    return save(dict(peer_json.new_peer_defaults(service().supported_algorithms()), **body), None, 201)


@bp.put("/peers/<name>")
def put_peer(name):
    """The whole peer: created if there is none by that name, else replaced (fields left out take
    the new-peer defaults; a key left out keeps the stored one)."""
    body, error = json_body()
    if error:
        return error
    if body.get("name", name) != name:
        return jsonify(errors={"name": [f"Must be {name}, as in the URL (rename with PATCH)."]}), 422
    old = service().peer(name)
    record = {**peer_json.new_peer_defaults(service().supported_algorithms()), **body, "name": name}
    if old is None:
        missing = [f for f in peer_json.required_fields() if f not in record]
        if missing:
            return jsonify(errors={f: ["This field is required."] for f in missing}), 422
    return save(record, old, 201 if old is None else 200)


@bp.patch("/peers/<name>")
def patch_peer(name):
    """The fields given, over the stored peer (the key changes only when given; `name` renames)."""
    body, error = json_body()
    if error:
        return error
    old = stored(name)
    return save(dict(peer_json.to_json(old), **body), old, 200)


def save(record: dict, old, created_status: int):
    """Validate `record` with the peer form; save and apply it unless it equals the stored peer."""
    a = service()
    form = peer_json.peer_form(record, old, service().supported_algorithms())
    if not form.validate_peer(a.peers()):
        return jsonify(errors=peer_json.form_errors(form)), 422
    peer = form.to_peer()
    if old is not None and peer == old:
        return jsonify(changed=False, peer=peer_json.to_json(old)), 200
    try:
        if old is None:
            a.add(peer)
        else:
            a.update(old, peer)
    except Refused as e:
        return jsonify(errors={e.field or "name": [f"strongSwan refused this: {e.reason}"]}), 422
    except StoreError as e:
        return problem(409, str(e))
    changed("created" if old is None else "changed", peer.name)
    not_applied = a.notices()["not_applied"]
    return jsonify(changed=True, peer=peer_json.to_json(peer),
                   applied=peer.name not in not_applied,
                   not_applied=not_applied.get(peer.name, ""),
                   warnings={"psk": [form.psk_hint]} if form.psk_hint else {}), created_status


@bp.delete("/peers/<name>")
def delete_peer(name):
    """Delete a peer: unloaded from strongSwan, its SAs closed, its firewall rules gone."""
    service().delete(stored(name))
    changed("deleted", name)
    return jsonify(changed=True)


# --- Tunnels ------------------------------------------------------------------------------------

@bp.get("/status")
def status():
    """Each peer's state as the status cells show it, from the monitor's snapshot (never a wait
    on charon); `as_of` says when charon listed what it shows (the counters and ages are as of
    then), `error` why it is not current."""
    from webui import status as peer_status
    a = service()
    snap = a.snapshot()
    not_applied = a.notices()["not_applied"]
    result = {}
    for peer in a.peers():
        tunnel = snap.tunnels.get(peer.name)
        state = peer_status.of(peer, tunnel, not_applied.get(peer.name, ""),
                               snap.loaded if snap.version else None, snap.problem)
        result[peer.name] = {
            "enabled": peer.enabled,
            "state": state.kind,
            "label": state.label,
            "detail": state.detail,
            "established_for": tunnel.established_for if tunnel else None,
            "bytes_in": tunnel.bytes_in if tunnel else 0,
            "bytes_out": tunnel.bytes_out if tunnel else 0,
            "reason": tunnel.reason if tunnel else "",
            "not_applied": not_applied.get(peer.name, ""),
        }
    return jsonify(peers=result, error=snap.problem, as_of=snap.as_of or None,
                   version=snap.version)


def tunnel_action(name: str, verb: str):
    stored(name)
    try:
        message = service().tunnel_command(name, verb)
    except DriverError as e:
        return problem(503 if isinstance(e, DaemonUnavailable) else 502, str(e))
    log.info("API token %r: %s %s", g.token.name, verb, name)
    return jsonify(message=message)


@bp.post("/peers/<name>/connect")
def connect(name):
    """Bring the tunnel up now."""
    return tunnel_action(name, "connect")


@bp.post("/peers/<name>/disconnect")
def disconnect(name):
    """Take the tunnel down now."""
    return tunnel_action(name, "disconnect")


@bp.post("/peers/<name>/rekey")
def rekey(name):
    """Rekey the tunnel now: new keys and SPIs, traffic keeps flowing."""
    return tunnel_action(name, "rekey")


# --- Quick commands -----------------------------------------------------------------------------

def driver_answer(call):
    try:
        return jsonify(call())
    except DriverError as e:
        return problem(503 if isinstance(e, DaemonUnavailable) else 502, str(e))


@bp.post("/ipsec/restart")
def restart():
    """Restart IPsec: restart strongSwan, wait for it, then load every configured peer again."""
    steps = service().restart()
    log.info("API token %r: restarted IPsec", g.token.name)
    return jsonify(ok=all(s.ok for s in steps), steps=[asdict(s) for s in steps])


@bp.get("/ipsec/status")
def ipsec_status():
    """Get IPsec status: the loaded connections and every IKE and child SA."""
    return driver_answer(lambda: asdict(service().ipsec_status()))


@bp.get("/interfaces")
def interfaces():
    """Get interfaces: links and their addresses."""
    return driver_answer(lambda: {"interfaces": [asdict(i) for i in service().interfaces()]})


@bp.get("/routes")
def routes():
    """Get routes: the main table, strongSwan's table 220, and the policy rules."""
    return driver_answer(lambda: asdict(service().routes()))


# --- Backup and restore (webui/backup.py, as the Backup page and run.py use it) -----------------

@bp.get("/backup")
def backup_file():
    """A backup of every peer, without keys: a token never reads a key back (the Backup page and
    `run.py backup --with-keys` give them, after the admin password)."""
    import socket
    from webui import backup
    return jsonify(backup.build(service().peers(), False, socket.gethostname()))


@bp.post("/restore")
def restore():
    """Restore a backup document: checked whole by the form's rules first. `mode` is merge
    (default) or replace; `dry_run=true` only says what would change. A restore that changes
    nothing writes nothing."""
    from webui import backup
    mode = request.args.get("mode", "merge")
    if mode not in backup.MODES:
        return problem(400, f"mode must be one of: {', '.join(backup.MODES)}.")
    request.max_content_length = backup.MAX_BYTES
    try:
        found = backup.read(request.get_data(cache=False))
    except backup.BackupError as e:
        return jsonify(problems=[problem_json(p) for p in e.problems]), 422
    a = service()
    plan = backup.plans(found, a.peers(), service().supported_algorithms())[mode]
    if not plan.ok:
        return jsonify(problems=[problem_json(p) for p in plan.problems]), 422
    changes = [{"name": c.name, "kind": c.kind, "key_missing": c.key_missing,
                "key_kept": c.key_kept,
                "fields": [{"field": f.label, "old": "" if f.secret else f.old,
                            "new": "" if f.secret else f.new, "secret": f.secret}
                           for f in c.fields]} for c in plan.changes]
    answer = {"changed": bool(plan.changes), "mode": mode, "changes": changes,
              "unchanged": plan.unchanged, "dry_run": request.args.get("dry_run") == "true"}
    if answer["dry_run"] or not plan.changes:
        return jsonify({**answer, "steps": []})
    try:
        steps = backup.restore(a, plan)
    except StoreError as e:
        return problem(409, str(e))
    log.info("API token %r: restored a backup (%s: %d added, %d changed, %d removed)",
             g.token.name, mode, plan.count("added"), plan.count("changed"), plan.count("removed"))
    return jsonify({**answer, "steps": [asdict(s) for s in steps]})


def problem_json(p) -> dict:
    return {"where": p.where, "field": p.field, "message": p.message}


@bp.get("/openapi.json")
def openapi():
    """This API described as OpenAPI 3.1, from the same field definitions as the peer form."""
    from webui.openapi import document
    return jsonify(document())
