"""Test the tunnel: the router pings a host in one of the peer's remote networks, from its own
address inside one of the peer's local networks, and says whether the packets went into the tunnel.

The address is checked here (inside a remote network, a host address); the ping itself is the
kernel driver's (an argument list, bounded in time); one test runs at a time, a few seconds apart.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass

from webui.drivers import DriverError, PingResult, TunnelState
from webui.peers import Peer

COUNT = 4  # echo requests
DEADLINE = 5.0  # seconds, whatever answers
SPACING = 3.0  # seconds between the end of one test and the start of the next


@dataclass(frozen=True)
class TestOutcome:
    host: str = ""
    source: str = ""
    ping: PingResult | None = None
    field_error: str = ""  # a message for the address field: nothing was sent
    refused: str = ""  # why no test ran (no source address, another test running)
    limited: bool = False  # refused by the rate limit
    tunnel: str = ""  # whether the packets went into the tunnel, in words ("" = cannot tell)

    @property
    def ok(self) -> bool:
        return bool(self.ping and self.ping.received)


def check_host(peer: Peer, text: str) -> tuple[str, str]:
    """(the address, "") when `text` is a host address inside one of the peer's remote
    networks, else ("", why not) in the words to show next to the field."""
    text = text.strip()
    if not text:
        return "", "Enter the address of a host in " + _networks(peer.remote_networks) + "."
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "", f"“{text[:64]}” is not an IP address."
    for cidr in peer.remote_networks:
        network = ipaddress.ip_network(cidr, strict=False)
        if address.version == network.version and address in network:
            if network.num_addresses > 2 and address == network.network_address:
                return "", f"{address} is the network's own address in {cidr}; enter a host's."
            if network.num_addresses > 2 and address.version == 4 \
                    and address == network.broadcast_address:  # IPv6 has no broadcast
                return "", f"{address} is the broadcast address of {cidr}; enter a host's."
            return str(address), ""
    return "", f"{address} is not inside the peer's remote networks ({_networks(peer.remote_networks)})."


def _networks(cidrs) -> str:
    return ", ".join(cidrs)


def source_for(peer: Peer, host: str, interfaces) -> tuple[str, str]:
    """The router's own address inside one of the peer's local networks, of `host`'s family:
    (address, "") or ("", why there is none)."""
    version = ipaddress.ip_address(host).version
    networks = [ipaddress.ip_network(c, strict=False) for c in peer.local_networks]
    networks = [n for n in networks if n.version == version]
    for interface in interfaces:
        for a in interface.addresses:
            address = ipaddress.ip_address(a.address)
            if any(address in n for n in networks):
                return str(address), ""
    local = _networks(str(n) for n in networks) or "none of IPv" + str(version)
    return "", (f"This router has no address inside the peer's local networks ({local}), so it "
                "cannot send from inside the tunnel's networks. Test from a host on that "
                "network instead, or give the router an address in it.")


def verdict(before: TunnelState | None, after: TunnelState | None, ping: PingResult) -> str:
    """Whether the packets went into the tunnel, as far as its byte counters tell."""
    if before is None or after is None:
        return ""
    if after.state != "up":
        return "The tunnel is not up: the packets did not go into it."
    if before.state != "up":
        return ("The tunnel came up during the test; its counters cannot say which packets "
                "went into it.")
    sent = after.bytes_out - before.bytes_out
    back = after.bytes_in - before.bytes_in
    if sent < 0 or back < 0:
        return "The tunnel was rekeyed during the test; its counters cannot tell."
    if sent == 0:
        return ("The tunnel's counters did not move: the packets did not go into the tunnel "
                "(check the routes and the networks).")
    return f"The tunnel carried {sent} bytes out and {back} bytes in during the test."


class Limiter:
    """One test at a time for the whole UI, and SPACING seconds between tests: a ping holds a
    web server thread for seconds, and the router has few."""

    def __init__(self, spacing: float = SPACING):
        self.spacing = spacing
        self._lock = threading.Lock()
        self._ended = 0.0

    def start(self) -> str:
        """"" when a test may run now (the caller then calls `end`), else why not."""
        if not self._lock.acquire(blocking=False):
            return "Another test is running; try again when it has finished."
        wait = self._ended + self.spacing - time.monotonic()
        if wait > 0:
            self._lock.release()
            return f"Tests run at most one every {self.spacing:g} s; try again in {wait:.0f} s."
        return ""

    def end(self) -> None:
        self._ended = time.monotonic()
        self._lock.release()


def run(drivers, limiter: Limiter, peer: Peer, text: str) -> TestOutcome:
    """The whole test: check the address, choose the source, ping, and compare the counters."""
    host, problem = check_host(peer, text)
    if problem:
        return TestOutcome(host=text.strip()[:64], field_error=problem)
    busy = limiter.start()
    if busy:
        return TestOutcome(host=host, refused=busy, limited=True)
    try:
        try:
            source, problem = source_for(peer, host, drivers.kernel.interfaces())
        except DriverError as e:
            return TestOutcome(host=host, refused=f"The router's addresses cannot be read: {e}")
        if problem:
            return TestOutcome(host=host, refused=problem)
        before = _tunnel(drivers, peer.name)
        ping = drivers.kernel.ping(source, host, COUNT, DEADLINE)
        after = _tunnel(drivers, peer.name) if before is not None else None
        return TestOutcome(host=host, source=source, ping=ping,
                           tunnel="" if ping.error else verdict(before, after, ping))
    finally:
        limiter.end()


def _tunnel(drivers, name: str) -> TunnelState | None:
    """The tunnel's counters from charon now (the snapshot's lag behind a test of seconds)."""
    try:
        return drivers.ipsec.tunnel_states([name]).get(name)
    except DriverError:
        return None
