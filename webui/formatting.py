"""Template filters and globals: durations, byte counts, and the form's shared constants."""
from __future__ import annotations

from flask import Flask

from webui.forms import NAME_PATTERN
from webui.peers import PRESETS, WEAK


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


def byte_count(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def init_app(app: Flask) -> None:
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["bytes"] = byte_count
    app.jinja_env.globals.update(name_pattern=NAME_PATTERN, weak=WEAK, presets=PRESETS, oob=False, message="",
                                 states=None, status_error="")
