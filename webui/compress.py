"""gzip on the way out: static files from an in-memory cache, pages and fragments as they are sent.

waitress does not compress, and on a router there is often no proxy in front that would. htmx alone
is 52 KB raw and 16 KB gzipped, and a page with many peers is mostly repeated markup.

Static files are compressed once per file version (keyed by the ETag Flask derives from the file's
mtime and size) and kept in memory: there are three small ones. Their gzip variant carries the same
ETag made weak, so a browser's revalidation of either variant still gets its 304 (If-None-Match uses
weak comparison). Pages and fragments are compressed per response above a size threshold.

Compressing pages that hold a secret (the CSRF token) next to attacker-chosen text is what BREACH
exploits; it needs the victim's browser to send its session with a request the attacker chose. The
session cookie is SameSite=Strict, so such cross-site requests arrive without it and get the login
page, whose token belongs to no session.
"""
from __future__ import annotations

import gzip
import threading

from flask import Flask, Response, request

MIN_SIZE = 1024  # below this gzip's ~20 bytes of framing and the CPU are not worth it
# Level 6 (zlib's default) is within a few percent of 9 on HTML at a fraction of the CPU.
LEVEL = 6
COMPRESSIBLE = frozenset({"text/html", "text/css", "text/javascript", "application/javascript",
                          "application/json", "image/svg+xml", "text/plain"})


class StaticCache:
    """The gzipped bytes of each static file version; bounded by the files the app ships."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_file: dict[str, tuple[str, bytes | None]] = {}  # filename -> (etag, gzipped)

    def get(self, filename: str, etag: str, read) -> bytes | None:
        """The gzipped file, or None when gzip would not make it smaller."""
        with self._lock:
            cached = self._by_file.get(filename)
        if cached is not None and cached[0] == etag:
            return cached[1]
        raw = read()
        compressed = gzip.compress(raw, LEVEL, mtime=0)
        if len(compressed) >= len(raw):
            compressed = None
        with self._lock:
            self._by_file[filename] = (etag, compressed)
        return compressed


def accepts_gzip() -> bool:
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def init_app(app: Flask) -> None:
    cache = StaticCache()

    @app.after_request
    def compress(response: Response) -> Response:
        if response.mimetype not in COMPRESSIBLE:
            return response
        response.vary.add("Accept-Encoding")
        if (response.status_code != 200 or "Content-Encoding" in response.headers
                or not accepts_gzip()):
            return response
        if response.direct_passthrough:  # a static file, streamed from disk by send_file
            etag, _ = response.get_etag()
            filename = (request.view_args or {}).get("filename", "")
            if not etag or not filename:
                return response

            read_now = []

            def read() -> bytes:
                read_now.append(b"".join(response.response))
                return read_now[0]

            # Compressed once per file version, so even a small file is worth it.
            body = cache.get(filename, etag, read)
            if body is None and not read_now:
                return response
            response.close()  # the file send_file opened
            response.direct_passthrough = False
            if body is None:  # gzip would not shrink it; the file was read to find that out
                response.set_data(read_now[0])
                return response
            response.set_data(body)
            response.set_etag(etag, weak=True)
        elif response.is_streamed:
            return response  # sent as it is produced; buffering it to compress would defeat that
        else:
            data = response.get_data()
            if len(data) < MIN_SIZE:
                return response
            response.set_data(gzip.compress(data, LEVEL, mtime=0))
        response.headers["Content-Encoding"] = "gzip"
        return response
