"""Fixtures shared by unit and integration tests."""
from __future__ import annotations

import logging
import re

import pytest

from webui import create_app

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def valid_peer_form(**overrides) -> dict:
    """A form submission that passes every rule; tests change one thing at a time."""
    data = {
        "name": "branch-a", "local_id": "", "peer_id": "", "ike_version": "2",
        "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
        "local_networks": "198.51.100.0/24", "remote_networks": "203.0.113.0/24",
        "ike_encryption": ["aes256"], "ike_integrity": ["sha256"], "ike_dh_groups": ["curve25519"],
        "esp_encryption": ["aes256gcm16"], "esp_integrity": [], "esp_dh_groups": ["curve25519"],
        "psk": "correct-horse-battery-staple-42", "keying_retries": "3",
        "firewall": ["forward_lan", "forward_wan"], "enabled": "y",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


class Browser:
    """A test client that behaves like a browser: keeps its session, sends the CSRF token."""

    def __init__(self, client):
        self.client = client
        self._token = None

    def token(self) -> str:
        if self._token is None:
            page = self.client.get("/peers/new").get_data(as_text=True)
            m = CSRF_RE.search(page)
            assert m, "no CSRF token in the peer form"
            self._token = m.group(1) or m.group(2)
        return self._token

    def get(self, url, htmx=False, **kw):
        return self.client.get(url, headers=self._headers(htmx), **kw)

    def post(self, url, data=None, htmx=False, **kw):
        data = dict(data or {})
        if not htmx:
            data.setdefault("csrf_token", self.token())
        return self.client.post(url, data=data, headers=self._headers(htmx, csrf=htmx), **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers=self._headers(True, csrf=True), **kw)

    def _headers(self, htmx, csrf=False):
        headers = {}
        if htmx:
            headers["HX-Request"] = "true"
        if csrf:
            headers["X-CSRFToken"] = self.token()
        return headers


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def make_app(data_dir):
    def make(**config):
        settings = {"TESTING": True, "DATA_DIR": str(data_dir), "DRIVER": "fake"}
        settings.update(config)
        return create_app(settings)
    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def browser(app):
    return Browser(app.test_client())


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog):
    """Every test's log lines at DEBUG, so secret-leak tests can scan them."""
    caplog.set_level(logging.DEBUG)
    yield
