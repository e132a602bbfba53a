"""gzip on the way out: static files and pages compressed for browsers that accept it, with
conditional requests still answered 304 and caches told the answer varies by Accept-Encoding."""
import gzip
import re
import secrets

import pytest

GZIP = {"Accept-Encoding": "gzip, deflate, br"}


def static_urls(browser):
    page = browser.get("/").get_data(as_text=True)
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', page)


def test_static_files_are_served_gzipped_and_revalidate_to_304(browser, app):
    urls = static_urls(browser)
    assert any("htmx" in u for u in urls)
    for url in urls:
        plain = browser.client.get(url)
        zipped = browser.client.get(url, headers=GZIP)
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in zipped.headers["Vary"] and "Accept-Encoding" in plain.headers["Vary"]
        assert gzip.decompress(zipped.data) == plain.data
        assert int(zipped.headers["Content-Length"]) == len(zipped.data) < len(plain.data)
        assert "max-age=31536000" in zipped.headers["Cache-Control"]
        for variant in (plain, zipped):
            again = browser.client.get(url, headers={**GZIP, "If-None-Match": variant.headers["ETag"]})
            assert again.status_code == 304
        plain.close(), zipped.close()


def test_a_client_that_does_not_accept_gzip_gets_identity(browser):
    for url in static_urls(browser) + ["/"]:
        answer = browser.client.get(url, headers={"Accept-Encoding": "gzip;q=0, identity"})
        assert "Content-Encoding" not in answer.headers
        answer.close()


def test_pages_and_fragments_are_gzipped_above_the_threshold(browser):
    page = browser.client.get("/", headers=GZIP)
    assert page.headers["Content-Encoding"] == "gzip"
    assert b"Quick commands" in gzip.decompress(page.data)
    assert page.headers["Cache-Control"] == "no-store"
    small = browser.client.get("/commands/clear", headers={**GZIP, "HX-Request": "true"})
    assert "Content-Encoding" not in small.headers and len(small.data) < 1024


@pytest.mark.parametrize("header", ["", "identity", "br", "gzip;q=0"])
def test_no_gzip_unless_accepted(browser, header):
    page = browser.client.get("/", headers={"Accept-Encoding": header})
    assert "Content-Encoding" not in page.headers


def test_a_file_gzip_cannot_shrink_is_sent_whole(app, tmp_path):
    noise = secrets.token_bytes(600)
    (tmp_path / "random.js").write_bytes(noise)
    app.static_folder = str(tmp_path)
    client = app.test_client()
    for _ in range(2):  # the first answer reads the file to find out, the second knows
        answer = client.get("/static/random.js", headers=GZIP)
        assert "Content-Encoding" not in answer.headers
        assert answer.data == noise
        answer.close()
