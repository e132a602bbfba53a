"""Each peer's recent charon log lines, in memory, within one byte budget for all peers together.

The monitor (webui/drivers/monitor.py) adds the lines charon logs about a connection; the peer's
page shows them (the live log) and explains them (webui/diagnosis.py). A peer keeps up to `lines`
lines; when all peers together hold more than `budget` bytes, the peers nobody is watching are cut
to their last `idle_lines`, largest first. So a router with a handful of peers keeps about 300
lines each, and one with a thousand busy ones stays within the budget, whatever the uptime.

Only charon's levels 0 and 1 are kept (VICI's `log` event carries no more): charon logs keys and
key material at level 4 only (hex dumps of a loaded shared key, of derived secrets), so a line
that could hold a secret is never stored, whatever log level charon runs at.
"""
from __future__ import annotations

import threading
import time

from webui.drivers import LogLine

LINES = 300
IDLE_LINES = 40
BUDGET = 1 << 20  # bytes of stored lines, all peers together
WATCH_SECONDS = 600.0  # a peer whose log was looked at keeps its full ring this long
MAX_LEVEL = 1  # charon's LEVEL_CTRL: the most VICI's `log` event carries
_MAX_TEXT = 1000  # one line's text; charon's lines are far shorter


class _Ring:
    __slots__ = ("count", "data")

    def __init__(self):
        self.count = 0
        self.data = bytearray()


def _encode(at: float, level: int, ike: int, text: str) -> bytes:
    text = text[:_MAX_TEXT].replace("\n", " ").replace("\r", " ")
    return f"{at:.3f}\t{level}\t{ike}\t{text}\n".encode("utf-8", "replace")


def _decode(entry: bytes) -> LogLine:
    at, level, ike, text = entry.decode("utf-8", "replace").split("\t", 3)
    return LogLine(float(at), int(level), int(ike), text)


class PeerLog:
    """Lines per peer name, oldest first; thread-safe."""

    def __init__(self, lines: int = LINES, idle_lines: int = IDLE_LINES, budget: int = BUDGET,
                 watch_seconds: float = WATCH_SECONDS):
        self.lines_kept, self.idle_lines, self.budget = lines, idle_lines, budget
        self.watch_seconds = watch_seconds
        self._rings: dict[str, _Ring] = {}
        self._watched: dict[str, float] = {}  # name -> monotonic time its watch ends
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes of stored lines, all peers together."""
        return self._size

    def add(self, name: str, at: float, level: int, ike: int, text: str) -> None:
        if level > MAX_LEVEL:
            return
        entry = _encode(at, level, ike, text)
        with self._lock:
            ring = self._rings.get(name)
            if ring is None:
                ring = self._rings[name] = _Ring()
            ring.data += entry
            ring.count += 1
            self._size += len(entry)
            if ring.count > self.lines_kept:
                self._cut(ring, self.lines_kept)
            if self._size > self.budget:
                self._trim()

    def lines(self, name: str) -> list[LogLine]:
        with self._lock:
            ring = self._rings.get(name)
            data = bytes(ring.data) if ring else b""
        return [_decode(entry) for entry in data.splitlines() if entry]

    def watch(self, name: str) -> None:
        """Someone is looking at this peer's log: keep its full ring for a while."""
        with self._lock:
            self._watched[name] = time.monotonic() + self.watch_seconds

    def forget(self, name: str) -> None:
        with self._lock:
            ring = self._rings.pop(name, None)
            if ring is not None:
                self._size -= len(ring.data)
            self._watched.pop(name, None)

    def _cut(self, ring: _Ring, keep: int) -> None:
        """Drop the oldest lines of `ring` down to `keep` (lock held)."""
        drop = ring.count - keep
        if drop <= 0:
            return
        end = -1
        for _ in range(drop):
            end = ring.data.index(b"\n", end + 1)
        del ring.data[:end + 1]
        ring.count = keep
        self._size -= end + 1

    def _trim(self) -> None:
        """Over budget: cut the unwatched peers' rings, largest first, until a quarter of the
        budget is free again (so trimming does not run on every line): to `idle_lines`, then a
        quarter of that, then nothing; the watched ones last."""
        now = time.monotonic()
        self._watched = {n: until for n, until in self._watched.items() if until > now}
        target = self.budget * 3 // 4
        passes = ((self.idle_lines, False), (self.idle_lines // 4, False), (0, False),
                  (self.idle_lines, True))
        for keep, watched in passes:
            for name, ring in sorted(self._rings.items(), key=lambda item: -len(item[1].data)):
                if self._size <= target:
                    return
                if (name in self._watched) == watched:
                    self._cut(ring, keep)
        for name in [n for n, ring in self._rings.items() if not ring.count]:
            del self._rings[name]


def redact(text: str, secret: str) -> str:
    """`text` without `secret`, as typed or as hex: a second guard behind the level cap."""
    if not secret:
        return text
    for form in (secret, secret.encode().hex(), secret.encode().hex().upper()):
        text = text.replace(form, "(the pre-shared key, hidden)")
    return text
