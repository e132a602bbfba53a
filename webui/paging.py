"""The peer list a page at a time, after a filter: shared by the IPsec page, the status pane and
the API, so all three page and filter alike."""
from __future__ import annotations

from typing import Sequence

from webui.peers import Peer

QUERY_MAX = 64


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
