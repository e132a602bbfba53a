"""Template filters and globals: durations, byte counts, and the form's shared constants."""
from __future__ import annotations

import time

import re

from flask import Flask, g, request
from flask_wtf.csrf import generate_csrf

from webui.forms import NAME_PATTERN, NAME_RULE
from webui.peers import AEAD, LIMITS, PRESETS, WEAK


def duration(seconds: int | None) -> str:
    """3725 -> '1h 2m'; short and stable, for cells that refresh every few seconds."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def timestamp(seconds: float) -> str:
    """A point in time (seconds since the epoch) for a table: 2026-11-28 04:05 UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def clock(at: float) -> str:
    """A wall-clock time (seconds since the epoch) as the router's local HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else ""


def byte_count(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# A value werkzeug puts into a URL unchanged (RFC 3986 unreserved characters): substituting it
# for a placeholder gives exactly the URL url_for would build.
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
_PLACEHOLDER = "PLACEHOLDERxq7"


def fast_url_for(app: Flask):
    """`url_for` for templates: the same URLs, but a per-peer link costs a string replace.

    The peer table has several links per peer, and werkzeug's URL building is a large share of
    rendering a page of them (docs/PERFORMANCE.md, "Measured by hand"). A rule with one variable is built once per
    endpoint (and script root) with a placeholder, then filled in; anything else, and any value
    with a character URL building would quote, goes to the real url_for."""
    patterns: dict[tuple[str, str, str], tuple[str, str] | None] = {}

    def url_for(endpoint: str, **values) -> str:
        method = values.pop("_method", None)  # picks one of an endpoint's rules (Delete's, say)
        if len(values) != 1:
            return app.url_for(endpoint, _method=method, **values)
        (key, value), = values.items()
        if not isinstance(value, str) or not _URL_SAFE.fullmatch(value):
            return app.url_for(endpoint, _method=method, **values)
        slot = (endpoint, key, method, request.script_root)
        pattern = patterns.get(slot, False)
        if pattern is False:
            built = app.url_for(endpoint, _method=method, **{key: _PLACEHOLDER})
            pattern = tuple(built.split(_PLACEHOLDER)) if built.count(_PLACEHOLDER) == 1 else None
            patterns[slot] = pattern
        if pattern is None:
            return app.url_for(endpoint, **values)
        return pattern[0] + value + pattern[1]

    return url_for


def csrf_token() -> str:
    """The request's CSRF token: flask-wtf keeps it in `g.csrf_token` once made; its
    generate_csrf looks up two config keys on every call, and a 1000-peer page has 2000 calls."""
    token = g.get("csrf_token")
    return token if token is not None else generate_csrf()


# Fields made of several inputs (radio buttons, checkboxes): a link to the field goes to the first.
_GROUPS = ("RadioField", "CheckboxGroup")


def refused(form, warnings: bool = False) -> list[tuple[str, str, str]]:
    """A refused form's errors (or, with `warnings`, its warnings) as (field label, message, id of
    the input to go to), in the form's order, for the list of links above it. The CSRF token's
    error has no field to go to."""
    found = []
    for f in form:
        for error in getattr(form, "warnings", {}).get(f.name, ()) if warnings else f.errors:
            if f.type == "CSRFTokenField":
                found.append(("", error, ""))
            else:
                found.append((f.label.text, error, f"{f.id}-0" if f.type in _GROUPS else f.id))
    return found


def first_refused(form) -> str:
    """The id of the first field with an error: focused when the page loads, with or without
    JavaScript."""
    refused = next((f.id for f in form if f.errors and f.type != "CSRFTokenField"), "")
    warned = getattr(form, "warnings", {})
    return refused or next((f.id for f in form if f.name in warned), "")


def preset_label(form) -> str:
    """The name of the preset the form's algorithm boxes match, or "Custom"."""
    for preset in form.presets.values():
        if all(set(getattr(form, name).data or ()) == set(keywords)
               for name, keywords in preset["choices"].items()):
            return preset["label"]
    return "Custom"


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(url_for=fast_url_for(app), csrf_token=csrf_token)
    # flask-wtf also puts its csrf_token into every template's context, which beats globals.
    app.context_processor(lambda: {"csrf_token": csrf_token})
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["bytes"] = byte_count
    app.jinja_env.filters["timestamp"] = timestamp
    app.jinja_env.filters["refused"] = refused
    app.jinja_env.filters["first_refused"] = first_refused
    app.jinja_env.filters["clock"] = clock
    from webui import status
    app.jinja_env.globals["peer_status"] = status.of
    app.jinja_env.globals["RESTARTING"] = status.RESTARTING
    app.jinja_env.filters["since"] = lambda at: duration(max(0, time.time() - at)) if at else ""
    app.jinja_env.filters["preset_label"] = preset_label
    app.jinja_env.globals.update(name_pattern=NAME_PATTERN, name_rule=NAME_RULE, weak=WEAK, aead=AEAD, presets=PRESETS)
    app.jinja_env.globals["peer_limits"] = LIMITS
