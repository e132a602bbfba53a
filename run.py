"""Serve the IPsec page with waitress.

    ./dev run [--host 127.0.0.1] [--port 8080] [--threads 4] [--lab | --no-lab] [--lab-prefix wuidemo]
    ./dev set-password               (the new admin password from standard input)
    .venv/bin/python run.py backup [--with-keys] FILE
    .venv/bin/python run.py restore [--merge] [--yes] FILE     (see webui/backup_cli.py)

(`./dev run ARGS` is `.venv/bin/python run.py ARGS` once the packages are installed.)
Options override the settings (WEBUI_HOST, WEBUI_PORT, WEBUI_THREADS, or config.py in the data
directory). With no strongSwan configured (neither VICI_SOCKET nor DRIVER set, by the environment
or config.py) and when run as root on a machine with strongSwan installed, it first brings up the
project's two-site lab (tests/lab.py) and points the UI at the lab router's charon, so a newcomer
sees real tunnels. Ctrl-C takes it down.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

log = logging.getLogger("webui")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", help="default: the HOST setting (127.0.0.1)")
    parser.add_argument("--port", type=int, help="default: the PORT setting (8080)")
    lab = parser.add_mutually_exclusive_group()
    lab.add_argument("--lab", dest="lab", action="store_true", default=None,
                     help="start the two-site lab and manage its router (needs root)")
    lab.add_argument("--no-lab", dest="lab", action="store_false",
                     help="never start the lab; use WEBUI_VICI_SOCKET (default /var/run/charon.vici)")
    parser.add_argument("--lab-prefix", default="wuidemo",
                        help="name prefix of the lab's namespaces, so two checkouts' labs coexist")
    parser.add_argument("--threads", type=int, help="default: the THREADS setting (4)")
    return parser.parse_args(argv)


def want_lab(choice: bool | None, given: set[str]) -> bool:
    """The lab unless told otherwise, or unless a charon or driver was chosen (in any layer)."""
    if choice is not None:
        return choice
    if given & {"VICI_SOCKET", "DRIVER"}:
        return False
    try:
        from tests import lab
    except ImportError:  # an installed router: the lab is the checkout's, not installed with it
        return False
    return lab.available()


def set_password() -> int:
    """Read a new admin password from standard input; a running server signs everyone out."""
    from webui import ConfigError, find_data_dir
    from webui.auth import set_password_from
    try:
        data_dir = find_data_dir()
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return set_password_from(sys.stdin, sys.stderr, data_dir)


def tune_malloc() -> None:
    """Two glibc settings that keep the server's resident memory near what it uses.

    - A fixed mmap threshold. A sign-in runs scrypt, which allocates 16 MiB. glibc serves a buffer
      that large by mmap and returns it on free, but each such free also raises its mmap threshold
      to that size (its dynamic threshold), so the next sign-in's 16 MiB comes from the heap and
      stays resident after it, for the life of the server.
    - At most two malloc arenas. glibc gives threads their own arenas (up to 8 per core), and each
      keeps its own free memory: with waitress's four threads, the status pane of a thousand
      tunnels left megabytes more resident. The GIL already serialises the threads' allocations.
    What each saved, measured: docs/PERFORMANCE.md, "Measured by hand".
    musl (OpenWrt) has no mallopt and neither behaviour: nothing to do there.
    """
    import ctypes
    M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
    try:
        # The process's own symbols include libc's; find_library would spawn ldconfig.
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, 256 * 1024)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["set-password"]:
        return set_password()
    if argv[:1] in (["backup"], ["restore"]):
        from webui.backup_cli import main as backup_main
        return backup_main(argv)
    args = parse_args(argv)
    tune_malloc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from webui import ConfigError, create_app, find_data_dir, read_settings
    from webui.auth import PasswordFileError
    from webui.store import PeerStore, StoreError

    try:
        settings, given = read_settings()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    host = args.host or settings["HOST"]
    port = args.port or settings["PORT"]
    threads = args.threads or settings["THREADS"]
    test_config = {"BOUND_HOST": host}
    running_lab = None
    if want_lab(args.lab, given):
        from tests import lab
        running_lab = lab.Lab(args.lab_prefix, f"lab-run/{args.lab_prefix}").start()
        test_config.update(lab.ui_config(running_lab))
        log.info("two-site lab is up: the UI manages netns %s; the remote site is %s",
                 running_lab.router_netns, lab.REMOTE_WAN)
    try:
        try:
            if running_lab is not None:
                lab.prepare_demo(running_lab, PeerStore(find_data_dir(test_config) / "peers.json"))
            app = create_app(test_config)
        except (StoreError, PasswordFileError, ConfigError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        from waitress import serve
        from webui import serving
        # A service manager stops us with SIGTERM: leave through `finally`, taking the lab down.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        for warning in serving.exposure_warnings(host, app.config):
            log.warning("INSECURE: %s", warning)
        log.info("serving on http://%s:%d/", host, port)
        max_body = settings["MAX_REQUEST_BYTES"]
        serve(app, host=host, port=port, **serving.waitress_options(threads, max_body))
    finally:
        if running_lab is not None:
            running_lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
