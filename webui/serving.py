"""How run.py serves the app: waitress's limits for a router, and what it warns about at start.

Waitress reads a whole request before the app (and its login guard) sees it, so whatever it is
willing to read, an anonymous client can make it hold. Its defaults are a server's: bodies up to
1 GiB spooled to temporary files (on OpenWrt /tmp is RAM), 100 connections, two minutes of silence
before a connection is dropped. Here a body is refused with 413 as soon as its Content-Length is
read if it is over the cap, anything under the cap stays in memory (never a temporary file), and
a few dozen connections are the most the UI holds at once.
"""
from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)

# The largest form (a peer with 32 networks a side and a 256-character key) is a few KiB; Flask's
# MAX_CONTENT_LENGTH holds forms to 64 KiB. Waitress's cap is the bound for any route (a restore
# file of a few hundred peers fits), and times the connection limit it is the most memory anonymous
# clients can make the UI hold in request bodies: 8 MiB. WEBUI_MAX_REQUEST_BYTES changes it.
MAX_BODY_BYTES = 256 * 1024
MAX_HEADER_BYTES = 32 * 1024
CONNECTION_LIMIT = 32
# Seconds a connection may stay silent. Waitress has no deadline for a whole request: a client
# that sends a byte every few seconds holds its connection as long as it likes (see README).
CHANNEL_TIMEOUT = 30


def waitress_options(threads: int = 4, max_body: int = MAX_BODY_BYTES) -> dict:
    """Keyword arguments for waitress.serve / create_server."""
    return {
        "threads": threads,
        "max_request_body_size": max_body,
        # Bodies under the cap stay in memory: no temporary file is ever written for a request.
        "inbuf_overflow": max_body,
        "max_request_header_size": MAX_HEADER_BYTES,
        "connection_limit": CONNECTION_LIMIT,
        "channel_timeout": CHANNEL_TIMEOUT,
        "cleanup_interval": 10,
        "ident": "webui",
    }


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, config) -> list[str]:
    """What is wrong with serving on `host` with `config`: plain HTTP off this machine, and cookies
    that travel without TLS. On loopback (behind a TLS front end, or a developer's own machine)
    nothing leaves the machine in clear."""
    if is_loopback(host):
        return []
    warnings = [f"serving plain HTTP on {host}: the password, the session cookie and pre-shared "
                "keys cross the network in clear. Bind to 127.0.0.1 behind a TLS front end "
                "(docs/nginx-webui.conf, README \"Security\")."]
    if not config.get("SESSION_COOKIE_SECURE"):
        warnings.append("the session cookie is not Secure (WEBUI_SESSION_COOKIE_SECURE=false): "
                        "set it to true once the UI is reached over HTTPS.")
    return warnings
