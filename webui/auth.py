"""Who may use the UI: the admin's password file, login throttling, and the guard on every request.

One administrator, user name `admin`. The password lives only as a scrypt hash in the data directory
(`admin_password.json`, mode 0600) next to its salt, its cost parameters and a generation counter.
The session (Flask's signed cookie) carries the generation it was opened under: changing the password
bumps it, which ends every other session. The guard in `before_request` runs before flask-wtf's CSRF
check, so a request from a lapsed session is sent to the login page rather than told "CSRF token
missing".
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, redirect, request, session, url_for

from webui.atomic import write_atomic

USER = "admin"
PASSWORD_FILE = "admin_password.json"
MIN_PASSWORD_LENGTH = 10
# 32 MiB per hash (128 * r * N), twice scrypt's "interactive login" cost. Only one hash runs at a
# time and glibc hands the buffer back after it (run.py's fixed mmap threshold), so a 128 MB router
# pays it for the length of one sign-in; 2^16 (64 MiB) would not fit beside charon there. Each
# password file records its own N, so older files keep working and move up at the next change.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# The passwords tried first by anyone guessing, at least MIN_PASSWORD_LENGTH long, lower case:
# a small list, enough to refuse the ones every guessing list starts with.
COMMON_PASSWORDS = frozenset("""
1234567890 12345678910 0123456789 1q2w3e4r5t 1qaz2wsx3edc qwertyuiop qwerty1234 qwerty12345
asdfghjkl; zxcvbnm123 password123 password12 password1! passw0rd12 p@ssw0rd12 password1234
administrator admin12345 admin123456 adminadmin rootroot12 letmein123 welcome123 welcome2024
welcome2025 welcome2026 changeme12 changeme123 iloveyou12 monkey1234 dragon1234 football12
baseball12 sunshine12 princess12 trustno1234 starwars12 superman12 abc1234567 abcd123456
aa12345678 qazwsxedc1 router1234 openwrt123 strongswan ipsec12345 firewall12
""".split())
# The only endpoints open without a session. Everything else, including routes added later and
# unknown URLs (endpoint None), needs one.
PUBLIC_ENDPOINTS = frozenset({"static", "auth.login"})
API_PATH = "/api/"  # webui/blueprints/api.py: bearer tokens, not this session
# What an admin who still has the generated first password may reach.
CHANGE_ENDPOINTS = PUBLIC_ENDPOINTS | {"auth.change_password", "auth.logout"}

# One scrypt at a time in the whole process: parallel logins must not multiply its memory.
_hash_lock = threading.Lock()


class PasswordFileError(Exception):
    """The password file cannot be used; the message names the file."""


def scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _hash_lock:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32,
                              maxmem=128 * r * (n + p + 2))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Credentials:
    """The password file's content: never the password itself."""

    salt: bytes
    hash: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    generation: int = 1
    must_change: bool = False

    @classmethod
    def for_password(cls, password: str, generation: int, must_change: bool) -> Credentials:
        salt = secrets.token_bytes(16)
        # The cost is read here, not from the field defaults (fixed at import), so the file always
        # records the cost its hash was made with.
        return cls(salt=salt, hash=scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P),
                   n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, generation=generation,
                   must_change=must_change)

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(scrypt(password, self.salt, self.n, self.r, self.p), self.hash)

    def to_json(self) -> bytes:
        return json.dumps({"algorithm": "scrypt", "n": self.n, "r": self.r, "p": self.p,
                           "salt": _b64(self.salt), "hash": _b64(self.hash),
                           "generation": self.generation, "must_change": self.must_change},
                          indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Credentials:
        doc = json.loads(raw)
        if doc.get("algorithm") != "scrypt":
            raise ValueError(f"unknown algorithm {doc.get('algorithm')!r}")
        return cls(salt=base64.b64decode(doc["salt"]), hash=base64.b64decode(doc["hash"]),
                   n=int(doc["n"]), r=int(doc["r"]), p=int(doc["p"]),
                   generation=int(doc["generation"]), must_change=bool(doc["must_change"]))


class PasswordFile:
    """The admin's hashed password. Re-read when the file changes, so `run.py set-password` takes
    effect in a running server (and ends its sessions) without a restart."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._credentials: Credentials | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Credentials:
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                raise PasswordFileError(f"{self.path} is missing; set a password with "
                                        "`python run.py set-password`.")
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._seen:
                try:
                    self._credentials = Credentials.from_json(self.path.read_bytes())
                except PermissionError:
                    raise PasswordFileError(
                        f"{self.path} cannot be read by this process (user id {os.geteuid()}; "
                        f"the file belongs to user id {st.st_uid}). Was `set-password` run as "
                        f"another user? Run `chown {os.geteuid()} {self.path}`, or set the "
                        "password again as the UI's user.") from None
                except (ValueError, KeyError, TypeError) as e:
                    raise PasswordFileError(f"{self.path} is not a password file ({e}); set a new "
                                            "password with `python run.py set-password`.")
                self._seen = stamp
            return self._credentials

    def set(self, password: str, must_change: bool = False) -> Credentials:
        """Store a new password; the generation moves on, so every open session ends."""
        try:
            generation = self.load().generation + 1
        except PasswordFileError:
            # Missing: the first one. Unreadable: a number no old session can carry.
            generation = 1 if not self.exists() else time.time_ns()
        credentials = Credentials.for_password(password, generation, must_change)
        write_atomic(self.path, credentials.to_json())
        return credentials

    def check(self, user: str, password: str) -> bool:
        """The same work and the same answer whether the user name or the password is wrong."""
        password_ok = self.load().matches(password)
        user_ok = hmac.compare_digest(user.encode(), USER.encode())
        return password_ok and user_ok


def password_problem(password: str) -> str | None:
    """Why `password` cannot be the admin's password, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if password != password.strip() or "\n" in password:
        return "No leading or trailing spaces or line breaks."
    if not password.isprintable():
        return "Use printable characters only: no control characters (a browser cannot type them)."
    if len(set(password)) < 4 or _sequence(password):
        return "Too easy to guess: use more different characters, not a repeat or a run."
    if password.lower() in COMMON_PASSWORDS:
        return "This is one of the most common passwords; choose another."
    return None


def _sequence(password: str) -> bool:
    """abcdefghij, 9876543210: every step between neighbours the same +1 or -1."""
    steps = {ord(b) - ord(a) for a, b in zip(password, password[1:])}
    return steps in ({1}, {-1})


def first_password(password_file: PasswordFile, given: str | None) -> None:
    """At first start: store `given` (WEBUI_ADMIN_PASSWORD), or generate one, print it once, and
    have the admin change it at first login."""
    if password_file.exists():
        return
    if given:
        problem = password_problem(given)
        if problem:
            raise PasswordFileError(f"WEBUI_ADMIN_PASSWORD is not usable: {problem}")
        password_file.set(given)
        return
    generated = secrets.token_urlsafe(12)
    password_file.set(generated, must_change=True)
    # stderr, not logging: log lines are kept and shipped; this must be seen once and then gone.
    print(f"webui: first start: sign in as {USER} with password {generated} "
          "(you will be asked to change it)", file=sys.stderr, flush=True)


# --- Throttling ----------------------------------------------------------------------------------

class Throttle:
    """Growing waits after failed logins, per client address and over all addresses.

    A login is checked only when no wait is pending; otherwise the answer is "try again in N s"
    (429) straight away, so no server thread sleeps and no scrypt runs. Every checked attempt counts
    as a failure until it succeeds: parallel guesses cannot all slip through before the first is
    counted. After `free` failures the wait is 2 s, doubling per failure up to `cap`; failures are
    forgotten after `forget_after` seconds of quiet. The per-address table keeps at most
    `max_addresses` entries (least recently failing dropped first); the overall counter, with its
    own smaller cap, is what stops an attacker who spreads guesses over many addresses, and its
    low cap is what keeps the admin from being locked out for long by one.
    """

    def __init__(self, free=5, cap=300, overall_free=20, overall_cap=30, forget_after=900,
                 max_addresses=1024, max_known=64, clock=time.monotonic):
        self.free, self.cap = free, cap
        self.overall_free, self.overall_cap = overall_free, overall_cap
        self.forget_after, self.max_addresses, self.clock = forget_after, max_addresses, clock
        self.max_known = max_known
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._overall = (0, 0.0)
        # Sources that signed in before: the overall wait does not apply to them.
        self._known: OrderedDict[str, None] = OrderedDict()

    @staticmethod
    def source(address: str) -> str:
        """Who is counted: an IPv4 address, or an IPv6 address's /64 (one host on a LAN can take
        any number of addresses in its /64, but rarely more than one /64)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return address
        if ip.version == 6 and ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def admit(self, address: str, signed_in: bool = False) -> int:
        """0 if a login from `address` may be checked now (and count it), else seconds to wait.

        The overall wait (many sources guessing) holds back only sources with failures of their
        own: one that has not failed yet gets its one check, and one that signed in before, or an
        admin already `signed_in` (the change-password form), is not held back by it at all. So
        guessing stays bounded overall, and the admin still gets in while others guess."""
        address = self.source(address)
        with self._lock:
            now = self.clock()
            mine = self._current(self._failures.get(address), now)
            overall = self._current(self._overall, now)
            wait = self._wait(mine, now, self.free, self.cap)
            if not (signed_in or address in self._known or mine[0] == 0):
                wait = max(wait, self._wait(overall, now, self.overall_free, self.overall_cap))
            if wait > 0:
                return math.ceil(wait)
            self._failures[address] = (mine[0] + 1, now)
            self._failures.move_to_end(address)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
            self._overall = (overall[0] + 1, now)
            return 0

    def succeeded(self, address: str) -> None:
        """The attempt `admit` counted was right: forget this address, un-count it overall."""
        address = self.source(address)
        with self._lock:
            self._known[address] = None
            self._known.move_to_end(address)
            while len(self._known) > self.max_known:
                self._known.popitem(last=False)
            self._failures.pop(address, None)
            count, last = self._overall
            self._overall = (max(count - 1, 0), last)

    def tracked_addresses(self) -> int:
        return len(self._failures)

    def _current(self, entry, now):
        if entry is None or now - entry[1] > self.forget_after:
            return (0, now)
        return entry

    @staticmethod
    def _wait(entry, now, free, cap) -> float:
        count, last = entry
        if count < free:
            return 0
        return min(cap, 2 ** (count - free + 1)) - (now - last)


# --- The guard on every request ------------------------------------------------------------------

def polled(view):
    """Mark a view that htmx polls (`hx-trigger="every ..."`): it needs a session like any other, but
    does not count as the admin's activity, so an open page does not keep a session alive."""
    view.polled = True
    return view


@dataclass
class SessionRecord:
    """What the server keeps of one signed-in browser; its cookie holds only the random id."""

    generation: int
    opened: float
    seen: float


class Auth:
    """Per-app auth state: the password file, the throttle, the clock sessions are timed by, and the
    session records. A cookie is only a pointer to a record here: signing out deletes the record,
    so a copy of the cookie opens nothing afterwards, and idle time and the absolute lifetime are
    the server's own clock, not what a cookie says. Records live in memory: a restart signs
    everyone out, which is acceptable for one administrator."""

    MAX_SESSIONS = 32  # one admin; the oldest goes first beyond this

    def __init__(self, password_file: PasswordFile, idle_timeout: float, throttle: Throttle,
                 clock=time.time, lifetime: float = 12 * 3600):
        self.password_file, self.idle_timeout = password_file, idle_timeout
        self.throttle, self.clock, self.lifetime = throttle, clock, lifetime
        self._sessions: OrderedDict[str, SessionRecord] = OrderedDict()
        self._sessions_lock = threading.Lock()

    def sign_in(self) -> None:
        # A fresh session (and with it a fresh CSRF token) at every login.
        self._end(session.get("sid"))
        session.clear()
        sid, now = secrets.token_urlsafe(32), self.clock()
        with self._sessions_lock:
            self._sessions[sid] = SessionRecord(self.password_file.load().generation, now, now)
            while len(self._sessions) > self.MAX_SESSIONS:
                self._sessions.popitem(last=False)
        session.update(user=USER, sid=sid)

    def sign_out(self) -> None:
        self._end(session.get("sid"))
        session.clear()

    def _end(self, sid) -> None:
        with self._sessions_lock:
            self._sessions.pop(sid, None)

    def sessions_open(self) -> int:
        return len(self._sessions)

    def change_password(self, password: str) -> None:
        """Store it under a new generation (ending every other session) and keep this one open."""
        self.password_file.set(password)
        with self._sessions_lock:
            self._sessions.clear()
        self.sign_in()

    def signed_in(self, activity: bool = False) -> bool:
        """The session's record exists, was opened under the current password, is neither idle too
        long nor older than the lifetime; with `activity`, it counts as used now."""
        sid = session.get("sid")
        if session.get("user") != USER or not isinstance(sid, str):
            return False
        now, generation = self.clock(), self.password_file.load().generation
        with self._sessions_lock:
            record = self._sessions.get(sid)
            if record is None:
                return False
            if (record.generation != generation or now - record.seen > self.idle_timeout
                    or now - record.opened > self.lifetime):
                del self._sessions[sid]
                return False
            if activity:
                record.seen = now
        return True

    def guard(self) -> Response | None:
        g.admin = False
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if request.path.startswith(API_PATH):
            return None  # the API checks its bearer token itself, and never takes the session
        view = current_app.view_functions.get(request.endpoint)
        if not self.signed_in(activity=not getattr(view, "polled", False)):
            # Drop a stale admin session, but keep an anonymous one: it holds the login form's
            # CSRF token, and a browser's parallel request (its /favicon.ico) must not void it.
            if "user" in session:
                session.clear()
            return unauthenticated()
        g.admin = True
        if self.password_file.load().must_change and request.endpoint not in CHANGE_ENDPOINTS:
            return send_to(url_for("auth.change_password"), 403)
        return None


def auth() -> Auth:
    return current_app.extensions["auth"]


def check_password(user: str, password: str, signed_in: bool = False) -> tuple[bool, int]:
    """(right, seconds to wait): every form that takes the password (sign in, change it, a backup
    with keys) goes through the throttle."""
    a, address = auth(), request.remote_addr or ""
    wait = a.throttle.admit(address, signed_in=signed_in)
    if wait:
        return False, wait
    if not a.password_file.check(user, password):
        return False, 0
    a.throttle.succeeded(address)
    return True, 0


def send_to(location: str, htmx_status: int) -> Response:
    """A page request is redirected; an htmx one gets `htmx_status` and HX-Redirect, which htmx
    follows with a full navigation whatever the status."""
    if request.headers.get("HX-Request") == "true":
        return Response("Please sign in.", htmx_status, {"HX-Redirect": location})
    return redirect(location, 303)


def unauthenticated() -> Response:
    if request.headers.get("HX-Request") == "true":
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        back = current.path + (f"?{current.query}" if current.query else "")
    elif request.method in ("GET", "HEAD"):
        back = request.full_path.rstrip("?")
    else:
        back = ""  # after login, re-doing a POST by GET would fail; the page list is the start
    target = url_for("auth.login", next=back) if local_path(back) and back != "/" else url_for("auth.login")
    return send_to(target, 401)


def local_path(target: str | None) -> bool:
    """A path on this site (`/peers/new`), not `//evil.example`, `/\\evil`, or a full URL."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(c in target for c in "\\\r\n\t") or not target.isprintable():
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def init_app(app: Flask) -> None:
    """Create the first password if there is none, then guard every request."""
    data_dir = Path(app.config["DATA_DIR"])
    password_file = PasswordFile(data_dir / PASSWORD_FILE)
    # Read raw: Flask's prefixed-env loader would turn a password such as "1e3" into a number.
    given = os.environ.get("WEBUI_ADMIN_PASSWORD") or app.config.get("ADMIN_PASSWORD")
    app.config.pop("ADMIN_PASSWORD", None)  # templates see `config`; the password is not for them
    # Nor for /proc/<pid>/environ, a crash dump, or a child process.
    os.environ.pop("WEBUI_ADMIN_PASSWORD", None)
    first_password(password_file, given)
    password_file.load()  # a broken file stops the start, not the first login
    app.register_error_handler(PasswordFileError, password_file_broken)
    state = Auth(password_file, float(app.config["IDLE_TIMEOUT_MINUTES"]) * 60, Throttle(),
                 lifetime=float(app.config["SESSION_LIFETIME_HOURS"]) * 3600)
    app.extensions["auth"] = state
    app.before_request(state.guard)


def password_file_broken(error: PasswordFileError) -> Response:
    """Nobody can sign in until the file is fixed: say how, rather than a bare 500."""
    current_app.logger.error("%s", error)
    return Response(f"The admin password file cannot be used: {error}\n", 500,
                    {"Content-Type": "text/plain; charset=utf-8"})


def set_password_from(stdin, stderr, data_dir: Path) -> int:
    """`run.py set-password`: a new password from standard input (asked twice, unechoed, on a tty)."""
    if stdin.isatty():
        import getpass
        password = getpass.getpass("New admin password: ")
        if getpass.getpass("Again: ") != password:
            print("error: the two entries differ; nothing changed", file=stderr)
            return 1
    else:
        password = stdin.readline().rstrip("\r\n")
    problem = password_problem(password)
    if problem:
        print(f"error: {problem} Nothing changed.", file=stderr)
        return 1
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials = PasswordFile(data_dir / PASSWORD_FILE).set(password)
    owner = data_dir.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        # Root setting the password of a service that runs as its own user: the file must be
        # that user's, or the service cannot read it.
        os.chown(data_dir / PASSWORD_FILE, owner.st_uid, owner.st_gid)
    print(f"Password for {USER} set (generation {credentials.generation}); every open session "
          "is signed out.", file=stderr)
    return 0

