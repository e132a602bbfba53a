"""The peer list a page at a time, after a filter: shared by the IPsec page, the status pane and
the API, so all three page and filter alike. The route view pages and filters the same way."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

from webui.drivers import Route
from webui.peers import Peer

QUERY_MAX = 64


class _Page:
    """What a page of a filtered list has to link to itself: its number and its filter."""

    number: int  # 1-based
    query: str

    def args(self, number: int | None = None) -> dict:
        """Query arguments that reproduce this page (or page `number` of the same filter)."""
        args = {"page": number or self.number} if (number or self.number) > 1 else {}
        return args | ({"q": self.query} if self.query else {})


@dataclass(frozen=True)
class PeerPage(_Page):
    """One page of the peer table, after the filter: a router with hundreds of tunnels shows
    them a page at a time, and its status cells poll only for the rows on screen."""

    peers: list[Peer]
    number: int  # 1-based
    pages: int
    total: int  # peers matching the filter
    stored: int  # peers in the store
    query: str
    first: int  # 1-based index of the first row shown


def peer_page(every: Sequence[Peer], query: str, wanted: int, size: int) -> PeerPage:
    """Page `wanted` of the peers that match `query`, `size` a page."""
    query = query.strip()[:QUERY_MAX]
    found = matching(every, query)
    number, pages, start = page_of(len(found), size, wanted)
    return PeerPage(found[start:start + size], number, pages, len(found), len(every), query,
                    start + 1)


def page_of(count: int, size: int, wanted: int) -> tuple[int, int, int]:
    """For `count` rows shown `size` a page: (page number, pages, index of the page's first row).
    A number out of range is clamped; there is always a page 1, if empty."""
    pages = max(1, -(-count // size))
    number = min(max(wanted, 1), pages)
    return number, pages, (number - 1) * size


def matching(peers: Sequence[Peer], query: str) -> list[Peer]:
    """The peers whose name, gateway, peer ID or networks contain `query` (any case)."""
    needle = query.strip()[:QUERY_MAX].lower()
    return [p for p in peers if needle in _haystack(p)] if needle else list(peers)


def _haystack(peer: Peer) -> str:
    return " ".join((peer.name, peer.remote_gateway, peer.peer_id, *peer.local_networks,
                     *peer.remote_networks)).lower()


@dataclass(frozen=True)
class RoutePage(_Page):
    """One page of the route view, after its filter: strongSwan installs a route per tunnel, so
    a router with a thousand tunnels has a thousand routes in table 220."""

    routes: Sequence[Route]
    number: int  # 1-based
    pages: int
    total: int  # routes matching the filter
    listed: int  # routes in the tables shown
    query: str
    first: int  # 1-based index of the first row shown


def route_page(routes: Sequence[Route], query: str, wanted: int, size: int) -> RoutePage:
    """Page `wanted` of the routes that match `query`, `size` a page."""
    query = query.strip()[:QUERY_MAX]
    needle = query.lower()
    address = _address(query)
    found = [r for r in routes if needle in _route_haystack(r)
             or (address is not None and _contains(r, address))] if needle else list(routes)
    number, pages, start = page_of(len(found), size, wanted)
    return RoutePage(found[start:start + size], number, pages, len(found), len(routes), query,
                     start + 1)


def _address(query: str):
    """The filter as one host address ("which route does this host take?"), or None."""
    try:
        return ipaddress.ip_address(query)
    except ValueError:
        return None


def _contains(route: Route, address) -> bool:
    """Whether `route` reaches `address`: its destination network holds it ("default" holds
    every address of its family)."""
    if route.family != (4 if address.version == 4 else 6):
        return False
    if route.destination == "default":
        return True
    try:
        return address in ipaddress.ip_network(route.destination, strict=False)
    except ValueError:
        return False


def _route_haystack(route: Route) -> str:
    return " ".join((route.table, route.destination, route.gateway, route.device, route.source,
                     route.protocol, route.peer)).lower()
