"""The PSK is write-only: never in a response body, a log line, or any file but the store."""
from __future__ import annotations

from tests.conftest import valid_peer_form

PSK = "Zq8-unmistakable-psk-9xK"
PSK2 = "second-unmistakable-key-7"


def test_psk_never_leaves_the_store(browser, data_dir, caplog):
    bodies = []

    def keep(response):
        bodies.append(response.get_data(as_text=True))
        return response

    keep(browser.post("/peers", valid_peer_form(psk=PSK)))
    keep(browser.post("/peers", valid_peer_form(psk=PSK, name="bad name")))  # 422 re-render
    keep(browser.post("/peers", valid_peer_form(psk=PSK, name="x", local_ip="nope"), htmx=True))
    for url in ("/", "/peers/new", "/peers/branch-a/edit", "/peers/branch-a/delete",
                "/commands/status", "/commands/interfaces", "/commands/routes", "/peers/states"):
        keep(browser.get(url))
        keep(browser.get(url, htmx=True))
    keep(browser.post("/peers/branch-a", valid_peer_form(psk=PSK2, local_networks="bad"), htmx=True))
    keep(browser.post("/peers/branch-a", valid_peer_form(psk=PSK2)))
    keep(browser.post("/commands/restart", htmx=True))
    keep(browser.post("/peers/branch-a/connect", htmx=True))

    assert len(bodies) > 20
    for body in bodies:
        assert PSK not in body and PSK2 not in body
    for record in caplog.records:
        assert PSK not in record.getMessage() and PSK2 not in record.getMessage()
    store = (data_dir / "peers.json").read_text()
    assert PSK2 in store, "the store itself does keep the key"
    for path in data_dir.rglob("*"):
        if path.is_file() and path.name != "peers.json":
            content = path.read_bytes()
            assert PSK.encode() not in content and PSK2.encode() not in content, path
