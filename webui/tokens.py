"""API tokens: created on the Tokens page, shown once, kept only as a hash, revocable.

A token reads `wui1.<id>.<secret>`: the id finds its record, the secret (32 random bytes) is
compared with the stored SHA-256 of it. A fast hash is enough here, unlike for the admin password:
the secret is random and long, so there is nothing to guess offline. The file holds no secret
(mode 0600 all the same, in the data directory). The time of last use is kept in memory and
written at most once a minute per token, so a busy automation does not rewrite the file per call.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from webui.atomic import write_atomic

TOKENS_FILE = "api_tokens.json"
PREFIX = "wui1"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,47}")
MAX_TOKENS = 64
LAST_USE_WRITE_EVERY = 60.0  # seconds


@dataclass(frozen=True)
class Token:
    """A token's record: never the secret itself."""

    id: str
    name: str
    created: float
    expires: float | None  # None: never
    last_used: float | None
    digest: str

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


class TokenError(Exception):
    """A token cannot be created (the message says why, for the form)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """The tokens of one data directory; thread-safe."""

    def __init__(self, path: Path | str, clock=time.time):
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = self._read()
        self._written_use: dict[str, float] = {}

    def _read(self) -> dict[str, Token]:
        try:
            records = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        return {r["id"]: Token(**r) for r in records.get("tokens", [])}

    def _write(self) -> None:
        doc = {"tokens": [asdict(t) for t in self._tokens.values()]}
        write_atomic(self.path, json.dumps(doc, indent=1).encode())

    def all(self) -> list[Token]:
        """Newest first."""
        return sorted(self._tokens.values(), key=lambda t: t.created, reverse=True)

    def create(self, name: str, days: int | None) -> tuple[Token, str]:
        """A new token and its full text, which is shown once and never again."""
        name = name.strip()
        if not NAME_RE.fullmatch(name):
            raise TokenError("1–48 letters, digits, spaces, _ . or -, starting with a letter or digit.")
        with self._lock:
            if any(t.name == name for t in self._tokens.values()):
                raise TokenError(f"A token named {name} exists already; revoke it or pick another name.")
            if len(self._tokens) >= MAX_TOKENS:
                raise TokenError(f"At most {MAX_TOKENS} tokens; revoke unused ones first.")
            token_id = secrets.token_hex(4)
            while token_id in self._tokens:
                token_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            now = self.clock()
            token = Token(token_id, name, now, now + days * 86400 if days else None, None,
                          _digest(secret))
            self._tokens[token_id] = token
            self._write()
        return token, f"{PREFIX}.{token_id}.{secret}"

    def revoke(self, token_id: str) -> Token | None:
        with self._lock:
            token = self._tokens.pop(token_id, None)
            if token is not None:
                self._write()
            return token

    def check(self, text: str) -> Token | None:
        """The token `text` stands for, if it is valid now (and its use recorded), else None."""
        prefix, _, rest = text.partition(".")
        token_id, _, secret = rest.partition(".")
        if prefix != PREFIX or not secret:
            return None
        with self._lock:
            token = self._tokens.get(token_id)
            # Compared even when there is no such id, so a wrong id and a wrong secret take alike.
            expected = token.digest if token else _digest("")
            if not hmac.compare_digest(_digest(secret), expected) or token is None:
                return None
            now = self.clock()
            if token.expired(now):
                return None
            token = self._tokens[token_id] = replace(token, last_used=now)
            if now - self._written_use.get(token_id, 0.0) >= LAST_USE_WRITE_EVERY:
                self._written_use[token_id] = now
                self._write()
            return token
