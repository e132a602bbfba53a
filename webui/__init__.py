"""The IPsec page of a router's web UI: `create_app` builds the Flask application."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

log = logging.getLogger(__name__)

__version__ = "0.1.0"  # written into backups (webui/backup.py)

DEFAULTS = {
    "DATA_DIR": "instance",  # relative to the working directory
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


def configure(app: Flask, test_config: dict | None = None) -> Path:
    """Layer the config: defaults -> instance config.py -> WEBUI_* environment -> test_config.
    Returns the data directory, created mode 0700."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("WEBUI")
    if test_config:
        app.config.from_mapping(test_config)
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
    data_dir = Path(app.config["DATA_DIR"]).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    app.config["DATA_DIR"] = str(data_dir)
    return data_dir


def find_data_dir(test_config: dict | None = None) -> Path:
    """The data directory the app would use, without building the app (for `run.py set-password`)."""
    return configure(Flask(__name__, instance_relative_config=True), test_config)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: configuration, secrets, store and drivers, auth, then the blueprints."""
    app = Flask(__name__, instance_relative_config=True)
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
    from webui.apply import Applier

    store = PeerStore(data_dir / "peers.json")
    drivers = make_drivers(app.config)
    applier = Applier(store, drivers, swanctl_conf=app.config["SWANCTL_CONF"])
    app.extensions["webui"] = applier
    from webui.tokens import TOKENS_FILE, TokenStore
    app.extensions["tokens"] = TokenStore(data_dir / TOKENS_FILE)

    from webui import assets, auth, compress, formatting, headers, htmx
    # An unknown Host is refused before anything else runs. The session guard comes next: a lapsed
    # session is sent to the login page, not told its CSRF token is missing. CSRF is then checked
    # on every POST/PUT/PATCH/DELETE, login included.
    headers.check_host(app)
    auth.init_app(app)
    from flask_wtf.csrf import CSRFProtect
    csrf = CSRFProtect(app)

    headers.init_app(app)
    htmx.init_app(app)
    assets.init_app(app)
    compress.init_app(app)
    formatting.init_app(app)

    from webui.blueprints import api, auth as auth_views, backup, commands, ipsec, peers, tokens
    app.register_blueprint(auth_views.bp)
    app.register_blueprint(ipsec.bp)
    app.register_blueprint(peers.bp)
    app.register_blueprint(commands.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(backup.bp)
    # The API authenticates each request by its bearer token, which a cross-site page cannot
    # send; a browser's session cookie opens nothing there, so it needs no CSRF token.
    csrf.exempt(api.bp)
    app.register_blueprint(api.bp)

    applier.start(watch=app.config["VICI_WATCH"], reconcile=app.config["RECONCILE_ON_START"])
    return app
