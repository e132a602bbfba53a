"""Get routes with a route per tunnel: a page at a time, a filter, counts that say what is hidden."""
import re

import pytest

from tests.conftest import Browser, valid_peer_form
from webui.drivers import Route, Routes, RoutingRule
from webui.paging import route_page

RULES = (RoutingRule(4, 220, "from all", "220"), RoutingRule(4, 32766, "from all", "main"))


def tunnel_routes(count):
    return tuple(Route(4, "220", f"10.{i // 250}.{i % 250}.0/24", device="ipsec0",
                       source="198.51.100.1", protocol="static", peer=f"site-{i:04d}")
                 for i in range(count))


@pytest.fixture
def routes(app):
    """The fake kernel answering with two main-table routes and 250 tunnels' routes."""
    listed = Routes((Route(4, "main", "default", gateway="192.0.2.254", device="wan0"),
                     Route(4, "main", "192.0.2.0/24", device="wan0", protocol="kernel"))
                    + tunnel_routes(250), RULES)
    app.extensions["webui"].drivers.kernel.routes = lambda peers=(): listed
    return listed


def rows(html):
    return re.findall(r'<td data-label="Destination" class="mono">([^<]+)</td>', html)


def test_route_page_counts_filters_and_clamps():
    every = tunnel_routes(250)
    first = route_page(every, "", 1, 100)
    assert (first.number, first.pages, first.total, first.listed, first.first) == (1, 3, 250, 250, 1)
    assert len(first.routes) == 100 and first.args(2) == {"page": 2}
    last = route_page(every, "", 9, 100)  # past the end: the last page
    assert (last.number, len(last.routes), last.first) == (3, 50, 201)
    found = route_page(every, "  SITE-012 ", 1, 100)  # any case, trimmed
    assert [r.peer for r in found.routes] == [f"site-{i:04d}" for i in range(120, 130)]
    assert (found.total, found.listed, found.query, found.args(1)) == (10, 250, "SITE-012",
                                                                       {"q": "SITE-012"})
    assert route_page(every, "wan0", 1, 100).total == 0


def test_a_host_address_finds_the_routes_that_reach_it():
    """"Which route does this host take?": the routes whose destination holds the address,
    the default route of its family included (review25 m5)."""
    every = (Route(4, "main", "default", gateway="192.0.2.254", device="wan0"),
             Route(6, "main", "default", gateway="2001:db8::1", device="wan0"),
             Route(4, "main", "192.0.2.0/24", device="wan0")) + tunnel_routes(250)
    found = route_page(every, "10.0.12.77", 1, 100)
    assert [r.destination for r in found.routes] == ["default", "10.0.12.0/24"]
    assert [r.destination for r in route_page(every, "192.0.2.254", 1, 100).routes] == \
        ["default", "192.0.2.0/24"]  # the gateway's own text matches too
    assert [r.destination for r in route_page(every, "2001:db8::5", 1, 100).routes] == \
        ["default"]
    assert route_page(every, "10.0.12", 1, 100).total == 11  # not an address: text, as before


def test_the_first_page_shows_100_routes_and_says_how_many_there_are(browser, routes):
    html = browser.get("/commands/routes", htmx=True).get_data(as_text=True)
    assert rows(html)[:3] == ["default", "192.0.2.0/24", "10.0.0.0/24"] and len(rows(html)) == 100
    assert "Routes 1–100 of 252</span>" in html
    assert 'href="/commands/routes?page=2"' in html and "Previous" not in html
    assert 'data-announce="Routes: 252 routes, 2 policy rules"' in html
    assert html.count("<td data-label=\"Selector\"") == 2  # the rules are all there, on every page


def test_the_last_page_and_a_page_past_it(browser, routes):
    for asked in ("/commands/routes?page=3", "/commands/routes?page=40"):
        html = browser.get(asked, htmx=True).get_data(as_text=True)
        assert len(rows(html)) == 52 and rows(html)[-1] == "10.0.249.0/24"
        assert "Routes 201–252 of 252" in html and 'rel="prev"' in html and 'rel="next"' not in html


def test_a_filter_finds_a_peer_s_route_among_all_and_keeps_itself_in_the_pager(browser, routes):
    html = browser.get("/commands/routes?q=10.0.12", htmx=True).get_data(as_text=True)
    assert rows(html) == ["10.0.12.0/24"] + [f"10.0.{i}.0/24" for i in range(120, 130)]
    assert 'value="10.0.12"' in html and ">Clear filter</a>" in html and "pager" not in html
    assert '<p class="count" id="routes-count">11 of 252 routes match “10.0.12”.</p>' in html
    assert 'data-announce="Routes: 11 of 252 matching “10.0.12” routes, 2 policy rules"' in html
    html = browser.get("/commands/routes?q=ipsec0&page=2", htmx=True).get_data(as_text=True)
    assert "Routes 101–200 of 250 matching “ipsec0” (252 in all)" in html
    assert 'href="/commands/routes?page=3&amp;q=ipsec0"' in html


def test_a_filter_that_matches_nothing_says_so(browser, routes):
    html = browser.get("/commands/routes?q=198.18.", htmx=True).get_data(as_text=True)
    assert rows(html) == [] and "No route matches “198.18.”" in html and "Clear the filter</a> to list all 252." in html
    assert "routes-count" not in html, "no '0 of 252' beside it"


def test_few_routes_need_no_filter_or_pager(browser):
    html = browser.get("/commands/routes", htmx=True).get_data(as_text=True)
    assert len(rows(html)) == 3 and 'role="search"' not in html and "pager" not in html


def test_without_javascript_the_page_keeps_its_own_peer_table(make_app):
    app = make_app(PEERS_PER_PAGE=2)
    browser = Browser(app.test_client())
    for i in range(3):
        assert browser.post("/peers", valid_peer_form(
            name=f"peer-{i}", remote_networks=f"10.9.{i}.0/24")).status_code == 303
    app.extensions["webui"].drivers.kernel.routes = lambda peers=(): Routes(tunnel_routes(250))
    html = browser.get("/commands/routes?page=2").get_data(as_text=True)
    assert "<html" in html and 'id="output-routes"' in html and "Routes 101–200 of 250" in html
    # the peer table is its own first page of two, not every peer and not the routes' page 2
    assert [name for name in ("peer-0", "peer-1", "peer-2")
            if f'href="/peers/{name}"' in html] == ["peer-0", "peer-1"]


def test_one_match_is_said_in_the_singular_and_no_filter_shows_no_count(browser, routes):
    html = browser.get("/commands/routes?q=10.0.249.0/", htmx=True).get_data(as_text=True)
    assert "1 of 252 routes matches “10.0.249.0/”." in html
    assert "routes-count" not in browser.get("/commands/routes", htmx=True).get_data(as_text=True)


def test_the_tunnels_routes_come_first_then_the_main_table_ipv4_before_ipv6():
    from webui.drivers.kernel import route_order
    listed = [Route(6, "main", "::/0"), Route(4, "main", "default"), Route(6, "220", "fd00::/64"),
              Route(4, "220", "10.0.0.0/24"), Route(4, "main", "192.0.2.0/24"),
              Route(4, "220", "10.0.1.0/24")]
    assert [(r.table, r.destination) for r in sorted(listed, key=route_order)] == [
        ("220", "10.0.0.0/24"), ("220", "10.0.1.0/24"), ("220", "fd00::/64"),
        ("main", "default"), ("main", "192.0.2.0/24"), ("main", "::/0")]
