"""Security headers on every response: what the browser may load, frame, sniff, send and keep."""
from __future__ import annotations

from flask import Flask, Response, request

# No 'unsafe-inline' or 'unsafe-eval': an injected <script>, style= or hx-on would not run.
# htmx is told (htmx-config in base.html) not to add its indicator <style> and not to eval.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Nothing here needs a camera, a microphone, a location or the like; no other site's window
    # keeps a handle on this one, and no other site may embed its responses.
    "Permissions-Policy": ("camera=(), microphone=(), geolocation=(), usb=(), serial=(), "
                           "payment=(), interest-cohort=()"),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def trusted_hosts(setting, bound_host: str = "") -> frozenset[str] | None:
    """The host names the UI answers to, lower case, IPv6 without brackets; None = any ("*")."""
    items = setting.split(",") if isinstance(setting, str) else list(setting or ())
    names = {str(item).strip().lower().strip("[]") for item in items if str(item).strip()}
    if "*" in names:
        return None
    bound = (bound_host or "").strip().lower().strip("[]")
    if bound and bound not in ("0.0.0.0", "::"):
        names.add(bound)
    return frozenset(names)


def host_name(host_header: str) -> str:
    """"router.lan:8080" -> "router.lan", "[::1]:8080" -> "::1"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def check_host(app: Flask) -> None:
    @app.before_request
    def refuse_unknown_host():
        allowed = app.config.get("HOSTS_ALLOWED")
        if allowed is None:
            return None
        if host_name(request.headers.get("Host", "")) not in allowed:
            return Response("Unknown host name. Add it to WEBUI_TRUSTED_HOSTS to reach the UI "
                            "by this name.\n", 400, {"Content-Type": "text/plain; charset=utf-8"})
        return None


def init_app(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        # Pages and fragments carry peer details and CSRF tokens: no cache keeps them. Static
        # files have content-hashed URLs and keep their year-long max-age (webui/assets.py).
        if not (request.endpoint == "static" and response.status_code in (200, 304)):
            response.headers["Cache-Control"] = "no-store"
        return response
