"""Issue 13's backup and restore through the app under waitress, against the lab's real charon:
a restore brings deleted and changed peers back as working tunnels, and an upload cut short on
the wire changes nothing."""
from __future__ import annotations

import json
import re
import socket
import urllib.request
import uuid

from tests.conftest import ADMIN_PASSWORD
from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer, cell, router_conns
from tests.integration.test_swanctl_conf import (EXTRA_HOST, EXTRA_NET, drop_extra_network,
                                                 extra_network)
from tests.lab import REMOTE_LAN, ROUTER_LAN


def multipart(fields: dict, file: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="backup.json"\r\nContent-Type: application/json\r\n\r\n'.encode()
                 + file + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(browser, raw: bytes, mode: str):
    body, content_type = multipart({"csrf_token": browser.csrf, "mode": mode}, raw)
    req = urllib.request.Request(browser.base + "/backup/restore", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    with browser.opener.open(req, timeout=30) as r:
        return r.status, r.read().decode()


def test_a_restore_brings_back_working_tunnels(live, clean_lab):
    extra_network(clean_lab)
    try:
        browser = live.browser()
        add_peer(browser, clean_lab, peer_form())
        add_peer(browser, clean_lab, peer_form(name="site-c", remote_networks=EXTRA_NET,
                                               psk="site-c-key-0123456789",
                                               local_id="hq.router.example",
                                               peer_id="site-c.remote.example"))
        for name in ("site-b", "site-c"):
            assert wait_for(lambda: cell(browser, name).get("state") == "up"), cell(browser, name)
        page = browser.post("/backup/download", {"include_keys": "y", "password": ADMIN_PASSWORD})
        saved = json.loads(page.text)
        assert saved["keys_included"] and len(saved["peers"]) == 2

        # Things go wrong: one peer deleted, the other pointed at the wrong network.
        assert browser.post("/peers/site-c/delete").status == 200
        wrong = peer_form(remote_networks="10.99.0.0/24", psk="")
        assert browser.post("/peers/site-b", wrong, htmx=True).status == 204
        assert router_conns(clean_lab) == ["site-b"]
        assert not clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1)

        status, text = upload(browser, page.text.encode(), "replace")
        assert status == 200 and "site-c" in text and "10.99.0.0/24 → 203.0.113.0/24" in text
        token = re.search(r'name="token" value="([^"]+)"', text).group(1)
        done = browser.post("/backup/restore/apply", {"token": token, "mode": "replace"})
        assert done.status == 200 and "Restored" in done.text, done.text[:2000]
        assert sorted(router_conns(clean_lab)) == ["site-b", "site-c"]
        for name in ("site-b", "site-c"):
            assert wait_for(lambda: cell(browser, name).get("state") == "up"), cell(browser, name)
        assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1), timeout=5)
        assert clean_lab.ping("router", ROUTER_LAN, EXTRA_HOST)
    finally:
        drop_extra_network(clean_lab)


def test_an_upload_cut_short_on_the_wire_changes_nothing(live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    raw = browser.post("/backup/download", {}).text.encode()
    store = live.applier.store.path
    before = store.read_bytes()
    body, content_type = multipart({"csrf_token": browser.csrf, "mode": "replace"},
                                   raw.replace(b"site-b", b"site-x"))
    jar = next(h.cookiejar for h in browser.opener.handlers if hasattr(h, "cookiejar"))
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    host, port = browser.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(f"POST /backup/restore HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
                     f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body[:len(body) // 2])
    # The connection is gone half way: the server never hands the request on, and keeps serving.
    assert browser.get("/").status == 200
    assert store.read_bytes() == before
    assert router_conns(clean_lab) == ["site-b"]
    pending = live.app.extensions["webui_restores"]
    assert pending._items == {}, "nothing was even checked"
    # The whole upload, for contrast, is read and checked.
    status, text = upload(browser, raw.replace(b"site-b", b"site-x"), "replace")
    assert status == 200 and "site-x" in text and len(pending._items) == 1


def test_a_restore_that_changes_a_key_ends_the_sa_the_old_key_made(live, clean_lab):
    """As a save from the form does (issue 17): rekeying keeps an IKE SA's authentication, so a
    key rotated by a restore must end the SA the old key made."""
    from tests.integration.test_app_hardening import NEW_KEY, OLD_KEY, remote_initiates, router_sas
    from tests.integration.test_app_ipsec import as_peer
    browser = live.browser()
    form = peer_form(psk=OLD_KEY, keying_retries="1")
    add_peer(browser, clean_lab, form)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    (old_sa,) = router_sas(clean_lab, "site-b")
    doc = json.loads(browser.post("/backup/download", {"include_keys": "y",
                                                        "password": ADMIN_PASSWORD}).text)
    doc["peers"][0]["psk"] = NEW_KEY
    status, text = upload(browser, json.dumps(doc).encode(), "merge")
    assert status == 200 and "<dt>Pre-shared key</dt><dd>changed</dd>" in text
    token = re.search(r'name="token" value="([^"]+)"', text).group(1)
    assert browser.post("/backup/restore/apply", {"token": token, "mode": "merge"}).status == 200
    assert wait_for(lambda: old_sa.unique_id not in
                    [sa.unique_id for sa in router_sas(clean_lab, "site-b")], timeout=5), \
        f"IKE SA #{old_sa.unique_id} authenticated with the old key is still there"
    clean_lab.load_remote_mirror(as_peer(dict(form, psk=NEW_KEY)))
    assert remote_initiates(clean_lab, "site-b")
    assert wait_for(lambda: clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1), timeout=5)
