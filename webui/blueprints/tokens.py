"""API tokens: make one (shown once), list them with their last use, revoke one."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField
from wtforms.validators import InputRequired, NumberRange, Optional

from webui.htmx import redirect_303
from webui.tokens import TokenError

log = logging.getLogger(__name__)

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


class TokenForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired("Name the token after what will use it.")])
    days = IntegerField("Expires after (days)", validators=[
        Optional(), NumberRange(1, 3650, "Enter a number of days from 1 to 3650, or leave it empty.")])


def tokens():
    return current_app.extensions["tokens"]


def page(form, status=200, created=None):
    return render_template("tokens/index.html", form=form, tokens=tokens().all(),
                           created=created), status


@bp.get("")
def index():
    """The tokens and the form for a new one."""
    return page(TokenForm(formdata=None))


@bp.post("")
def create():
    """Make a token; its text is shown on this answer only."""
    form = TokenForm()
    if not form.validate():
        return page(form, 422)
    try:
        token, text = tokens().create(form.name.data, form.days.data)
    except TokenError as e:
        form.name.errors.append(str(e))
        return page(form, 422)
    log.info("API token %r created", token.name)
    return page(TokenForm(formdata=None), 201, created=(token, text))


@bp.post("/<token_id>/revoke")
def revoke(token_id):
    """Revoke a token: the next request with it is refused."""
    token = tokens().revoke(token_id)
    if token is None:
        abort(404, "There is no such token.")
    log.info("API token %r revoked", token.name)
    return redirect_303(url_for("tokens.index"))
