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
}


def init_app(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        # Pages and fragments carry peer details and CSRF tokens: no cache keeps them. Static
        # files have content-hashed URLs and keep their year-long max-age (webui/assets.py).
        if not (request.endpoint == "static" and response.status_code in (200, 304)):
            response.headers["Cache-Control"] = "no-store"
        return response
