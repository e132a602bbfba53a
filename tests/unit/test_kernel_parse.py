"""Kernel driver parsing: real rtnetlink bytes (encoded by pyroute2) -> the UI's dataclasses."""
import socket
import struct

import pytest

from webui.drivers import Address, DriverError, Interface, Route, RoutingRule
from webui.drivers import kernel
from webui.peers import Peer

CLASSES = kernel._pyroute2_messages()


def wire(mtype, fields, attrs):
    """Encode a message as the kernel would send it, then decode it the way the driver does."""
    message = CLASSES[mtype]()
    for key, value in fields.items():
        message[key] = value
    message["attrs"] = attrs
    message["header"]["type"] = mtype
    message.encode()
    ((kind, _flags, _seq, raw),) = kernel.split_messages(message.data)
    decoded = CLASSES[kind](raw)
    decoded.decode()
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
    route = wire(kernel.RTM_NEWROUTE,
                 {"family": socket.AF_INET, "dst_len": 24, "table": 220, "proto": 4, "type": 1},
                 [("RTA_TABLE", 220), ("RTA_DST", "203.0.113.0"), ("RTA_OIF", 7),
                  ("RTA_PREFSRC", "198.51.100.1")])
    peers = [peer("branch", ["192.0.2.128/25"]), peer("hq", ["203.0.113.0/24"])]
    assert kernel.parse_route(route, {7: "ipsec0"}, peers) == Route(
        4, "220", "203.0.113.0/24", device="ipsec0", source="198.51.100.1", protocol="static",
        peer="hq")


def test_multipath_default_route_lists_its_hops():
    route = wire(kernel.RTM_NEWROUTE,
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
])
def test_peer_for(destination, family, expected):
    peers = [peer("hq", ["203.0.113.0/24"]), peer("lab", ["203.0.113.128/25"]),
             peer("v6", ["2001:db8:5::/48"])]
    assert kernel.peer_for(destination, family, peers) == expected


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
