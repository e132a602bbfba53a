"""The peer store: TinyDB in one JSON file, written atomically and one writer at a time.

Views never build TinyDB queries; they call `PeerStore`. TinyDB's stock JSONStorage rewrites the
file in place (a crash mid-write leaves half a file) and is not thread-safe, so this module brings
its own storage: parsed once, kept in memory, every write a temp file + fsync + rename.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from tinydb import TinyDB
from tinydb.storages import Storage

from webui.atomic import write_atomic
from webui.peers import ADVANCED_DEFAULTS, SCHEMA_VERSION, Peer

log = logging.getLogger(__name__)

PEERS_TABLE = "peers"
META_TABLE = "_meta"


class StoreError(Exception):
    """The store cannot be used; the message names the file."""


class DuplicatePeer(StoreError):
    pass


class PeerNotFound(StoreError):
    pass


class AtomicJSONStorage(Storage):
    """TinyDB storage: the parsed file kept in memory, every write atomic and mode 0600."""

    def __init__(self, path: str):
        self.path = Path(path)
        self._data: dict | None = None

    def read(self) -> dict | None:
        if self._data is None:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return None
            try:
                self._data = json.loads(raw) if raw.strip() else None
            except ValueError as e:
                raise StoreError(f"{self.path} is not valid JSON ({e}); "
                                 "it was left untouched. Restore it from a backup or move it away.")
            if self._data is not None and not isinstance(self._data, dict):
                raise StoreError(f"{self.path} does not hold a peer database; it was left untouched.")
        return self._data

    def write(self, data: dict) -> None:
        try:
            encoded = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
            write_atomic(self.path, encoded)
        except BaseException:
            # TinyDB mutated our cached dict before calling write; forget it so the next read
            # comes from the file, which still holds the last good state.
            self._data = None
            raise
        self._data = data

    def close(self) -> None:
        pass


class PeerStore:
    """All peers, keyed by name. Every method holds one lock: waitress serves from several threads."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._lock:
            self._open()
            self._check_schema()
            self._seen = self._stamp()

    def _open(self) -> None:
        self._db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        self._peers = self._db.table(PEERS_TABLE, cache_size=0)
        self._cached = None  # see _index

    def _stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _reload_if_replaced(self) -> None:
        """`run.py restore` may replace the file while a server runs: a write is a rename, so a
        new inode means someone else wrote it, and the next save must start from what it holds,
        not overwrite it with an old copy. One stat per call. Called with the lock held."""
        stamp = self._stamp()
        if stamp != self._seen:
            log.info("%s changed on disk; reading it again", self.path)
            self._open()
            self._seen = stamp

    def _check_schema(self) -> None:
        meta = self._db.table(META_TABLE, cache_size=0)
        found = meta.all()
        if not found:
            meta.insert({"schema_version": SCHEMA_VERSION})
        else:
            version = found[0].get("schema_version")
            if version not in MIGRATIONS and version != SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version!r}; this version of "
                                 f"the UI reads {SCHEMA_VERSION}. It was left untouched.")
            if version != SCHEMA_VERSION:
                self._migrate(version)
        if self.path.exists():
            os.chmod(self.path, 0o600)

    def _migrate(self, version: int) -> None:
        """Bring an older store up to SCHEMA_VERSION, one step at a time. The file as it was is
        kept beside it first (`peers.json.v1`), so going back to the older UI loses nothing."""
        backup = self.path.with_name(f"{self.path.name}.v{version}")
        if not backup.exists():
            write_atomic(backup, self.path.read_bytes())
        data = self._db.storage.read()
        while version != SCHEMA_VERSION:
            version = MIGRATIONS[version](data)
        meta = data[META_TABLE]
        meta[next(iter(meta))]["schema_version"] = SCHEMA_VERSION
        self._db.storage.write(data)
        log.info("%s migrated to schema version %s (the previous file is kept as %s)",
                 self.path, SCHEMA_VERSION, backup.name)

    def all(self) -> list[Peer]:
        """Every peer, sorted by name (case-insensitive)."""
        with self._lock:
            self._reload_if_replaced()
            return list(self._index()[1])

    def get(self, name: str) -> Peer | None:
        with self._lock:
            self._reload_if_replaced()
            found = self._index()[0].get(name)
        return found[1] if found is not None else None

    def add(self, peer: Peer) -> None:
        with self._lock:
            self._reload_if_replaced()
            if self._find(peer.name) is not None:
                raise DuplicatePeer(f"A peer named {peer.name} already exists.")
            doc_id = self._write(lambda: self._peers.insert(peer.to_record()))
            self._cache_put(doc_id, peer)
        log.info("peer %s added", peer.name)

    def replace(self, name: str, peer: Peer) -> None:
        """Replace peer `name` with `peer` (which may carry a new name)."""
        with self._lock:
            self._reload_if_replaced()
            doc_id = self._find(name)
            if doc_id is None:
                raise PeerNotFound(f"There is no peer named {name}.")
            if peer.name != name and self._find(peer.name) is not None:
                raise DuplicatePeer(f"A peer named {peer.name} already exists.")
            self._write(lambda: self._peers.update(_replacing(peer.to_record()), doc_ids=[doc_id]))
            self._cache_drop(name)
            self._cache_put(doc_id, peer)
        log.info("peer %s saved%s", peer.name, f" (renamed from {name})" if peer.name != name else "")

    def delete(self, name: str) -> None:
        with self._lock:
            self._reload_if_replaced()
            doc_id = self._find(name)
            if doc_id is None:
                raise PeerNotFound(f"There is no peer named {name}.")
            self._write(lambda: self._peers.remove(doc_ids=[doc_id]))
            self._cache_drop(name)
        log.info("peer %s deleted", name)

    def replace_all(self, peers: list[Peer]) -> None:
        """Make the store hold exactly `peers`, in ONE atomic write (a restore): a crash leaves
        the old set or the new one, never half of each. Names must be unique."""
        records = {doc_id: peer.to_record() for doc_id, peer in enumerate(peers, start=1)}
        if len({p.name for p in peers}) != len(peers):
            raise DuplicatePeer("The peers to store have duplicate names.")

        def fill(table: dict) -> None:
            table.clear()
            table.update(records)

        with self._lock:
            self._reload_if_replaced()
            # TinyDB has no public "replace the table" in one write; _update_table is the one
            # write that truncate() and insert_multiple() each do. Its id counter is reset as
            # truncate() resets it, so the next insert counts from what is stored.
            self._write(lambda: self._peers._update_table(fill))
            self._peers._next_id = None
            self._cached = None
        log.info("peers replaced: %d stored", len(peers))

    # The status poll, the page and every form read all peers; TinyDB's Table.all() builds a
    # Document per record on each call and Peer.from_record a dataclass from each: O(n) work per
    # request. Peers are frozen, so one name index and one sorted list are built from the file
    # once and then kept in step with each successful write (a failed one drops them, so they
    # are rebuilt from what the file holds). Called with the lock held.
    def _index(self) -> tuple[dict[str, tuple[int, Peer]], tuple[Peer, ...]]:
        if self._cached is None:
            by_name = {r["name"]: (r.doc_id, Peer.from_record(r)) for r in self._peers.all()}
            self._cached = (by_name, _sorted(by_name))
        return self._cached

    def _cache_put(self, doc_id: int, peer: Peer) -> None:
        by_name = self._index()[0]
        by_name[peer.name] = (doc_id, peer)
        self._cached = (by_name, _sorted(by_name))

    def _cache_drop(self, name: str) -> None:
        by_name = self._index()[0]
        by_name.pop(name, None)
        self._cached = (by_name, _sorted(by_name))

    def _find(self, name: str) -> int | None:
        """The TinyDB document id of peer `name`."""
        found = self._index()[0].get(name)
        return found[0] if found is not None else None

    def _write(self, change):
        try:
            return change()
        except BaseException:
            self._cached = None
            raise
        finally:
            self._seen = self._stamp()


def _v1_to_v2(data: dict) -> int:
    """Version 2 adds the advanced options; a version 1 peer gets what it did before them."""
    for record in data.get(PEERS_TABLE, {}).values():
        for name, default in ADVANCED_DEFAULTS.items():
            record.setdefault(name, default)
    return 2


MIGRATIONS = {1: _v1_to_v2}  # schema version -> the step to the next one, which it returns


def _sorted(by_name: dict[str, tuple[int, Peer]]) -> tuple[Peer, ...]:
    return tuple(sorted((p for _, p in by_name.values()), key=lambda p: p.name.lower()))


def _replacing(new: dict):
    """A TinyDB update operation that replaces the whole document (update() alone would merge)."""
    def transform(doc):
        doc.clear()
        doc.update(new)
    return transform
