"""Issue 13 in a real browser (Debian's Chromium through Playwright): download a backup with keys
from the Backup page, lose the peer, upload the file, read what would change, restore, and see the
tunnel come back up. Fails on any console error or CSP violation, like every browser test."""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ADMIN_PASSWORD, LEAKS
from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer, cell
from tests.integration.test_browser import chromium, open_page, shots  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def test_download_then_restore_in_the_browser(open_page, live, clean_lab, shots, tmp_path):
    http = live.browser()
    add_peer(http, clean_lab, peer_form())
    assert wait_for(lambda: cell(http, "site-b").get("state") == "up")

    page, console = open_page()
    page.click("a:has-text('Backup')")
    page.wait_for_url(live.url + "/backup")
    assert "whoever has the file can use them" in page.inner_text("main")
    page.check("#include_keys")
    page.fill("#password", ADMIN_PASSWORD)
    with page.expect_download() as downloading:
        page.click("button:has-text('Download')")
    download = downloading.value
    assert re.fullmatch(r"ipsec-backup-[A-Za-z0-9.-]+-\d{4}-\d\d-\d\d\.json",
                        download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    doc = json.loads(saved.read_text())
    assert doc["keys_included"] and [p["name"] for p in doc["peers"]] == ["site-b"]
    LEAKS.secrets.add(doc["peers"][0]["psk"])

    assert http.post("/peers/site-b/delete").status == 200
    page.goto(live.url + "/backup")
    page.set_input_files("#file", str(saved))
    page.check("input[name=mode][value=replace]")
    page.click("button:has-text('Check the file')")
    page.wait_for_selector("#restore-preview")
    preview = page.inner_text("#restore-preview")
    assert "site-b" in preview and "added" in preview and doc["peers"][0]["psk"] not in page.content()
    page.screenshot(path=str(shots / "desktop-restore-preview.png"), full_page=True)
    page.click("button:has-text('Restore')")
    page.wait_for_selector("#restore-done")
    assert "1 added" in page.inner_text("#restore-done")
    page.click("a:has-text('Back to IPsec')")
    page.wait_for_url(live.url + "/")
    assert wait_for(lambda: cell(http, "site-b").get("state") == "up", timeout=15)
    page.wait_for_selector("#state-site-b[data-state=up]", timeout=15_000)
