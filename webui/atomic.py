"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one."""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


def write_atomic(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` via a temp file in the same directory, fsync, rename, fsync the dir."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp already makes it 0600; this sets the mode asked for
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_or_create_secret(path: Path | str, nbytes: int = 32) -> str:
    """The secret kept in `path` (0600), generated on first use."""
    import secrets
    path = Path(path)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        secret = secrets.token_hex(nbytes)
        write_atomic(path, secret.encode())
        return secret


def tidy_data_dir(data_dir: Path | str, stale_after: float = 60.0) -> None:
    """At start: remove the temp files a crash left mid-write, make every file 0600 (a copy or an
    editor may have widened one), and warn when the directory itself lets others in."""
    data_dir = Path(data_dir)
    mode = os.stat(data_dir).st_mode & 0o777
    if mode & 0o077:
        log.warning("data directory %s is mode %o: it holds the keys and the password hash; "
                    "chmod 700 it", data_dir, mode)
    now = time.time()
    for entry in os.scandir(data_dir):
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            # write_atomic's temp names; a young one may be another process's write in progress.
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                if now - st.st_mtime > stale_after:
                    os.unlink(entry.path)
                    log.info("removed %s, left by an interrupted write", entry.name)
            elif st.st_mode & 0o077:
                os.chmod(entry.path, 0o600)
                log.info("%s was readable by others; now 0600", entry.name)
        except OSError as err:
            log.warning("could not tidy %s: %s", entry.path, err)
