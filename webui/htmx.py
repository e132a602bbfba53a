"""htmx on the server side: page or fragment, and the response headers htmx understands."""
from __future__ import annotations

from flask import Flask, Response, render_template, request


def wants_fragment() -> bool:
    """An htmx request that swaps part of the page (a boosted one wants the whole page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-Boosted") != "true"


def render(page: str, fragment: str, status: int = 200, **context) -> tuple[str, int]:
    """The fragment alone for htmx, else the whole page (which includes the same fragment)."""
    return render_template(fragment if wants_fragment() else page, **context), status


def redirect_303(location: str) -> Response:
    """After a successful change: a real redirect for plain forms, HX-Redirect for htmx."""
    if wants_fragment():
        response = Response(status=204)
        response.headers["HX-Redirect"] = location
        return response
    return Response(status=303, headers={"Location": location})


def retarget(body: str, target: str, swap: str = "outerHTML") -> Response:
    """Swap `body` somewhere other than where the request said (HX-Retarget, HX-Reswap)."""
    return Response(body, headers={"HX-Retarget": target, "HX-Reswap": swap})


FORM_EXPIRED = ("Nothing was changed: the form had expired. Its security token was missing or out "
                "of date, as happens when a page stays open across a new sign-in, a sign-out or a "
                "restart of this UI. Reload the page and try again.")


def form_expired(error):
    """A post whose CSRF token is missing or stale (a tab left open across a new sign-in or a
    restart): a plain form gets a page that says what to do; htmx gets the same words as plain
    text, marked so that app.js puts them in its banner with a Reload button (the same 400
    either way; nothing was changed)."""
    if request.headers.get("HX-Request") == "true":
        return Response(FORM_EXPIRED, status=400, mimetype="text/plain",
                        headers={"X-Form-Expired": "true"})
    return render_template("form_expired.html", why=error.description), 400


def init_app(app: Flask) -> None:
    from flask_wtf.csrf import CSRFError
    app.register_error_handler(CSRFError, form_expired)

    @app.after_request
    def vary_on_htmx(response: Response) -> Response:
        # One URL serves both the page and its fragment: caches must keep them apart.
        response.vary.add("HX-Request")
        return response
