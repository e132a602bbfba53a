"""Backup and restore of the peers: the file, its checks, what a restore would change, and doing it.

Nothing here is a view: the Backup page, `run.py backup|restore` (and any later API) each call
`build` / `read` / `plans` / `restore`. The file is JSON: a format name, a schema version, the
product's version, when and where it was made, and every peer with every field of `Peer` (derived
from the dataclass, so a field added to `Peer` is carried without touching this module), the
pre-shared keys only when asked for.

A restore is checked whole before anything changes: the file's structure here, then every peer by
the peer form's own rules (`PeerForm`, with the algorithms this charon reports), then each against
the others as the form checks a new peer against the stored ones. Only a file without a single
problem yields a plan; applying it is one atomic store write, then a reconcile.
"""
from __future__ import annotations

import dataclasses
import json
import re
import secrets
import threading
import time
import typing
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

from webui.peers import Peer

FORMAT = "webui-ipsec-backup"
SCHEMA_VERSION = 1
# A thousand peers with keys take about 0.7 MB; anything much larger is not a backup of ours.
MAX_BYTES = 2 * 1024 * 1024
MODES = ("merge", "replace")

_REQUIRED = {"format", "schema_version", "peers"}
_KNOWN = _REQUIRED | {"product", "product_version", "created", "host", "keys_included"}


# --- Making a backup -----------------------------------------------------------------------------

def build(peers: Iterable[Peer], with_keys: bool, host: str, now: datetime | None = None) -> dict:
    """The backup document for `peers`; without `with_keys` no PSK is in it."""
    from webui import __version__
    now = now or datetime.now(timezone.utc)
    records = []
    for peer in peers:
        record = peer.to_record()
        if not with_keys:
            del record["psk"]
        records.append(record)
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "product": "webui",
        "product_version": __version__,
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": host,
        "keys_included": with_keys,
        "peers": records,
    }


def encode(backup: dict) -> bytes:
    return (json.dumps(backup, indent=1, ensure_ascii=False) + "\n").encode()


def file_name(host: str, now: datetime | None = None) -> str:
    """`ipsec-backup-<host>-<YYYY-MM-DD>.json`, the host name reduced to safe characters."""
    now = now or datetime.now(timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", host).strip("-.") or "router"
    return f"ipsec-backup-{safe[:63]}-{now:%Y-%m-%d}.json"


# --- Reading a file ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One reason a file cannot be restored: where (the file, or peer N and its name), which
    field (its label in the peer form), and what is wrong."""

    where: str
    message: str
    field: str = ""

    def __str__(self) -> str:
        return f"{self.where}, {self.field}: {self.message}" if self.field else \
            f"{self.where}: {self.message}"


class BackupError(Exception):
    """The file cannot be restored; `problems` names each reason."""

    def __init__(self, problems: Sequence[Problem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Backup:
    """A file that passed the structural checks: its peers as typed records (no rules yet)."""

    records: tuple[dict, ...]
    created: str = ""
    host: str = ""
    product_version: str = ""
    keys_included: bool = False


def _field_kinds() -> dict[str, tuple[type, bool]]:
    """Each Peer field -> (the JSON type it takes: str, int, bool or list, whether it has a
    default). Read from the dataclass, so a new field is checked without changing this module."""
    hints = typing.get_type_hints(Peer)
    kinds = {}
    for f in dataclasses.fields(Peer):
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        kind = list if origin in (tuple, list) else hint if hint in (str, int, bool) else object
        has_default = (f.default is not dataclasses.MISSING
                       or f.default_factory is not dataclasses.MISSING)
        kinds[f.name] = (kind, has_default)
    return kinds


_KIND_WORDS = {str: "text", int: "a whole number", bool: "true or false",
               list: "a list of text values"}


def _type_ok(value, kind) -> bool:
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is object:
        return value is None or isinstance(value, (str, int, float, bool))
    return isinstance(value, kind)


def where(index: int, record) -> str:
    name = record.get("name") if isinstance(record, dict) else None
    return f"peer {index}" + (f" ({name})" if isinstance(name, str) and name else "")


def read(raw: bytes) -> Backup:
    """The backup in `raw`, structurally checked; BackupError names every problem found."""
    if len(raw) > MAX_BYTES:
        raise BackupError([Problem("the file", f"it is larger than {MAX_BYTES // 1048576} MB, so "
                                   "not a backup of this UI.")])
    if not raw.strip():
        raise BackupError([Problem("the file", "it is empty.")])
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BackupError([Problem("the file", "it is not text (UTF-8 JSON): not a backup of "
                                   "this UI.")]) from None
    except RecursionError:  # nested deeper than the parser goes: no backup of ours is
        raise BackupError([Problem("the file", "it is not a backup of this UI (JSON nested far "
                                   "too deep).")]) from None
    except ValueError as e:
        # A backup starts with "{" and ends with its closing brace: one that starts right and
        # ends early was cut short (a failed copy); anything else is not a backup at all.
        text = raw.strip()
        if text.startswith(b"{") and not text.endswith(b"}"):
            why = f"it is not valid JSON ({e}): it ends too early; was the file cut short?"
        else:
            why = "it is not JSON, so not a backup of this UI."
        raise BackupError([Problem("the file", why)]) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError([Problem("the file", "it is JSON but not a backup of this UI (no "
                                   f'"format": "{FORMAT}").')])
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BackupError([Problem("the file", f"its schema_version {version!r} is not valid.")])
    if version > SCHEMA_VERSION:
        made_by = doc.get("product_version")
        raise BackupError([Problem("the file", f"it was made by a newer version of this UI "
                                   f"({made_by or 'unknown'}, backup schema {version}); this one "
                                   f"reads schema {SCHEMA_VERSION}. Upgrade this UI first.")])
    problems = [Problem("the file", f'unknown entry "{key}".') for key in sorted(set(doc) - _KNOWN)]
    if not isinstance(doc["peers"] if "peers" in doc else None, list):
        raise BackupError(problems + [Problem("the file", '"peers" is missing or not a list.')])
    records = []
    seen: dict[str, int] = {}
    kinds = _field_kinds()
    for index, record in enumerate(doc["peers"], start=1):
        found = _check_record(index, record, kinds)
        problems += found
        if found:
            continue
        folded = record["name"].lower()
        if folded in seen:
            problems.append(Problem(where(index, record), f"the name is used by peer {seen[folded]} "
                                    "too (names must differ, ignoring case).", "Name"))
            continue
        seen[folded] = index
        records.append(record)
    if problems:
        raise BackupError(problems)
    return Backup(tuple(records), created=str(doc.get("created", "")), host=str(doc.get("host", "")),
                  product_version=str(doc.get("product_version", "")),
                  keys_included=any(r.get("psk") for r in records))


def _check_record(index: int, record, kinds) -> list[Problem]:
    at = where(index, record)
    if not isinstance(record, dict):
        return [Problem(at, "not a peer (expected an object of fields).")]
    problems = []
    for key in sorted(set(record) - set(kinds)):
        problems.append(Problem(at, f'unknown field "{key}" (made by a newer version of this UI?).'))
    for key, (kind, has_default) in kinds.items():
        if key not in record:
            if not has_default and key != "psk":
                problems.append(Problem(at, "missing.", label(key)))
        elif not _type_ok(record[key], kind):
            problems.append(Problem(at, f"must be {_KIND_WORDS.get(kind, 'a plain value')}.",
                                    label(key)))
    return problems


def label(field: str) -> str:
    """A Peer field's label in the peer form (the words the admin knows it by)."""
    from webui.forms import PeerForm
    unbound = getattr(PeerForm, field, None)
    text = unbound.args[0] if getattr(unbound, "args", None) else None
    return text or field.replace("_", " ").capitalize()


# --- What a restore would do ---------------------------------------------------------------------

@dataclass(frozen=True)
class FieldChange:
    label: str
    old: str
    new: str
    secret: bool = False  # the key: shown as "changed", never its value


@dataclass(frozen=True)
class PeerChange:
    name: str
    kind: str  # "added", "changed", "removed"
    fields: tuple[FieldChange, ...] = ()
    key_missing: bool = False  # no key in the file and none stored: saved disabled
    key_kept: bool = False  # no key in the file: the one stored under this name is kept


@dataclass(frozen=True)
class Plan:
    """A restore checked against the store as it was (`based_on`): the store it leads to, and
    what changes. Only a plan without problems can be applied."""

    mode: str
    peers: tuple[Peer, ...]
    changes: tuple[PeerChange, ...]
    unchanged: int
    problems: tuple[Problem, ...]
    based_on: tuple[Peer, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)


def plans(backup: Backup, stored: Sequence[Peer], supported: frozenset[str] | None) -> dict[str, Plan]:
    """Both ways of restoring `backup` over `stored`, "merge" and "replace", each checked whole.
    Needs an app context (the peer form). The per-peer rules run once for both."""
    stored = tuple(stored)
    checked = [_check_peer(i, record, stored, supported)
               for i, record in enumerate(backup.records, start=1)]
    return {mode: _plan(mode, checked, stored) for mode in MODES}


def _check_peer(index, record, stored, supported):
    """(where, form, peer or None, problems, key kept) for one record, by the form's own rules."""
    from webui.forms import PeerForm
    from webui.peer_json import form_data
    at = where(index, record)
    kinds = _field_kinds()
    values = {k: tuple(v) if kinds[k][0] is list else v for k, v in record.items()}
    has_key = bool(values.get("psk"))
    values.setdefault("psk", "")
    # Through Peer first: a field an older backup lacks takes the dataclass's default, as it
    # would in the store, rather than the empty value a missing form field means.
    complete = Peer(**values).to_record()
    form = PeerForm(formdata=form_data(complete), supported=supported, key_optional=not has_key,
                    meta={"csrf": False})
    if not form.validate():
        return at, form, None, _form_problems(at, form), False
    restored = form.to_peer()
    kept = False
    if not has_key:
        same = next((p for p in stored if p.name == restored.name), None)
        if same is not None and same.psk:
            restored, kept = dataclasses.replace(restored, psk=same.psk), True
        else:
            restored = dataclasses.replace(restored, psk="", enabled=False)
        # The checks against other peers (shared IDs with another key) see the peer as it will be.
        form.psk.data, form.enabled.data = restored.psk, restored.enabled
    return at, form, restored, (), kept


def _form_problems(at: str, form) -> tuple[Problem, ...]:
    return tuple(Problem(at, error, form[name].label.text if name else "")
                 for name, errors in form.errors.items() for error in errors)


def _plan(mode: str, checked, stored: tuple[Peer, ...]) -> Plan:
    problems = [p for _, _, _, found, _ in checked for p in found]
    restored = [peer for _, _, peer, _, _ in checked if peer is not None]
    names = {p.name for p in restored}
    kept = [p for p in stored if p.name not in names] if mode == "merge" else []
    final = kept + restored
    for at, form, peer, _, _ in checked:
        if peer is None:
            continue
        others = [p for p in final if p is not peer]
        for field in form:  # the other mode's checks ran on this same form
            field.errors = []
        if not form.check_against(others):
            problems += [p for p in _form_problems(at, form) if p not in problems]
    by_name = {p.name: p for p in stored}
    changes, unchanged = [], 0
    for _, _, peer, _, key_kept in checked:
        if peer is None:
            continue
        old = by_name.get(peer.name)
        if old is None:
            changes.append(PeerChange(peer.name, "added", key_missing=peer.key_missing,
                                      key_kept=key_kept))
        elif old == peer:
            unchanged += 1
        else:
            changes.append(PeerChange(peer.name, "changed", diff(old, peer),
                                      key_missing=peer.key_missing, key_kept=key_kept))
    if mode == "replace":
        changes += [PeerChange(p.name, "removed") for p in stored if p.name not in names]
    final.sort(key=lambda p: p.name.lower())
    return Plan(mode, tuple(final), tuple(changes), unchanged, tuple(problems), stored)


def diff(old: Peer, new: Peer) -> tuple[FieldChange, ...]:
    """Field by field, in the dataclass's order; the key only as "changed"."""
    changes = []
    for f in dataclasses.fields(Peer):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        if f.name == "psk":
            changes.append(FieldChange(label(f.name), "", "", secret=True))
        else:
            changes.append(FieldChange(label(f.name), show(before), show(after)))
    return tuple(changes)


def show(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (tuple, list)):
        return ", ".join(value) or "(none)"
    return str(value) if value != "" else "(empty)"


def describe(plan: Plan) -> list[str]:
    """The plan as lines of text (the command line prints them; the page shows the same)."""
    what = {"merge": "Merge: peers that are only on this router are kept.",
            "replace": "Replace everything: peers that are not in the file are deleted."}[plan.mode]
    lines = [what, f"{plan.count('added')} added, {plan.count('changed')} changed, "
                   f"{plan.count('removed')} removed, {plan.unchanged} unchanged."]
    for change in plan.changes:
        mark = {"added": "+", "changed": "~", "removed": "-"}[change.kind]
        note = ""
        if change.key_missing:
            note = " (no key in the file and none stored: saved disabled, key missing)"
        elif change.key_kept:
            note = " (no key in the file: the stored key is kept)"
        lines.append(f"  {mark} {change.name} {change.kind}{note}")
        for field in change.fields:
            lines.append(f"      {field.label}: changed" if field.secret else
                         f"      {field.label}: {field.old} -> {field.new}")
    return lines


# --- Doing it ------------------------------------------------------------------------------------

def restore(applier, plan: Plan):
    """Apply a checked plan: one atomic store write, then a reconcile; the reconcile's steps.
    StoreError when the peers changed since the plan was made (nothing is written then)."""
    if not plan.ok:
        raise BackupError(plan.problems)
    return applier.restore(list(plan.peers), based_on=list(plan.based_on))


class Pending:
    """Checked uploads waiting for the admin's confirmation on the Backup page, by a random token
    the session also holds. Kept in memory (the keys are in them) for at most `ttl` seconds, and
    only the last few."""

    def __init__(self, ttl: float = 15 * 60, limit: int = 4):
        self.ttl, self.limit = ttl, limit
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, dict[str, Plan]]] = {}

    def put(self, found: dict[str, Plan]) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._expire()
            while len(self._items) >= self.limit:
                self._items.pop(next(iter(self._items)))
            self._items[token] = (time.monotonic(), found)
        return token

    def get(self, token: str) -> dict[str, Plan] | None:
        with self._lock:
            self._expire()
            item = self._items.get(token)
        return item[1] if item else None

    def drop(self, token: str) -> None:
        with self._lock:
            self._items.pop(token, None)

    def _expire(self) -> None:
        now = time.monotonic()
        self._items = {t: v for t, v in self._items.items() if now - v[0] < self.ttl}
