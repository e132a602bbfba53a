"""The kernel driver against real netlink, in a namespace with veths, addresses, a TUN ipsec0 and
strongSwan-style table-220 routes."""
import os

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
