"""`run.py backup` and `run.py restore`: the Backup page's work from a shell (webui/backup.py).

    python run.py backup [--with-keys] FILE       (FILE "-": standard output)
    python run.py restore [--merge] [--yes] FILE  (replace everything unless --merge)

Run as the UI's user with the same WEBUI_* settings (the data directory, the VICI socket). No
password is asked for keys: whoever can run this can read the data directory anyway. A restore
prints the same changes the page shows and asks before writing, unless --yes; it then writes the
store once and loads the peers into strongSwan. A server running on the same data directory reads
the restored peers at its next request.
"""
from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from webui import backup


def main(argv, stdin=None, stdout=None, stderr=None) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="run.py", description="Back up or restore the peers.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("backup", help="write every peer to FILE (JSON)")
    make.add_argument("--with-keys", action="store_true",
                      help="include the pre-shared keys: whoever has the file can use them")
    make.add_argument("file", metavar="FILE")
    put = commands.add_parser("restore", help="check FILE whole, show the changes, restore it")
    put.add_argument("--merge", action="store_true",
                     help="keep peers that are not in the file (default: replace everything)")
    put.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    put.add_argument("file", metavar="FILE")
    args = parser.parse_args(argv)
    if args.command == "backup":
        return make_backup(args, stdout, stderr)
    return restore(args, stdin, stdout, stderr)


def _service(test_config=None):
    """The app's configuration, store and drivers, without serving anything or starting the
    VICI listener: a bare Flask app gives the config and the context the peer form needs."""
    from flask import Flask

    from webui import configure
    from webui.apply import IPsecService
    from webui.drivers import make_drivers
    from webui.store import PeerStore
    app = Flask("webui", instance_relative_config=True)
    data_dir = configure(app, test_config)
    app.config.setdefault("SECRET_KEY", "cli")  # the form wants one; nothing is signed here
    store = PeerStore(data_dir / "peers.json")
    return app, IPsecService(store, make_drivers(app.config),
                             swanctl_conf=app.config["SWANCTL_CONF"])


def make_backup(args, stdout, stderr, test_config=None) -> int:
    from webui.atomic import write_atomic
    from webui.store import StoreError
    try:
        _, applier = _service(test_config)
        peers = applier.peers()
    except StoreError as e:
        print(f"error: {e}", file=stderr)
        return 1
    data = backup.encode(backup.build(peers, args.with_keys, socket.gethostname()))
    if args.file == "-":
        stdout.write(data.decode())
        return 0
    try:
        write_atomic(Path(args.file), data, mode=0o600)
    except OSError as e:
        print(f"error: cannot write {args.file}: {e.strerror}", file=stderr)
        return 1
    keys = "with the pre-shared keys (keep it as secret as a password)" if args.with_keys \
        else "without keys"
    print(f"Wrote {args.file}: {len(peers)} peer(s), {keys}. "
          f"Suggested name: {backup.file_name(socket.gethostname())}", file=stderr)
    return 0


def restore(args, stdin, stdout, stderr, test_config=None) -> int:
    from webui.store import StoreError
    try:
        with open(args.file, "rb") as f:
            raw = f.read(backup.MAX_BYTES + 1)
    except OSError as e:
        print(f"error: cannot read {args.file}: {e.strerror}", file=stderr)
        return 1
    try:
        found = backup.read(raw)
        app, applier = _service(test_config)
        supported = applier.supported_algorithms()
        with app.app_context():
            plan = backup.plans(found, applier.peers(), supported)[
                "merge" if args.merge else "replace"]
    except (backup.BackupError, StoreError) as e:
        problems = getattr(e, "problems", None) or [e]
        print("Nothing was restored; the file cannot be restored as it is:", file=stderr)
        for problem in problems:
            print(f"  {problem}", file=stderr)
        return 1
    if supported is None:
        print("note: strongSwan did not answer, so the algorithms were not checked against what "
              "it supports.", file=stderr)
    if not plan.ok:
        print("Nothing was restored; the file cannot be restored as it is:", file=stderr)
        for problem in plan.problems:
            print(f"  {problem}", file=stderr)
        return 1
    print("\n".join(backup.describe(plan)), file=stdout)
    if not plan.changes:
        print("Nothing to change.", file=stdout)
        return 0
    if not args.yes:
        if not stdin.isatty():
            print("Not confirmed: nothing was restored. Run again with --yes to restore without "
                  "asking.", file=stderr)
            return 1
        print("Restore? [y/N] ", end="", file=stdout, flush=True)
        if stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing was restored.", file=stdout)
            return 1
    try:
        steps = backup.restore(applier, plan)
    except StoreError as e:
        print(f"error: {e}", file=stderr)
        return 1
    print("Restored. strongSwan:", file=stdout)
    for step in steps:
        detail = f": {step.detail}" if step.detail else ""
        print(f"  [{'done' if step.ok else 'FAILED'}] {step.what}{detail}", file=stdout)
    return 0
