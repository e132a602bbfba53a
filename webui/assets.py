"""Static files with content-hashed URLs, so browsers may cache them for a year."""
from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Flask, url_for


def init_app(app: Flask) -> None:
    static = Path(app.static_folder)
    hashes: dict[str, str] = {}

    def asset_url(filename: str) -> str:
        if filename not in hashes:
            digest = hashlib.sha256((static / filename).read_bytes()).hexdigest()[:12]
            hashes[filename] = digest
        return url_for("static", filename=filename, v=hashes[filename])

    app.jinja_env.globals["asset_url"] = asset_url
    if app.config.get("SEND_FILE_MAX_AGE_DEFAULT") is None:
        app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 365 * 24 * 3600
