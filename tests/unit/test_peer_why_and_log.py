"""Sections 3 (why it is down) and 4 (live log) of a peer's page, with the fake driver holding
lines the lab's real charon logged (tests/unit/data/charon_lines.json)."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from tests.conftest import valid_peer_form
from webui.drivers import LogLine

LINES = json.loads((Path(__file__).parent / "data" / "charon_lines.json").read_text())
KEY = valid_peer_form()["psk"]


def lines_of(case: str, ike_offset: int = 0) -> list[LogLine]:
    """A captured case's lines about its IKE SAs, as the monitor would keep them for a peer."""
    return [LogLine(1_800_000_000.0 + n, int(e["level"]), int(e["ikesa-uniqueid"]) + ike_offset,
                    e["msg"]) for n, e in enumerate(LINES[case]) if e.get("ikesa-uniqueid")]


@pytest.fixture
def peer(browser):
    form = valid_peer_form(ike_dh_groups=["modp2048"], esp_encryption=["aes256"],
                           esp_integrity=["sha256"], esp_dh_groups=["modp2048"])
    assert browser.post("/peers", form).status_code == 303
    return "branch-a"


def logs(app) -> dict:
    return app.extensions["webui"].drivers.ipsec.logs


def section(page: str, ident: str) -> str:
    m = re.search(rf'<section[^>]*id="{ident}".*?</section>', page, re.S)
    assert m, page
    return m.group(0)


def words(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


def test_proposals_side_by_side_with_the_change_and_links_to_the_fields(app, browser, peer):
    logs(app)[peer] = lines_of("ike-v2/remote-initiates")
    why = section(browser.get(f"/peers/{peer}").get_data(as_text=True), "section-why")
    text = words(why)
    assert "No IKE proposal in common" in text
    assert "Encryption AES-128-CBC AES-256-CBC nothing" in text
    assert ("Change here: Add AES-128-CBC to IKE encryption, SHA-1 (weak) to IKE integrity and "
            "MODP-1024 (weak) to IKE DH groups.") in text
    for field in ("ike_encryption-group", "ike_integrity-group", "ike_dh_groups-group"):
        assert f'href="/peers/{peer}/edit?next=/peers/{peer}#{field}"' in why


@pytest.mark.parametrize("htmx", [False, True], ids=["plain form", "htmx"])
def test_saving_from_the_peers_page_goes_back_to_it(browser, peer, htmx):
    form = browser.get(f"/peers/{peer}/edit?next=%2Fpeers%2F{peer}").get_data(as_text=True)
    assert f'<input type="hidden" name="next" value="/peers/{peer}">' in form
    assert f'class="button" href="/peers/{peer}">Cancel' in form
    data = valid_peer_form(ike_dh_groups=["modp2048"], esp_encryption=["aes256"],
                           esp_integrity=["sha256"], esp_dh_groups=["modp2048"],
                           next=f"/peers/{peer}")
    answer = browser.post(f"/peers/{peer}", data, htmx=htmx)
    where = answer.headers.get("HX-Redirect") if htmx else answer.headers["Location"]
    assert where == f"/peers/{peer}"
    renamed = browser.post(f"/peers/{peer}", dict(data, name="branch-z"), htmx=htmx)
    where = renamed.headers.get("HX-Redirect") if htmx else renamed.headers["Location"]
    assert where == "/peers/branch-z", "renamed: its page has its new name"


@pytest.mark.parametrize("elsewhere", ["https://evil.example/", "//evil.example/peers/branch-a",
                                       "/peers/branch-b", "/peers/branch-a/../../logout",
                                       "/peers/branch-a?x=1", "javascript:alert(1)"])
def test_next_leads_nowhere_but_this_peers_page(browser, peer, elsewhere):
    form = browser.get(f"/peers/{peer}/edit", query_string={"next": elsewhere}).get_data(as_text=True)
    assert 'name="next"' not in form and 'href="/">Cancel' in form
    data = valid_peer_form(ike_dh_groups=["modp2048"], esp_encryption=["aes256"],
                           esp_integrity=["sha256"], esp_dh_groups=["modp2048"], next=elsewhere)
    assert browser.post(f"/peers/{peer}", data).headers["Location"] == "/"


def test_the_form_has_the_anchors_the_links_point_at(browser, peer):
    form = browser.get(f"/peers/{peer}/edit").get_data(as_text=True)
    for anchor in ("ike_encryption-group", "esp_dh_groups-group", 'id="peer_id"', 'id="local_id"',
                   'id="psk"', 'id="remote_networks"', 'id="local_networks"',
                   'id="remote_gateway"'):
        assert (f'id="{anchor}"' if "=" not in anchor else anchor) in form, anchor


def test_what_the_remote_sent_is_escaped(app, browser, peer):
    hostile = "<script>alert(1)</script>"
    lines = [LogLine(1.0, 0, 5, "192.0.2.2 is initiating an IKE_SA"),
             LogLine(2.0, 1, 5, f"looking for peer configs matching 192.0.2.1[%any]...192.0.2.2"
                                f"[{hostile}]"),
             LogLine(3.0, 1, 5, "no matching peer config found")]
    logs(app)[peer] = lines
    page = browser.get(f"/peers/{peer}").get_data(as_text=True)
    assert hostile not in page
    assert "presented ID &lt;script&gt;alert(1)&lt;/script&gt;" in section(page, "section-why")
    assert "&lt;script&gt;" in section(page, "section-log")


def test_an_up_tunnel_has_nothing_to_explain(app, browser, peer):
    from tests.unit.test_tunnel_page import SA
    ipsec = app.extensions["webui"].drivers.ipsec
    ipsec.sas.append(SA)
    logs(app)[peer] = lines_of("key-v2/remote-initiates")
    assert "nothing to explain" in words(section(browser.get(f"/peers/{peer}").get_data(as_text=True),
                                                 "section-why"))


def test_without_lines_the_section_says_what_it_lacks(browser, peer):
    text = words(section(browser.get(f"/peers/{peer}").get_data(as_text=True), "section-why"))
    assert "strongSwan has logged nothing this page can explain about branch-a" in text


def test_the_log_pane_refreshes_itself_and_answers_204_when_no_line_came(app, browser, peer):
    logs(app)[peer] = lines_of("ts-v2/remote-initiates")
    pane = browser.get(f"/peers/{peer}/log", htmx=True)
    text = pane.get_data(as_text=True)
    assert pane.status_code == 200 and text.lstrip().startswith('<div id="peer-log"')
    assert "traffic selectors 198.51.100.0/24 === 10.99.0.0/24 unacceptable" in text
    again = re.search(r'hx-get="([^"]+)"', text).group(1)
    assert 'hx-trigger="every' in text
    assert browser.get(html.unescape(again), htmx=True).status_code == 204
    logs(app)[peer] = logs(app)[peer] + [LogLine(2e9, 0, 99, "a new line")]
    fresh = browser.get(html.unescape(again), htmx=True)
    assert fresh.status_code == 200 and "a new line" in fresh.get_data(as_text=True)
    assert peer in app.extensions["webui"].drivers.ipsec.log_watched


def test_the_level_filter_and_the_download(app, browser, peer):
    logs(app)[peer] = lines_of("key-v2/remote-initiates")
    events = browser.get(f"/peers/{peer}/log?level=events", htmx=True)
    problems = browser.get(f"/peers/{peer}/log?level=problems", htmx=True)
    assert "is initiating an IKE_SA" in events.get_data(as_text=True)
    assert "parsed IKE_AUTH" not in events.get_data(as_text=True)
    assert "MAC mismatched" in problems.get_data(as_text=True)
    assert "is initiating" not in problems.get_data(as_text=True)
    download = browser.get(f"/peers/{peer}/log.txt?level=all")
    body = download.get_data(as_text=True)
    assert download.mimetype == "text/plain"
    assert download.headers["Content-Disposition"] == f'attachment; filename="{peer}-log.txt"'
    assert len(body.splitlines()) == len(lines_of("key-v2/remote-initiates"))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[1\] received packet", body)


@pytest.mark.parametrize("url", ["/peers/{}/log.txt", "/peers/{}/log", "/peers/{}"])
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("level", ["<script>alert(1)</script>", "everything", "", "ALL"])
def test_a_log_level_the_filter_does_not_have_is_a_400_with_a_plain_message(app, browser, peer,
                                                                            url, htmx, level):
    logs(app)[peer] = lines_of("key-v2/remote-initiates")
    answer = browser.get(url.format(peer), query_string={"level": level}, htmx=htmx)
    assert answer.status_code == 400 and answer.mimetype == "text/plain"
    assert answer.get_data(as_text=True) == ("The live log has no such level. Choose one of: all, "
                                             "events, problems.\n"), "and nothing of what was sent"


def test_without_javascript_the_pane_says_it_does_not_refresh_and_the_filter_is_a_form(browser, peer):
    page = browser.get(f"/peers/{peer}").get_data(as_text=True)
    log = section(page, "section-log")
    assert '<form class="filter" method="get" action="/peers/branch-a/log"' in log
    assert "Without JavaScript this log does not refresh by itself" in log
    whole = browser.get(f"/peers/{peer}/log?level=events")  # the form posted without htmx
    assert whole.status_code == 200 and 'id="section-now"' in whole.get_data(as_text=True)


def test_the_key_never_shows_even_if_a_line_carried_it(app, browser, peer):
    logs(app)[peer] = [LogLine(1.0, 1, 3, f"a line with {KEY} and {KEY.encode().hex()}")]
    for url in (f"/peers/{peer}", f"/peers/{peer}/log.txt", f"/peers/{peer}/log"):
        body = browser.get(url).get_data(as_text=True)
        assert KEY not in body and KEY.encode().hex() not in body, url
        assert "(the pre-shared key, hidden)" in body


def test_the_log_lists_the_newest_line_first_and_the_download_keeps_charons_order(app, browser, peer):
    logs(app)[peer] = [LogLine(1.0, 0, 5, "the first line"), LogLine(2.0, 0, 5, "the last line")]
    pane = browser.get(f"/peers/{peer}/log", htmx=True).get_data(as_text=True)
    assert pane.index("the last line") < pane.index("the first line")
    assert "newest first" in pane
    body = browser.get(f"/peers/{peer}/log.txt").get_data(as_text=True)
    assert body.index("the first line") < body.index("the last line")


def test_a_changed_now_brings_why_along_so_a_fixed_tunnel_is_not_still_explained(app, browser, peer):
    """The review's stale "why": Now polled and said up while section 3 still asked for a change."""
    from tests.unit.test_tunnel_page import SA
    logs(app)[peer] = lines_of("key-v2/remote-initiates")
    down = browser.get(f"/peers/{peer}/now", htmx=True).get_data(as_text=True)
    why = section(down, "section-why")
    assert 'hx-swap-oob="true"' in why and "nothing to explain" not in words(why)
    assert "<h3>" in why  # a finding, while it is down
    app.extensions["webui"].drivers.ipsec.sas.append(SA)
    up = browser.get(f"/peers/{peer}/now", htmx=True).get_data(as_text=True)
    assert "The tunnel is up: nothing to explain." in words(section(up, "section-why"))
    page = browser.get(f"/peers/{peer}").get_data(as_text=True)
    assert 'id="section-why" hx-swap-oob' not in page  # in place on the whole page


def test_a_peer_id_or_key_changed_here_just_before_it_failed_is_named_not_the_key(app, browser, peer):
    """Review m7: the remote answered AUTHENTICATION_FAILED (a wrong ID or key, the log cannot
    tell); the admin had changed the Peer ID and the key here just before."""
    base = dict(ike_dh_groups=["modp2048"], esp_encryption=["aes256"], esp_integrity=["sha256"],
                esp_dh_groups=["modp2048"])
    new_key = "a-brand-new-key-never-shown-7781"
    saved = browser.post(f"/peers/{peer}", valid_peer_form(peer_id="wrong.example.com",
                                                           psk=new_key, **base))
    assert saved.status_code == 303
    logs(app)[peer] = lines_of("key-v2/router-initiates")  # dated after the save
    page = browser.get(f"/peers/{peer}").get_data(as_text=True)
    why = words(section(page, "section-why"))
    changed = re.search(r"You changed the Peer ID at (\d\d:\d\d:\d\d) and the pre-shared key at "
                        r"\1 ?, just before this started, and the tunnel has not been up since", why)
    assert changed, why
    assert new_key not in page and valid_peer_form()["psk"] not in page
    links = re.findall(r'#(\w+)">Change', section(page, "section-why"))
    assert links == ["peer_id", "psk", "local_id"], "the changed fields first"

    # a save that changes neither the IDs nor the key: nothing new to name; the tunnel up since
    # the change: no longer a suspect
    assert browser.post(f"/peers/{peer}", valid_peer_form(peer_id="wrong.example.com", psk="",
                                                          keying_retries="4", **base)).status_code == 303
    assert "You changed the Peer ID" in words(section(browser.get(f"/peers/{peer}").get_data(
        as_text=True), "section-why"))
    ipsec = app.extensions["webui"].drivers.ipsec
    ipsec.transitions[peer] = [(2e9 - 1, "down", "up", ""), (2e9, "up", "down", "")]
    logs(app)[peer] = [LogLine(2e9 + n, line.level, line.ike, line.text)
                       for n, line in enumerate(lines_of("key-v2/router-initiates"))]
    assert "You changed" not in section(browser.get(f"/peers/{peer}").get_data(as_text=True),
                                        "section-why")
