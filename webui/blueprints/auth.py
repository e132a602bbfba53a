"""Sign in, sign out, change the admin password. The rules live in webui/auth.py."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from webui.auth import MIN_PASSWORD_LENGTH, USER, auth, check_password, local_path
from webui.forms import ChangePasswordForm, LoginForm
from webui.htmx import redirect_303, wants_fragment

bp = Blueprint("auth", __name__)

WRONG = "Wrong user name or password."


# The part of a page an htmx submit swaps: the change-password form alone.
FRAGMENTS = {"auth/change_password.html": "auth/_password_form.html"}


def page(template, form, status=200, headers=None):
    if wants_fragment():
        template = FRAGMENTS.get(template, template)
    generated = auth().password_file.load().must_change
    return render_template(template, form=form, min_length=MIN_PASSWORD_LENGTH,
                           must_change=g.admin and generated,
                           first_start=not g.admin and generated), status, headers


def throttled(form, template, wait):
    """Answer at once rather than hold a server thread asleep."""
    form.form_errors.append(f"Too many failed attempts. Try again in {wait} s.")
    return page(template, form, 429, {"Retry-After": str(wait)})


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; a right password opens a session and goes back where the admin was."""
    form = LoginForm(next=request.args.get("next", ""))
    if not form.is_submitted():
        return page("auth/login.html", form)
    right, wait = check_password(form.user.data or "", form.password.data or "")
    if wait:
        return throttled(form, "auth/login.html", wait)
    if not right:
        form.form_errors.append(WRONG)
        return page("auth/login.html", form, 422)
    auth().sign_in()
    target = form.next.data if local_path(form.next.data) else url_for("ipsec.index")
    return redirect(target, 303)


@bp.post("/logout")
def logout():
    """End this session (POST with the CSRF token, so no link or image can sign the admin out)."""
    auth().sign_out()
    return redirect(url_for("auth.login"), 303)


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    """Change the admin password; every other session ends, this one carries on."""
    form = ChangePasswordForm()
    if not form.is_submitted():
        return page("auth/change_password.html", form)
    right, wait = check_password(USER, form.current.data or "", signed_in=True)
    if wait:
        return throttled(form, "auth/change_password.html", wait)
    if not right:
        form.current.errors = ["This is not the current password."]
        return page("auth/change_password.html", form, 422)
    if not form.validate():
        return page("auth/change_password.html", form, 422)
    auth().change_password(form.new.data)
    flash("Password changed. Every other signed-in browser is signed out.")
    return redirect_303(url_for("ipsec.index"))
