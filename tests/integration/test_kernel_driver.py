"""The kernel driver against real netlink, in a namespace with veths, addresses, a TUN ipsec0 and
strongSwan-style table-220 routes."""
import os
import time

import pytest

from tests.integration.wuinet import PREFIX, make_namespaces, delete_namespaces, needs_root, run
from webui.drivers import Address, DriverError, Route, RoutingRule
from webui.drivers.kernel import NetlinkDriver
from webui.peers import Peer

pytestmark = needs_root
NS = f"{PREFIX}-k"


@pytest.fixture(scope="module")
def router():
    make_namespaces(NS)
    try:
        for cmd in (["link", "add", "wan0", "type", "veth", "peer", "name", "wan0p"],
                    ["link", "add", "lan0", "type", "veth", "peer", "name", "lan0p"],
                    ["addr", "add", "192.0.2.1/24", "dev", "wan0"],
                    ["addr", "add", "2001:db8::1/64", "dev", "wan0", "nodad"],
                    ["addr", "add", "198.51.100.1/24", "dev", "lan0"],
                    ["tuntap", "add", "ipsec0", "mode", "tun"],
                    ["link", "set", "wan0", "up"], ["link", "set", "wan0p", "up"],
                    ["link", "set", "lan0", "up"], ["link", "set", "lan0p", "up"],
                    ["link", "set", "ipsec0", "up"],
                    ["route", "add", "default", "via", "192.0.2.254"],
                    # what charon's kernel-libipsec installs: remote network via ipsec0, table 220
                    ["route", "add", "203.0.113.0/24", "dev", "ipsec0", "table", "220",
                     "src", "198.51.100.1", "proto", "static"],
                    ["rule", "add", "priority", "220", "table", "220"]):
            run("ip", "-n", NS, *cmd)
        yield NetlinkDriver(netns=NS)
    finally:
        delete_namespaces([NS])


def test_interfaces_of_the_router_namespace(router):
    found = {i.name: i for i in router.interfaces()}
    assert set(found) == {"lo", "wan0", "wan0p", "lan0", "lan0p", "ipsec0"}
    wan = found["wan0"]
    assert (wan.kind, wan.state, wan.mtu, wan.ipsec) == ("veth", "up", 1500, False)
    assert len(wan.mac) == 17
    assert {Address(4, "192.0.2.1", 24), Address(6, "2001:db8::1", 64)} <= set(wan.addresses)
    assert found["ipsec0"].kind == "tun" and found["ipsec0"].ipsec
    assert [i.name for i in found.values() if i.ipsec] == ["ipsec0"]
    assert found["lo"].addresses[0] == Address(4, "127.0.0.1", 8)


def test_traffic_counters_move(router):
    before = {i.name: i.tx_bytes for i in router.interfaces()}["lan0"]
    run("ping", "-c", "2", "-W", "1", "198.51.100.9", ns=NS, check=False)  # ARP goes out of lan0
    after = {i.name: i.tx_bytes for i in router.interfaces()}["lan0"]
    assert after > before


def test_table_220_route_labelled_with_its_peer(router):
    hq = Peer("hq", "192.0.2.1", "192.0.2.2", ("198.51.100.0/24",), ("203.0.113.0/24",), "k")
    routes = router.routes([hq])
    assert Route(4, "220", "203.0.113.0/24", device="ipsec0", source="198.51.100.1",
                 protocol="static", peer="hq") in routes.routes
    assert Route(4, "main", "default", gateway="192.0.2.254", device="wan0",
                 protocol="boot") in routes.routes
    assert Route(4, "main", "192.0.2.0/24", device="wan0", source="192.0.2.1",
                 protocol="kernel") in routes.routes
    assert any(r.family == 6 and r.destination == "2001:db8::/64" for r in routes.routes)
    assert {r.table for r in routes.routes} == {"main", "220"}  # not local, not others
    assert RoutingRule(4, 220, "from all", "220") in routes.rules
    assert RoutingRule(4, 32766, "from all", "main") in routes.rules


def test_reading_another_namespace_leaves_this_thread_where_it_was(router):
    mine = os.readlink("/proc/thread-self/ns/net")
    router.interfaces()
    assert os.readlink("/proc/thread-self/ns/net") == mine
    names_here = {i.name for i in NetlinkDriver().interfaces()}
    listed = {line.split(": ")[1].split("@")[0] for line in run("ip", "-o", "link").stdout.splitlines()}
    assert names_here == listed  # the UI's own namespace, as iproute2 sees it


def test_missing_namespace_is_a_readable_error():
    with pytest.raises(DriverError, match=f"'{PREFIX}-absent' does not exist"):
        NetlinkDriver(netns=f"{PREFIX}-absent").routes()
    assert not os.path.exists(f"/run/netns/{PREFIX}-absent")  # and it was not created on the way


def test_a_thousand_tunnels_routes_each_with_its_peer_and_multipath_hops(router):
    """A route per tunnel in table 220, as strongSwan installs them, and a thousand peers: every
    route read and labelled in one listing, in far less time than comparing each route with each
    peer took (seconds); plus the kinds of route a router also has, read from real netlink."""
    count = 1000
    batch = "".join(f"route add 10.{i // 250}.{i % 250}.0/24 dev ipsec0 table 220 "
                    f"src 198.51.100.1 proto static\n" for i in range(count))
    batch += ("route add 192.0.2.128/25 table 220 proto bird nexthop via 192.0.2.254 dev wan0"
              " nexthop via 192.0.2.253 dev wan0\n"
              "route add 2001:db8:7::/48 via 2001:db8::fe dev wan0 proto static\n"
              "route add 10.255.0.0/16 dev ipsec0 table 1000\n")
    run("ip", "-n", NS, "-batch", "-", stdin=batch)
    peers = [Peer(f"site-{i:04d}", "192.0.2.1", "192.0.2.2", ("198.51.100.0/24",),
                  (f"10.{i // 250}.{i % 250}.0/24",), "k") for i in range(count)]
    try:
        started = time.perf_counter()
        routes = router.routes(peers).routes
        took = time.perf_counter() - started
        tunnels = [r for r in routes if r.table == "220" and r.device == "ipsec0"]
        assert len(tunnels) == count + 1  # and the first session's 203.0.113.0/24
        assert {r.destination: r.peer for r in tunnels}["10.3.17.0/24"] == "site-0767"
        assert sum(1 for r in tunnels if r.peer) == count
        assert Route(4, "220", "192.0.2.128/25", gateway="192.0.2.254, 192.0.2.253",
                     device="wan0", protocol="bird") in routes
        assert Route(6, "main", "2001:db8:7::/48", gateway="2001:db8::fe", device="wan0",
                     protocol="static") in routes
        assert not any(r.destination == "10.255.0.0/16" for r in routes)  # table 1000: not shown
        order = [(r.table != "220", r.family) for r in routes]
        assert order == sorted(order), "table 220 first, IPv4 before IPv6 within each table"
        assert took < 1.0, f"{count} routes took {took:.2f} s"
    finally:
        run("ip", "-n", NS, "route", "flush", "table", "220", "proto", "static", check=False)
        run("ip", "-n", NS, "route", "add", "203.0.113.0/24", "dev", "ipsec0", "table", "220",
            "src", "198.51.100.1", "proto", "static", check=False)
        for gone in (["192.0.2.128/25", "table", "220"], ["2001:db8:7::/48"],
                     ["10.255.0.0/16", "table", "1000"]):
            run("ip", "-n", NS, "route", "del", *gone, check=False)
