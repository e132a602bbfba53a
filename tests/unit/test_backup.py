"""Backup and restore (webui/backup.py), through the Backup page and on its own: the file, the
checks of a whole file by the peer form's rules, the diff, merge and replace, and bad input."""
from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest

from tests.conftest import ADMIN_PASSWORD, LEAKS, Browser, valid_peer_form
from webui import backup
from webui.peers import Peer

SECOND = dict(name="branch-b", remote_gateway="192.0.2.3", remote_networks="10.9.0.0/16",
              psk="second-branch-key-0123456789")


def stored_bytes(data_dir) -> bytes:
    return (data_dir / "peers.json").read_bytes()


def stored(data_dir) -> dict:
    doc = json.loads(stored_bytes(data_dir))
    return {p["name"]: p for p in doc["peers"].values()}


@pytest.fixture
def two_peers(browser):
    assert browser.post("/peers", valid_peer_form()).status_code == 303
    assert browser.post("/peers", valid_peer_form(**SECOND)).status_code == 303
    return browser


def download(browser, keys=False, password=""):
    data = {"password": password}
    if keys:
        data["include_keys"] = "y"
    return browser.post("/backup/download", data)


def upload(browser, raw: bytes, mode="merge", name="backup.json"):
    return browser.post("/backup/restore", {"file": (io.BytesIO(raw), name), "mode": mode},
                        content_type="multipart/form-data")


def confirm(browser, page, mode):
    token = re.search(r'name="token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return browser.post("/backup/restore/apply", {"token": token, "mode": mode})


# --- Download ------------------------------------------------------------------------------------

def test_the_ipsec_page_links_to_the_backup_page(browser):
    page = browser.get("/").get_data(as_text=True)
    assert 'href="/backup"' in page
    assert "Download a backup" in browser.get("/backup").get_data(as_text=True)


def test_download_without_keys_has_every_field_but_the_key(two_peers, data_dir):
    r = download(two_peers)
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert re.fullmatch(r'attachment; filename="ipsec-backup-[A-Za-z0-9.-]+-\d{4}-\d\d-\d\d\.json"',
                        r.headers["Content-Disposition"])
    doc = json.loads(r.get_data())
    assert doc["format"] == backup.FORMAT and doc["schema_version"] == backup.SCHEMA_VERSION
    assert doc["product_version"] and doc["created"].endswith("Z") and doc["host"]
    assert doc["keys_included"] is False
    fields = {f.name for f in dataclasses.fields(Peer)}
    assert [p["name"] for p in doc["peers"]] == ["branch-a", "branch-b"]
    for record in doc["peers"]:
        assert set(record) == fields - {"psk"}
    text = r.get_data(as_text=True)
    assert "correct-horse-battery-staple-42" not in text and SECOND["psk"] not in text


def test_download_with_keys_needs_the_admin_password(two_peers):
    r = download(two_peers, keys=True, password="not-the-password")
    assert r.status_code == 422 and r.mimetype == "text/html"
    assert "This is not the admin password" in r.get_data(as_text=True)
    r = download(two_peers, keys=True)
    assert r.status_code == 422
    r = download(two_peers, keys=True, password=ADMIN_PASSWORD)
    assert r.status_code == 200
    doc = json.loads(r.get_data())
    assert doc["keys_included"] is True
    assert {p["name"]: p["psk"] for p in doc["peers"]} == {
        "branch-a": "correct-horse-battery-staple-42", "branch-b": SECOND["psk"]}


def test_the_page_says_what_a_file_with_keys_means(browser):
    page = browser.get("/backup").get_data(as_text=True)
    assert "whoever has the file can use them" in page


def test_download_with_keys_is_throttled_like_a_login(two_peers):
    statuses = [download(two_peers, keys=True, password=f"wrong-{i}").status_code for i in range(7)]
    assert statuses[:5] == [422] * 5 and 429 in statuses[5:]


# --- Restore: a round trip -----------------------------------------------------------------------

def test_a_backup_with_keys_restores_what_was_there(two_peers, data_dir, make_app):
    raw = download(two_peers, keys=True, password=ADMIN_PASSWORD).get_data()
    before = stored(data_dir)
    two_peers.delete("/peers/branch-a")
    two_peers.post("/peers/branch-b", valid_peer_form(**dict(SECOND, remote_gateway="192.0.2.77",
                                                             psk="a-different-key-abcdefgh")))
    page = upload(two_peers, raw, mode="replace")
    assert page.status_code == 200, page.get_data(as_text=True)
    text = page.get_data(as_text=True)
    assert "branch-a" in text and "added" in text
    assert "192.0.2.77 → 192.0.2.3" in text
    assert re.search(r"<dt>Pre-shared key</dt><dd>changed</dd>", text)
    assert "a-different-key" not in text and SECOND["psk"] not in text
    r = confirm(two_peers, page, "replace")
    assert r.status_code == 200 and "Restored" in r.get_data(as_text=True)
    assert stored(data_dir) == before
    # The confirmation was used up: posting it again restores nothing.
    assert confirm(two_peers, page, "replace").status_code == 409


def test_merge_keeps_peers_not_in_the_file_and_replace_removes_them(two_peers, data_dir):
    raw = download(two_peers).get_data()
    two_peers.post("/peers", valid_peer_form(name="branch-c", remote_networks="10.50.0.0/16"))
    page = upload(two_peers, raw)
    text = page.get_data(as_text=True)
    assert "removed with Replace everything" in text and "branch-c" in text
    confirm(two_peers, page, "merge")
    assert set(stored(data_dir)) == {"branch-a", "branch-b", "branch-c"}
    page = upload(two_peers, raw)
    confirm(two_peers, page, "replace")
    assert set(stored(data_dir)) == {"branch-a", "branch-b"}


def test_a_peer_without_a_key_keeps_the_stored_key_or_is_saved_disabled(two_peers, data_dir):
    doc = json.loads(download(two_peers).get_data())
    doc["peers"].append(dict(doc["peers"][1], name="branch-new", remote_networks=["10.60.0.0/16"]))
    page = upload(two_peers, backup.encode(doc))
    assert "key missing" in page.get_data(as_text=True)
    confirm(two_peers, page, "merge")
    peers = stored(data_dir)
    assert peers["branch-a"]["psk"] == "correct-horse-battery-staple-42"
    assert peers["branch-b"]["psk"] == SECOND["psk"]
    assert peers["branch-new"]["psk"] == "" and peers["branch-new"]["enabled"] is False
    table = two_peers.get("/").get_data(as_text=True)
    assert re.search(r'id="peer-branch-new".*?key missing', table, re.S)
    # Enabling it without a key is refused, with the reason next to the key field.
    r = two_peers.post("/peers/branch-new", valid_peer_form(name="branch-new", psk="",
                                                           remote_networks="10.60.0.0/16"))
    assert r.status_code == 422 and "has no key yet" in r.get_data(as_text=True)


def test_the_restored_store_is_written_once(two_peers, data_dir, monkeypatch):
    raw = download(two_peers, keys=True, password=ADMIN_PASSWORD).get_data()
    page = upload(two_peers, raw, mode="replace")
    import webui.store
    writes = []
    real = webui.store.write_atomic
    monkeypatch.setattr(webui.store, "write_atomic", lambda *a, **k: (writes.append(a[0]), real(*a, **k)))
    confirm(two_peers, page, "replace")
    assert writes == [data_dir / "peers.json"]


def test_a_restore_checked_against_an_older_store_is_refused(two_peers, data_dir):
    raw = download(two_peers).get_data()
    page = upload(two_peers, raw, mode="replace")
    two_peers.post("/peers", valid_peer_form(name="branch-c", remote_networks="10.50.0.0/16"))
    before = stored_bytes(data_dir)
    r = confirm(two_peers, page, "replace")
    assert r.status_code == 409 and "changed since" in r.get_data(as_text=True)
    assert stored_bytes(data_dir) == before


def test_another_session_cannot_use_the_confirmation(two_peers, app):
    raw = download(two_peers).get_data()
    page = upload(two_peers, raw, mode="replace")
    other = Browser(app.test_client())
    assert confirm(other, page, "replace").status_code == 409


# --- Restore: bad input changes nothing ----------------------------------------------------------

def good_doc(browser) -> dict:
    return json.loads(download(browser, keys=True, password=ADMIN_PASSWORD).get_data())


BAD_FILES = {
    "not JSON": lambda doc: b"peers: branch-a\n",
    "not a backup": lambda doc: json.dumps({"peers": []}).encode(),
    "wrong schema": lambda doc: backup.encode(dict(doc, peers={"branch-a": {}})),
    "newer version": lambda doc: backup.encode(dict(doc, schema_version=backup.SCHEMA_VERSION + 1,
                                                    product_version="9.0.0")),
    "duplicate names": lambda doc: backup.encode(dict(doc, peers=[doc["peers"][0],
                                                                  dict(doc["peers"][1], name="Branch-A")])),
    "a peer that fails validation": lambda doc: backup.encode(dict(doc, peers=[
        doc["peers"][0], dict(doc["peers"][1], local_networks=["10.0.0.1/8"])])),
    "a field of the wrong type": lambda doc: backup.encode(dict(doc, peers=[
        dict(doc["peers"][0], ike_version="2")])),
    "a field from a newer version": lambda doc: backup.encode(dict(doc, peers=[
        dict(doc["peers"][0], mtu=1400)])),
    "cut short": lambda doc: backup.encode(doc)[:300],
    "10 MB": lambda doc: backup.encode(dict(doc, padding="x" * 10 * 1024 * 1024)),
    "empty": lambda doc: b"",
    # Found by the fresh-eyes review: this was a 500 (RecursionError in the JSON parser).
    "nested too deep": lambda doc: b"[" * 100000 + b"]" * 100000,
}
EXPECTED = {
    "not JSON": "it is not JSON, so not a backup of this UI",
    "nested too deep": "JSON nested far too deep",
    "not a backup": "not a backup of this UI",
    "wrong schema": "&#34;peers&#34; is missing or not a list",
    "newer version": "made by a newer version of this UI (9.0.0",
    "duplicate names": "peer 2 (Branch-A)</strong>, Name: the name is used by peer 1 too",
    "a peer that fails validation": "peer 2 (branch-b)</strong>, Local networks: 10.0.0.1/8 has host bits set",
    "a field of the wrong type": "peer 1 (branch-a)</strong>, Key exchange: must be a whole number",
    "a field from a newer version": 'unknown field &#34;mtu&#34;',
    "cut short": "was the file cut short?",
    "10 MB": "larger than 2 MB",
    "empty": "it is empty",
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_a_bad_file_is_named_and_changes_nothing(two_peers, data_dir, app, case):
    raw = BAD_FILES[case](good_doc(two_peers))
    before = stored_bytes(data_dir)
    r = upload(two_peers, raw, mode="replace")
    text = r.get_data(as_text=True)
    assert r.status_code in (413, 422), text
    assert "Nothing was restored" in text
    assert EXPECTED[case] in text, text
    assert stored_bytes(data_dir) == before
    assert app.extensions["webui"].drivers.ipsec.loaded.keys() == {"branch-a", "branch-b"}
    assert 'name="token"' not in text


def test_an_upload_cut_short_changes_nothing(two_peers, data_dir, app):
    raw = backup.encode(good_doc(two_peers))
    body = (b"--b\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n"
            + two_peers.token().encode() + b"\r\n--b\r\nContent-Disposition: form-data; "
            b"name=\"file\"; filename=\"b.json\"\r\nContent-Type: application/json\r\n\r\n" + raw
            + b"\r\n--b--\r\n")
    before = stored_bytes(data_dir)
    r = two_peers.client.post("/backup/restore", input_stream=io.BytesIO(body[:len(body) // 2]),
                              content_type="multipart/form-data; boundary=b",
                              headers={"Content-Length": str(len(body))})
    assert r.status_code == 400 and "it arrived incomplete (cut short" in r.get_data(as_text=True)
    assert stored_bytes(data_dir) == before


def test_a_peer_using_an_algorithm_this_charon_lacks_is_refused(two_peers, data_dir, app):
    app.extensions["webui"].drivers.ipsec.supported = frozenset(
        {"aes256", "aes128", "sha256", "modp2048", "aes256gcm16", "none"})
    r = upload(two_peers, backup.encode(good_doc(two_peers)))
    text = r.get_data(as_text=True)
    assert r.status_code == 422
    assert "IKE DH groups: curve25519: not supported by this strongSwan" in text


def test_overlap_with_a_kept_peer_fails_merge_but_not_replace(two_peers, data_dir):
    doc = good_doc(two_peers)
    doc["peers"] = [dict(doc["peers"][0], name="branch-x", remote_networks=["10.9.1.0/24"])]
    r = upload(two_peers, backup.encode(doc))
    text = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "10.9.1.0/24 overlaps 10.9.0.0/16, a remote network of peer branch-b" in text
    assert re.search(r'value="merge"[^>]*disabled', text)
    assert re.search(r'value="replace" checked', text)


# --- The core on its own -------------------------------------------------------------------------

def test_the_diff_is_derived_from_the_peer_fields():
    old = Peer("a", "192.0.2.1", "192.0.2.2", ("10.1.0.0/24",), ("10.2.0.0/24",), psk="k" * 20)
    new = dataclasses.replace(old, remote_networks=("10.2.0.0/24", "10.3.0.0/24"), psk="j" * 20,
                              enabled=False)
    changes = backup.diff(old, new)
    assert [(c.label, c.old, c.new, c.secret) for c in changes] == [
        ("Remote networks", "10.2.0.0/24", "10.2.0.0/24, 10.3.0.0/24", False),
        ("Pre-shared key", "", "", True),
        ("Enabled", "yes", "no", False),
    ]


def test_file_name_carries_a_safe_host_name_and_the_date():
    from datetime import datetime, timezone
    when = datetime(2026, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert backup.file_name("gw1.example.net", when) == "ipsec-backup-gw1.example.net-2026-03-04.json"
    assert backup.file_name('a b"/..', when) == "ipsec-backup-a-b-2026-03-04.json"


# --- The command line ----------------------------------------------------------------------------

class Terminal(io.StringIO):
    def __init__(self, text="", tty=False):
        super().__init__(text)
        self.tty = tty

    def isatty(self):
        return self.tty


def run_cli(argv, stdin=None):
    from webui.backup_cli import main
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdin=stdin or Terminal(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli_env(two_peers, data_dir, monkeypatch):
    monkeypatch.setenv("WEBUI_DATA_DIR", str(data_dir))
    monkeypatch.setenv("WEBUI_DRIVER", "fake")
    return data_dir


def test_cli_backup_and_restore_round_trip(cli_env, tmp_path):
    data_dir = cli_env
    file = tmp_path / "b.json"
    code, _, err = run_cli(["backup", "--with-keys", str(file)])
    assert code == 0 and "2 peer(s), with the pre-shared keys" in err
    assert file.stat().st_mode & 0o777 == 0o600
    before = stored(data_dir)
    doc = json.loads(file.read_text())
    LEAKS.secrets.update(p["psk"] for p in doc["peers"])
    doc["peers"][0]["remote_gateway"] = "192.0.2.99"
    doc["peers"][1]["psk"] = "a-new-key-from-the-file-000"
    LEAKS.secrets.add("a-new-key-from-the-file-000")
    del doc["peers"][0]["psk"]
    file.write_bytes(backup.encode(doc))

    # Not confirmed (no terminal, no --yes): the diff is shown, nothing changes.
    code, out, err = run_cli(["restore", str(file)])
    assert code == 1 and "Not confirmed" in err
    assert "Replace everything" in out and "Remote gateway: 192.0.2.2 -> 192.0.2.99" in out
    assert "Pre-shared key: changed" in out and "a-new-key" not in out
    assert stored(data_dir) == before
    code, out, _ = run_cli(["restore", str(file)], stdin=Terminal("n\n", tty=True))
    assert code == 1 and "Restore? [y/N]" in out and stored(data_dir) == before

    code, out, err = run_cli(["restore", str(file)], stdin=Terminal("y\n", tty=True))
    assert code == 0, err
    assert "Restored" in out
    after = stored(data_dir)
    assert after["branch-a"]["remote_gateway"] == "192.0.2.99"
    assert after["branch-a"]["psk"] == before["branch-a"]["psk"]
    assert after["branch-b"]["psk"] == "a-new-key-from-the-file-000"


def test_cli_restore_merge_and_yes(cli_env, tmp_path, two_peers):
    file = tmp_path / "b.json"
    assert run_cli(["backup", str(file)])[0] == 0
    two_peers.post("/peers", valid_peer_form(name="branch-c", remote_networks="10.50.0.0/16"))
    code, out, _ = run_cli(["restore", "--merge", "--yes", str(file)])
    assert code == 0 and "Nothing to change." in out
    assert set(stored(cli_env)) == {"branch-a", "branch-b", "branch-c"}
    code, out, _ = run_cli(["restore", "--yes", str(file)])
    assert code == 0 and "- branch-c removed" in out
    assert set(stored(cli_env)) == {"branch-a", "branch-b"}
    # The running app's store sees the file another process replaced, and a save builds on it.
    page = two_peers.get("/").get_data(as_text=True)
    assert 'id="peer-branch-c"' not in page and 'id="peer-branch-a"' in page
    two_peers.post("/peers", valid_peer_form(name="branch-d", remote_networks="10.70.0.0/16"))
    assert set(stored(cli_env)) == {"branch-a", "branch-b", "branch-d"}


@pytest.mark.parametrize("case", ["not JSON", "newer version", "duplicate names",
                                  "a peer that fails validation", "cut short", "10 MB"])
def test_cli_refuses_a_bad_file_and_changes_nothing(cli_env, tmp_path, two_peers, case):
    file = tmp_path / "bad.json"
    file.write_bytes(BAD_FILES[case](good_doc(two_peers)))
    before = stored_bytes(cli_env)
    code, out, err = run_cli(["restore", "--yes", str(file)])
    assert code == 1 and "Nothing was restored" in err
    assert re.sub(r"<[^>]+>", "", EXPECTED[case]).replace("&#34;", '"') in err
    assert stored_bytes(cli_env) == before


def test_an_upload_without_the_csrf_token_is_refused(two_peers, app):
    """The upload view checks the token itself (it is exempt from the global check so that its
    larger body limit applies): a cross-site post is still refused."""
    raw = download(two_peers).get_data()
    r = two_peers.client.post("/backup/restore", data={"file": (io.BytesIO(raw), "b.json"),
                                                       "mode": "replace"},
                              content_type="multipart/form-data")
    assert r.status_code == 400 and "Nothing was restored" in r.get_data(as_text=True)
    assert app.extensions["webui_restores"]._items == {}
    ok = upload(two_peers, raw, mode="replace")
    assert ok.status_code == 200 and len(app.extensions["webui_restores"]._items) == 1
