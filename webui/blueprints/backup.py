"""The Backup page: download the peers, restore them from a file. The work is in webui/backup.py."""
from __future__ import annotations

import socket

from flask import Blueprint, Response, current_app, render_template, request, session
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import BooleanField, PasswordField, RadioField, SelectChoice

from webui import backup
from webui.apply import service
from webui.auth import USER, check_password
from webui.store import StoreError

bp = Blueprint("backup", __name__, url_prefix="/backup")

MODE_CHOICES = [SelectChoice("merge", "Merge: add and update the file's peers, keep the others"),
                SelectChoice("replace", "Replace everything: peers not in the file are deleted")]


@bp.record_once
def _pending(state):
    state.app.extensions["webui_restores"] = backup.Pending()
    # The upload is larger than the app's form limit (MAX_CONTENT_LENGTH), and flask-wtf's
    # global check would parse it under that limit before the view could raise it: the view
    # runs the same check itself once it has (waitress's body cap still bounds it).
    state.app.extensions["csrf"].exempt(check)


class DownloadForm(FlaskForm):
    include_keys = BooleanField("Include pre-shared keys")
    password = PasswordField("Admin password")


class RestoreForm(FlaskForm):
    file = FileField("Backup file")
    mode = RadioField("How", choices=MODE_CHOICES, default="merge")


def pending() -> backup.Pending:
    return current_app.extensions["webui_restores"]


def page(download=None, restore=None, problems=(), status=200):
    return render_template("backup/index.html", download=download or DownloadForm(formdata=None),
                           restore=restore or RestoreForm(formdata=None), problems=problems,
                           peers=len(service().peers())), status


@bp.get("")
def index():
    """Download a backup, or restore one."""
    return page()


@bp.post("/download")
def download():
    """The backup file; with keys only after the admin password is typed again."""
    form = DownloadForm()
    if form.include_keys.data:
        right, wait = check_password(USER, form.password.data or "", signed_in=True)
        if wait:
            form.password.errors = [f"Too many failed attempts. Try again in {wait} s."]
            return page(download=form, status=429) + ({"Retry-After": str(wait)},)
        if not right:
            form.password.errors = ["This is not the admin password; the file was not made."]
            return page(download=form, status=422)
    host = socket.gethostname()
    body = backup.encode(backup.build(service().peers(), form.include_keys.data, host))
    name = backup.file_name(host)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# A body over the limit, or one cut short (it loses its CSRF token), ends here: the page says
# so, and nothing changed.
@bp.errorhandler(RequestEntityTooLarge)
def too_large(error):
    return page(problems=[backup.Problem("the file", f"it is larger than "
                                         f"{backup.MAX_BYTES // 1048576} MB, so not a backup of "
                                         "this UI.")], status=413)


@bp.errorhandler(CSRFError)
def incomplete(error):
    return page(problems=[backup.Problem("the upload", "it arrived incomplete (cut short, or "
                                         "without the page's security token). Reload this page "
                                         "and try again.")], status=400)


@bp.post("/restore")
def check():
    """Check an uploaded backup whole and show what restoring it would change."""
    request.max_content_length = backup.MAX_BYTES + 64 * 1024  # the form's own fields besides
    current_app.extensions["csrf"].protect()  # the global check, now under this limit
    form = RestoreForm()
    upload = form.file.data
    if form.mode.data not in backup.MODES:
        form.mode.errors = ["Choose Merge or Replace everything."]
        return page(restore=form, status=422)
    if not upload or not getattr(upload, "filename", ""):
        form.file.errors = ["Choose a backup file."]
        return page(restore=form, status=422)
    try:
        found = backup.read(upload.read(backup.MAX_BYTES + 1))
        plans = backup.plans(found, service().peers(), service().supported_algorithms())
    except backup.BackupError as e:
        return page(restore=form, problems=e.problems, status=422)
    if not any(plan.ok for plan in plans.values()):
        return page(restore=form, problems=plans[form.mode.data or "merge"].problems, status=422)
    token = pending().put(plans)
    session["restore"] = token
    chosen = form.mode.data if form.mode.data in plans and plans[form.mode.data].ok else \
        next(mode for mode, plan in plans.items() if plan.ok)
    return render_template("backup/preview.html", plans=plans, token=token, backup=found,
                           chosen=chosen)


@bp.post("/restore/apply")
def apply():
    """Restore the checked file: one store write, then load the peers into strongSwan."""
    token = request.form.get("token", "")
    plans = pending().get(token) if token and token == session.get("restore") else None
    if plans is None:
        return page(problems=[backup.Problem("the restore", "there is nothing to restore (it was "
                                             "done, or it expired after 15 minutes). Upload the "
                                             "file again.")], status=409)
    plan = plans.get(request.form.get("mode", ""))
    if plan is None or not plan.ok:
        return page(problems=[backup.Problem("the restore", "choose Merge or Replace everything.")],
                    status=422)
    try:
        steps = backup.restore(service(), plan)
    except StoreError as e:
        pending().drop(token)
        return page(problems=[backup.Problem("the restore", str(e))], status=409)
    pending().drop(token)
    session.pop("restore", None)
    return render_template("backup/done.html", plan=plan, steps=steps)
