"""The IPsec page of a router's web UI: `create_app` builds the Flask application."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from flask import Flask

from webui.drivers import ConfigError  # a setting that cannot be used; the message names it
from webui.serving import MAX_BODY_BYTES

log = logging.getLogger(__name__)

__version__ = "0.1.0"  # written into backups (webui/backup.py)

DEFAULTS = {
    "DATA_DIR": "instance",  # relative to the working directory; also where config.py is read
    "HOST": "127.0.0.1",  # where run.py listens
    "PORT": 8080,
    "THREADS": 4,  # waitress worker threads
    "MAX_REQUEST_BYTES": MAX_BODY_BYTES,  # the largest body waitress reads (run.py)
    "DRIVER": "real",  # "real" or "fake"
    "VICI_SOCKET": "/var/run/charon.vici",
    "VICI_TIMEOUT": 5.0,
    "IPSEC_RESTART_COMMAND": None,  # argument list; None = detect systemd / OpenWrt
    "NETNS": "",  # manage the router in this network namespace ("" = our own)
    "LAN_INTERFACES": "br-lan,lan0",
    "WAN_INTERFACES": "wan,wan0,eth0",
    "IPSEC_INTERFACES": "ipsec0",
    "SWANCTL_CONF": "",  # also write the enabled peers here as swanctl.conf, for boot ("" = off)
    "RECONCILE_ON_START": True,  # without VICI_WATCH: load peers once at start-up
    "VICI_WATCH": True,  # listen to charon: why tunnels fail, and reload peers when it restarts
    "STATUS_POLL_SECONDS": 5,
    "STATUS_SYNC_SECONDS": 0,  # how often the monitor lists SAs while pages poll (0: the poll's)
    "RETRY_SECONDS": 30,  # a tunnel charon gave up on is initiated again after this, doubling
    "RETRY_MAX_SECONDS": 600,  # ... up to this
    "PEERS_PER_PAGE": 100,
    "WTF_CSRF_TIME_LIMIT": None,  # tokens live as long as the session
    "IDLE_TIMEOUT_MINUTES": 15,  # status polling does not count as activity (webui/auth.py)
    "SESSION_LIFETIME_HOURS": 12,  # a session ends this long after sign-in, however busy
    "MAX_CONTENT_LENGTH": 64 * 1024,  # form bodies; waitress caps every request (webui/serving.py)
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Strict",
    "SESSION_COOKIE_SECURE": False,  # the UI serves plain HTTP on loopback by default; True behind TLS
    # Host names the UI answers to (comma-separated or a list); "*" = any. Others get 400, so a web
    # page whose name is rebound to the router's address cannot reach the login form.
    "TRUSTED_HOSTS": "localhost,127.0.0.1,::1",
    "BOUND_HOST": "",  # run.py's --host: trusted as well when it is one address
}
MIN_SECRET_KEY_BYTES = 32


def read_settings(test_config: dict | None = None) -> tuple[dict, set[str]]:
    """The settings, layered: defaults -> the data directory's config.py -> WEBUI_* environment ->
    test_config. Also returns the names given explicitly (by the file, the environment or
    test_config), so run.py can tell "the system's charon at the default socket" from "nothing said".

    The data directory comes from the environment (or test_config) alone: it says where config.py is.
    """
    test_config = dict(test_config or {})
    settings = dict(DEFAULTS)
    given: set[str] = set()
    data_dir = Path(test_config.get("DATA_DIR") or os.environ.get("WEBUI_DATA_DIR")
                    or DEFAULTS["DATA_DIR"]).resolve()
    from_file = _read_config_file(data_dir / "config.py")
    if "DATA_DIR" in from_file:
        raise ConfigError(f"{data_dir / 'config.py'}: DATA_DIR cannot be set there (it says where "
                          "that file is); set WEBUI_DATA_DIR in the environment instead")
    settings.update(from_file)
    given.update(from_file)
    for name, value in os.environ.items():
        if name.startswith("WEBUI_") and name != "WEBUI_DATA_DIR":
            key = name[len("WEBUI_"):]
            settings[key] = parse_setting(key, value)
            given.add(key)
    settings.update(test_config)
    given.update(test_config)
    settings["DATA_DIR"] = str(data_dir)
    return settings, given


def _read_config_file(path: Path) -> dict:
    """The upper-case names a config.py defines, as Flask's from_pyfile reads them."""
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from e
    namespace: dict = {"__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)
    return {k: v for k, v in namespace.items() if k.isupper()}


def parse_setting(key: str, text: str):
    """A WEBUI_* value, read by the type of its default: a secret or a path stays the string it is
    (parsing every value as JSON turned WEBUI_SECRET_KEY=1234 into an int)."""
    default = DEFAULTS.get(key)
    if key == "IPSEC_RESTART_COMMAND":
        try:
            argv = json.loads(text)
        except ValueError:
            argv = None
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ConfigError('WEBUI_IPSEC_RESTART_COMMAND must be a JSON list of strings, '
                              'e.g. ["systemctl", "restart", "strongswan"]')
        return argv
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"WEBUI_{key} must be true or false, not {text!r}")
    if isinstance(default, (int, float)):
        try:
            return type(default)(text)
        except ValueError:
            raise ConfigError(f"WEBUI_{key} must be a number, not {text!r}") from None
    return text


def configure(app: Flask, test_config: dict | None = None) -> Path:
    """Fill app.config from read_settings. Returns the data directory, created mode 0700."""
    settings, _ = read_settings(test_config)
    app.config.from_mapping(settings)
    from webui.drivers.firewall import interface_list
    for setting in ("LAN_INTERFACES", "WAN_INTERFACES", "IPSEC_INTERFACES"):
        interface_list(app.config.get(setting), setting)  # ConfigError before anything starts
    from webui.headers import trusted_hosts
    # Kept under another key: Flask's own TRUSTED_HOSTS check cannot match an IPv6 literal.
    app.config["HOSTS_ALLOWED"] = trusted_hosts(app.config.get("TRUSTED_HOSTS"),
                                                app.config.get("BOUND_HOST"))
    app.config["TRUSTED_HOSTS"] = None
    if app.config["SESSION_COOKIE_SECURE"] and app.config.get("SESSION_COOKIE_NAME") == "session":
        # __Host-: the browser keeps it only if Secure, for "/", and set without a Domain.
        app.config["SESSION_COOKIE_NAME"] = "__Host-session"
    data_dir = Path(settings["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return data_dir


def find_data_dir(test_config: dict | None = None) -> Path:
    """The data directory the app would use, without building the app (for `run.py set-password`)."""
    settings, _ = read_settings(test_config)
    data_dir = Path(settings["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return data_dir


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: configuration, secrets, store and drivers, auth, then the blueprints."""
    app = Flask(__name__)
    data_dir = configure(app, test_config)
    from webui.atomic import read_or_create_secret, tidy_data_dir
    tidy_data_dir(data_dir)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = read_or_create_secret(data_dir / "secret_key")
    if len(str(app.config["SECRET_KEY"]).encode()) < MIN_SECRET_KEY_BYTES:
        from webui.drivers import ConfigError
        raise ConfigError(f"WEBUI_SECRET_KEY is shorter than {MIN_SECRET_KEY_BYTES} bytes: anyone "
                          "who guesses it can forge a session. Unset it to use a generated one.")

    from webui.store import PeerStore
    from webui.drivers import make_drivers
    from webui.apply import IPsecService

    store = PeerStore(data_dir / "peers.json")
    drivers = make_drivers(app.config)
    applier = IPsecService(store, drivers, swanctl_conf=app.config["SWANCTL_CONF"])
    app.extensions["webui"] = applier
    from webui.tokens import TOKENS_FILE, TokenStore
    app.extensions["tokens"] = TokenStore(data_dir / TOKENS_FILE)

    from webui import assets, auth, compress, formatting, headers, htmx
    # An unknown Host is refused before anything else runs. The session guard comes next: a lapsed
    # session is sent to the login page, not told its CSRF token is missing. CSRF is then checked
    # on every POST/PUT/PATCH/DELETE, login included.
    headers.check_host(app)
    auth.init_app(app)
    from webui.blueprints import api
    api.init_app(app)
    from flask_wtf.csrf import CSRFProtect
    csrf = CSRFProtect(app)

    headers.init_app(app)
    htmx.init_app(app)
    assets.init_app(app)
    compress.init_app(app)
    formatting.init_app(app)

    from webui.blueprints import auth as auth_views, backup, commands, ipsec, peers, tokens, tunnel
    app.register_blueprint(auth_views.bp)
    app.register_blueprint(ipsec.bp)
    app.register_blueprint(peers.bp)
    app.register_blueprint(commands.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(backup.bp)
    app.register_blueprint(tunnel.bp)
    csrf.exempt(api.bp)  # bearer tokens only (webui/blueprints/api.py)
    app.register_blueprint(api.bp)

    applier.start(watch=app.config["VICI_WATCH"], reconcile=app.config["RECONCILE_ON_START"],
                  sync_period=float(app.config["STATUS_SYNC_SECONDS"]
                                    or app.config["STATUS_POLL_SECONDS"]),
                  backoff=float(app.config["RETRY_SECONDS"]),
                  backoff_max=float(app.config["RETRY_MAX_SECONDS"]))
    return app
