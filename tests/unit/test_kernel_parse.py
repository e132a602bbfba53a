"""Kernel driver parsing: real rtnetlink bytes (encoded by pyroute2) -> the UI's dataclasses."""
import ipaddress
import socket
import struct

import pytest
from hypothesis import given, settings, strategies as st

from webui.drivers import Address, DriverError, Interface, Route, RoutingRule
from webui.drivers import kernel
from webui.peers import Peer

CLASSES = kernel._pyroute2_messages()


def raw(mtype, fields, attrs) -> bytes:
    """A message as the kernel sends it (encoded by pyroute2, independently of the driver)."""
    message = CLASSES[mtype]()
    for key, value in fields.items():
        message[key] = value
    message["attrs"] = attrs
    message["header"]["type"] = mtype
    message.encode()
    ((_kind, _flags, _seq, data),) = kernel.split_messages(message.data)
    return data


def wire(mtype, fields, attrs):
    """Encode a message as the kernel would send it, then decode it the way the driver does."""
    (decoded,) = kernel.decoded([raw(mtype, fields, attrs)])
    return decoded


def peer(name, remote, local=("198.51.100.0/24",)):
    return Peer(name, "192.0.2.1", "192.0.2.2", tuple(local), tuple(remote), "secret")


def test_dump_request_is_a_netlink_dump_header_and_family_body():
    data = kernel.dump_request(kernel.RTM_GETROUTE, seq=7)
    assert struct.unpack("=IHHII", data[:16]) == (28, 26, 0x301, 7, 0)
    assert data[16:] == bytes(12)


def test_split_messages_rejects_a_short_length():
    with pytest.raises(DriverError):
        kernel.split_messages(struct.pack("=IHHII", 4, 16, 0, 1, 0))


def test_tun_named_ipsec_is_the_tunnel():
    link = wire(kernel.RTM_NEWLINK, {"index": 5, "ifi_type": 65534},
                [("IFLA_IFNAME", "ipsec0"), ("IFLA_MTU", 1400), ("IFLA_OPERSTATE", "UNKNOWN"),
                 ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "tun")]}),
                 ("IFLA_STATS64", {"rx_bytes": 10, "tx_bytes": 20})])
    assert kernel.parse_link(link) == Interface(5, "ipsec0", "tun", "unknown", 1400,
                                                rx_bytes=10, tx_bytes=20, ipsec=True)


@pytest.mark.parametrize("name, kind, configured, ipsec", [
    ("tun0", "tun", (), False),  # a VPN client's TUN is not our tunnel
    ("xfrm1", "xfrm", (), True),
    ("vti0", "vti", (), True),
    ("wg0", "wireguard", ("wg0",), True),  # configured as the IPsec interface
    ("lan0", "veth", (), False),
])
def test_which_interface_is_the_ipsec_tunnel(name, kind, configured, ipsec):
    link = wire(kernel.RTM_NEWLINK, {"index": 2, "ifi_type": 1},
                [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]})])
    assert kernel.parse_link(link, (), frozenset(configured)).ipsec is ipsec


def test_ethernet_link_with_addresses_and_loopback_without_mac():
    eth = wire(kernel.RTM_NEWLINK, {"index": 3, "ifi_type": 1},
               [("IFLA_IFNAME", "wan0"), ("IFLA_MTU", 1500), ("IFLA_OPERSTATE", "UP"),
                ("IFLA_ADDRESS", "02:00:00:00:00:01")])
    addrs = (Address(4, "192.0.2.1", 24),)
    assert kernel.parse_link(eth, addrs) == Interface(3, "wan0", "ether", "up", 1500,
                                                      "02:00:00:00:00:01", addrs)
    lo = wire(kernel.RTM_NEWLINK, {"index": 1, "ifi_type": 772},
              [("IFLA_IFNAME", "lo"), ("IFLA_ADDRESS", "00:00:00:00:00:00")])
    assert (lo.get_attr("IFLA_ADDRESS"), kernel.parse_link(lo).mac) == ("00:00:00:00:00:00", "")
    assert kernel.parse_link(lo).kind == "loopback"


def test_point_to_point_address_reports_the_local_side():
    addr = wire(kernel.RTM_NEWADDR, {"family": socket.AF_INET, "prefixlen": 32, "index": 4},
                [("IFA_ADDRESS", "10.0.0.2"), ("IFA_LOCAL", "10.0.0.1")])
    assert kernel.parse_address(addr) == (4, Address(4, "10.0.0.1", 32))
    addr6 = wire(kernel.RTM_NEWADDR, {"family": socket.AF_INET6, "prefixlen": 64, "index": 4},
                 [("IFA_ADDRESS", "2001:db8::1")])
    assert kernel.parse_address(addr6) == (4, Address(6, "2001:db8::1", 64))


def test_table_220_route_is_labelled_with_the_peer():
    route = raw(kernel.RTM_NEWROUTE,
                 {"family": socket.AF_INET, "dst_len": 24, "table": 220, "proto": 4, "type": 1},
                 [("RTA_TABLE", 220), ("RTA_DST", "203.0.113.0"), ("RTA_OIF", 7),
                  ("RTA_PREFSRC", "198.51.100.1")])
    peers = [peer("branch", ["192.0.2.128/25"]), peer("hq", ["203.0.113.0/24"])]
    assert kernel.parse_route(route, {7: "ipsec0"}, kernel.PeerNetworks(peers)) == Route(
        4, "220", "203.0.113.0/24", device="ipsec0", source="198.51.100.1", protocol="static",
        peer="hq")


def test_multipath_default_route_lists_its_hops():
    route = raw(kernel.RTM_NEWROUTE,
                 {"family": socket.AF_INET, "dst_len": 0, "table": 254, "proto": 3, "type": 1},
                 [("RTA_TABLE", 254), ("RTA_MULTIPATH", [
                     {"oif": 2, "attrs": [("RTA_GATEWAY", "192.0.2.254")]},
                     {"oif": 9, "attrs": [("RTA_GATEWAY", "192.0.2.253")]}])])
    assert kernel.parse_route(route, {2: "wan0"}) == Route(
        4, "main", "default", gateway="192.0.2.254, 192.0.2.253", device="wan0, #9",
        protocol="boot")


@pytest.mark.parametrize("destination, family, expected", [
    ("203.0.113.0/24", 4, "hq"),
    ("203.0.113.128/25", 4, "lab"),  # the most specific remote network wins
    ("203.0.112.0/23", 4, ""),  # wider than the remote network: not inside it
    ("default", 4, ""),
    ("2001:db8:5::/64", 6, "v6"),
    ("2001:db8:5::/47", 6, ""),
    ("203.0.113.7/32", 4, "hq"),
    ("203.0.113.200/32", 4, "lab"),
])
def test_peer_for(destination, family, expected):
    peers = [peer("hq", ["203.0.113.0/24"]), peer("lab", ["203.0.113.128/25"]),
             peer("v6", ["2001:db8:5::/48"])]
    assert kernel.peer_for(destination, family, peers) == expected


def test_ipv6_route_with_a_gateway_and_a_table_above_255():
    route = raw(kernel.RTM_NEWROUTE,
                {"family": socket.AF_INET6, "dst_len": 48, "table": 252, "proto": 186, "type": 1},
                [("RTA_TABLE", 1000), ("RTA_DST", "2001:db8:5::"), ("RTA_GATEWAY", "fe80::1"),
                 ("RTA_OIF", 3)])
    assert kernel.parse_route(route, {3: "wan0"}) == Route(
        6, "1000", "2001:db8:5::/48", gateway="fe80::1", device="wan0", protocol="bgp")
    assert not kernel.shown_route(route)  # the header says RT_TABLE_COMPAT: not main, not 220


@pytest.mark.parametrize("family, table, shown", [
    (socket.AF_INET, 254, True), (socket.AF_INET6, 220, True),
    (socket.AF_INET, 255, False),  # the local table
    (128, 254, False),  # RTNL_FAMILY_IPMR: multicast routing, also in an AF_UNSPEC dump
])
def test_only_main_and_table_220_of_ip_are_shown(family, table, shown):
    route = raw(kernel.RTM_NEWROUTE, {"family": family, "table": table, "type": 1}, [])
    assert kernel.shown_route(route) is shown


def test_link_name_reads_the_index_and_name_alone():
    link = raw(kernel.RTM_NEWLINK, {"index": 42, "ifi_type": 1},
               [("IFLA_MTU", 1500), ("IFLA_IFNAME", "xfrm-hq"), ("IFLA_OPERSTATE", "UP")])
    assert kernel.link_name(link) == (42, "xfrm-hq")


def test_a_truncated_attribute_is_a_driver_error():
    route = raw(kernel.RTM_NEWROUTE, {"family": socket.AF_INET, "dst_len": 24, "table": 254},
                [("RTA_DST", "203.0.113.0")])
    with pytest.raises(DriverError, match="malformed"):
        kernel.parse_route(route[:-2], {})


def test_the_first_peer_listed_names_a_network_two_peers_share():
    peers = [peer("first", ["10.1.0.0/16"]), peer("second", ["10.1.0.0/16"]),
             peer("bad", ["not a network"]), peer("all", ["0.0.0.0/0"])]
    assert kernel.peer_for("10.1.2.0/24", 4, peers) == "first"
    assert kernel.peer_for("10.2.0.0/24", 4, peers) == "all"
    assert kernel.peer_for("default", 4, peers) == "all"
    assert kernel.peer_for("default", 6, peers) == ""


def test_rule_selector_and_table_names():
    rule = wire(kernel.RTM_NEWRULE, {"family": socket.AF_INET, "action": 1, "src_len": 8,
                                     "flags": kernel.FIB_RULE_INVERT},
                [("FRA_PRIORITY", 100), ("FRA_TABLE", 254), ("FRA_SRC", "10.0.0.0"),
                 ("FRA_FWMARK", 1), ("FRA_FWMASK", 0xFF), ("FRA_IIFNAME", "lan0")])
    assert kernel.parse_rule(rule) == RoutingRule(
        4, 100, "not from 10.0.0.0/8 fwmark 0x1/0xff iif lan0", "main")
    charon = wire(kernel.RTM_NEWRULE, {"family": socket.AF_INET6, "action": 1},
                  [("FRA_PRIORITY", 220), ("FRA_TABLE", 220)])
    assert kernel.parse_rule(charon) == RoutingRule(6, 220, "from all", "220")
    blackhole = wire(kernel.RTM_NEWRULE, {"family": socket.AF_INET, "action": 6},
                     [("FRA_PRIORITY", 5)])
    assert kernel.parse_rule(blackhole).table == "blackhole"


def test_a_bad_namespace_name_is_refused_before_any_syscall():
    with pytest.raises(DriverError, match="not a network namespace name"):
        kernel.NetlinkDriver(netns="../etc").interfaces()


def _peer_by_comparing_each(net, peers):
    """The plain definition: the most specific remote network that holds `net`, first peer first."""
    best, best_len = "", -1
    for p in peers:
        for remote in map(ipaddress.ip_network, p.remote_networks):
            if remote.version == net.version and net.subnet_of(remote) and remote.prefixlen > best_len:
                best, best_len = p.name, remote.prefixlen
    return best


_networks = st.builds(lambda n, length: ipaddress.ip_network((n, length), strict=False),
                      st.integers(0x0A000000, 0x0A00FFFF), st.integers(0, 32))  # overlaps are likely


@settings(max_examples=300, deadline=None)
@given(remotes=st.lists(st.lists(_networks, min_size=1, max_size=3), max_size=8), route=_networks)
def test_the_index_finds_the_peer_comparing_each_network_would(remotes, route):
    peers = [peer(f"p{i}", [str(n) for n in networks]) for i, networks in enumerate(remotes)]
    found = kernel.PeerNetworks(peers).peer(4, route.network_address.packed, route.prefixlen)
    assert found == _peer_by_comparing_each(route, peers)
