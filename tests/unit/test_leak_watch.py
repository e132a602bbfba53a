"""The run-wide leak watch (tests/conftest.py) does catch a leak: a check that cannot fail is none."""
from __future__ import annotations

import logging

from flask import Flask

from tests.conftest import LeakWatch


def test_leak_watch_flags_a_secret_in_a_response_and_a_log_line(tmp_path):
    (tmp_path / "secret_key").write_text("f00d" * 16)
    watch = LeakWatch()
    app = Flask(__name__)  # not an app the run-wide watch knows, so this planted leak stays local
    app.config["DATA_DIR"] = str(tmp_path)
    app.add_url_rule("/leak", "leak", lambda: "key: " + "f00d" * 16)
    app.add_url_rule("/fine", "fine", lambda: "nothing to see")
    watch.watch(app)
    app.test_client().get("/fine")
    assert watch.found == []
    app.test_client().get("/leak")
    assert len(watch.found) == 1

    logger = logging.getLogger("leak-watch-self-test")
    logger.propagate = False  # keep the planted line away from the run-wide handler
    logger.addHandler(watch)
    logger.error("loaded key %s", "f00d" * 16)
    logger.error("loaded peer %s", "branch-a")
    assert watch.leaking_lines(watch.lines) == [f"leak-watch-self-test: loaded key {'f00d' * 16}"]
