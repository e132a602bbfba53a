"""The kernel driver: the router's interfaces, addresses, routes and policy rules, read over rtnetlink.

Transport is a plain netlink socket of our own (one short-lived socket per call, a few dumps on it).
Links, addresses and rules are decoded by pyroute2. Routes, which grow with the tunnels (a route per
tunnel in table 220), are read straight from the wire for the few fields shown (`parse_route`).
pyroute2's package `__init__` eagerly imports its whole API
(hundreds of modules, most of a small router's budget: docs/PERFORMANCE.md, "Measured by hand"), so
`_pyroute2_messages()` loads only the four rtnetlink message modules and leaves a package stub that
completes the full import if anything else asks for it.

A router in another network namespace (config `NETNS`) is read by opening the socket from a short-lived
thread that has joined that namespace: a socket stays bound to the namespace it was made in. pyroute2's
own `netns=` forks a child process per socket and creates the namespace when it is missing; neither is
welcome in a threaded web server.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
from typing import Sequence

from webui.drivers import (Address, DriverError, Interface, PingResult, Route, Routes, RoutingRule,
                           child_env)
from webui.peers import Peer

# rtnetlink message types (linux/rtnetlink.h) and netlink flags (linux/netlink.h).
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWRULE, RTM_GETRULE = 32, 34
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
NETLINK_ROUTE = 0
CLONE_NEWNET = 0x40000000
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
# The family header each dump request carries: ifinfomsg (16 bytes), ifaddrmsg (8), rtmsg (12),
# fib_rule_hdr (12); all zero except the address family, which is the first byte of each.
_REQUEST_BODY = {RTM_GETLINK: 16, RTM_GETADDR: 8, RTM_GETROUTE: 12, RTM_GETRULE: 12}

IPSEC_TABLE = 220  # strongSwan installs its routes here (charon.routing_table)
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
SHOWN_TABLES = (IPSEC_TABLE, 254)  # in the order listed: the tunnels' routes first on an IPsec page
PROTOCOL_NAMES = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated",
                  9: "ra", 11: "zebra", 12: "bird", 16: "dhcp", 42: "babel", 186: "bgp",
                  187: "isis", 188: "ospf", 189: "rip"}
RULE_ACTIONS = {2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
FIB_RULE_INVERT = 0x2
# Link kinds that are always the IPsec tunnel (route-based kernel IPsec); TUN devices only by name.
IPSEC_KINDS = frozenset({"xfrm", "vti", "vti6"})
ARPHRD_KINDS = {1: "ether", 772: "loopback", 65534: "none", 768: "ipip", 776: "sit", 778: "gre"}
IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_RECV_SIZE = 1 << 18
# Routes and link names are read straight from the wire (see `parse_route`): the message headers
# (linux/rtnetlink.h, linux/if_link.h) and the few attributes the route view shows.
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")  # length, type
_RTNEXTHOP = struct.Struct("=HBBi")  # length, flags, hops, ifindex
_IFINFOMSG_SIZE = 16
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 7, 9, 15
IFLA_IFNAME = 3


# --- Loading pyroute2's decoders without its 24 MiB package import -----------------------------

_classes: dict[int, type] | None = None


def _pyroute2_messages() -> dict[int, type]:
    """The message classes that decode link, address, route and rule dumps, keyed by message type."""
    global _classes
    if _classes is None:
        if "pyroute2" not in sys.modules:
            _install_pyroute2_stub()
        from pyroute2.netlink.rtnl.fibmsg import fibmsg
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
        _classes = {RTM_NEWLINK: ifinfmsg, RTM_NEWADDR: ifaddrmsg, RTM_NEWROUTE: rtmsg,
                    RTM_NEWRULE: fibmsg}
    return _classes


def _install_pyroute2_stub() -> None:
    """Register `pyroute2` as a package whose `__init__` has not run yet.

    Submodules import normally through it. The first attribute asked of the package itself
    (`from pyroute2 import IPRoute` elsewhere in the process) runs the real `__init__` into the same
    module object, so other code sees the usual pyroute2.
    """
    import importlib
    import importlib.util
    spec = importlib.util.find_spec("pyroute2")
    if spec is None:
        raise DriverError("pyroute2 is not installed; the kernel driver needs it.")
    package = importlib.util.module_from_spec(spec)
    state = {"done": False}

    def complete(name):
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            # `from pyroute2 import config` asks the package first: a submodule, not the API
            return importlib.import_module(f"pyroute2.{name}")
        if state["done"]:
            raise AttributeError(name)
        state["done"] = True
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = complete
    sys.modules["pyroute2"] = package


# --- Transport ---------------------------------------------------------------------------------


def _setns(fd: int) -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _netns_socket(netns: str) -> socket.socket:
    """A netlink socket inside `netns`, made by a thread that joins it and then ends."""
    if not netns or "/" in netns or netns in (".", ".."):
        raise DriverError(f"{netns!r} is not a network namespace name.")
    outcome: dict = {}

    def make():
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)  # only this thread moves; the server's threads stay where they are
            finally:
                os.close(fd)
            outcome["socket"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        except OSError as e:
            outcome["error"] = e

    worker = threading.Thread(target=make, name=f"netns-{netns}", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        e = outcome["error"]
        if e.errno == errno.ENOENT:
            raise DriverError(f"The network namespace {netns!r} does not exist.")
        raise DriverError(f"Cannot enter the network namespace {netns!r}: {e.strerror}.")
    return outcome["socket"]


def split_messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, whole message) for each netlink message in one received buffer."""
    messages, offset = [], 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            raise DriverError("The kernel sent a malformed netlink message.")
        messages.append((kind, flags, seq, data[offset:offset + length]))
        offset += (length + 3) & ~3
    return messages


def dump_request(kind: int, seq: int, family: int = socket.AF_UNSPEC) -> bytes:
    body = bytes([family]) + bytes(_REQUEST_BODY[kind] - 1)
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _dump(sock: socket.socket, kind: int, seq: int) -> list[bytes]:
    """Every message of one dump, as received; raises DriverError for a netlink error."""
    sock.send(dump_request(kind, seq))
    found = []
    while True:
        for mtype, flags, mseq, raw in split_messages(sock.recv(_RECV_SIZE)):
            if mseq != seq:
                continue  # a stale answer to an earlier request: not ours
            if mtype == NLMSG_DONE:
                if flags & NLM_F_DUMP_INTR:
                    raise _Interrupted()
                return found
            if mtype == NLMSG_ERROR:
                code = -struct.unpack_from("=i", raw, _HEADER.size)[0]
                if code:
                    raise DriverError(f"The kernel refused to list: {os.strerror(code)}.")
                return found
            found.append(raw)


def decoded(messages: Sequence[bytes]) -> list:
    """Messages of a link, address or rule dump, decoded by pyroute2."""
    classes = _pyroute2_messages()
    result = []
    for raw in messages:
        kind = _HEADER.unpack_from(raw)[1]
        if kind in classes:
            message = classes[kind](raw)
            message.decode()
            result.append(message)
    return result


class _Interrupted(Exception):
    """The table changed while the kernel was dumping it; the dump is inconsistent."""


# --- Messages -> results -------------------------------------------------------------------------


def link_kind(link) -> str:
    kind = link.get(("linkinfo", "kind"))
    return kind or ARPHRD_KINDS.get(link["ifi_type"], str(link["ifi_type"]))


def parse_address(message) -> tuple[int, Address]:
    """(interface index, address). IPv4 point-to-point links put the local address in IFA_LOCAL."""
    address = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
    family = 6 if message["family"] == socket.AF_INET6 else 4
    return message["index"], Address(family, address, message["prefixlen"])


def parse_link(link, addresses: Sequence[Address] = (), ipsec_names=frozenset()) -> Interface:
    name = link.get_attr("IFLA_IFNAME") or ""
    kind = link_kind(link)
    stats = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS") or {}
    mac = link.get_attr("IFLA_ADDRESS") or ""
    if mac.strip("0:") == "":
        mac = ""  # loopback and friends report all zeroes: no hardware address worth showing
    ipsec = (kind in IPSEC_KINDS or name in ipsec_names
             or (kind == "tun" and name.startswith("ipsec")))
    return Interface(index=link["index"], name=name, kind=kind,
                     state=(link.get_attr("IFLA_OPERSTATE") or "unknown").lower(),
                     mtu=link.get_attr("IFLA_MTU") or 0, mac=mac, addresses=tuple(addresses),
                     rx_bytes=stats.get("rx_bytes", 0), tx_bytes=stats.get("tx_bytes", 0),
                     ipsec=ipsec)


def table_name(number: int) -> str:
    return TABLE_NAMES.get(number, str(number))


def attributes(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    """The netlink attributes in data[offset:end], by type (the last one of a type wins)."""
    found = {}
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            raise DriverError("The kernel sent a malformed netlink attribute.")
        found[kind & NLA_TYPE_MASK] = data[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def link_name(raw: bytes) -> tuple[int, str]:
    """(index, name) of one link message, without decoding the rest of it."""
    index = struct.unpack_from("=i", raw, _HEADER.size + 4)[0]
    attrs = attributes(raw, _HEADER.size + _IFINFOMSG_SIZE, len(raw))
    return index, _text(attrs.get(IFLA_IFNAME, b""))


def shown_route(raw: bytes) -> bool:
    """Whether a route message is one the route view lists: IPv4 or IPv6, in the main table or
    strongSwan's. Read from the fixed header alone, so the others cost no decoding (a table
    numbered above 255 says RT_TABLE_COMPAT there, which is not one of them)."""
    if _HEADER.unpack_from(raw)[1] != RTM_NEWROUTE or len(raw) < _HEADER.size + _RTMSG.size:
        return False
    family, _dst, _src, _tos, table = _RTMSG.unpack_from(raw, _HEADER.size)[:5]
    return family in IP_FAMILIES and table in SHOWN_TABLES


_TABLE_ORDER = {table_name(number): i for i, number in enumerate(SHOWN_TABLES)}


def route_order(route: Route) -> tuple[int, int]:
    """Where a route goes in the list: strongSwan's table first (the routes an IPsec page is
    about), then the main table; IPv4 before IPv6 within each; the kernel's order after that."""
    return _TABLE_ORDER[route.table], route.family


def parse_route(raw: bytes, names: dict[int, str], peers: PeerNetworks | None = None) -> Route:
    """One route message, read for the fields the route view shows, straight from the wire: a
    thousand tunnels' routes decoded into pyroute2's objects cost more time and memory than the
    whole listing needs."""
    family_number, dst_len, _src, _tos, table, protocol = _RTMSG.unpack_from(raw, _HEADER.size)[:6]
    attrs = attributes(raw, _HEADER.size + _RTMSG.size, len(raw))
    family = 6 if family_number == socket.AF_INET6 else 4
    dst = attrs.get(RTA_DST)
    destination = f"{socket.inet_ntop(family_number, dst)}/{dst_len}" if dst else "default"
    gateways, devices = [], []
    for gateway, oif in _hops(attrs):  # a multipath route lists its next hops
        if gateway:
            gateways.append(socket.inet_ntop(family_number, gateway))
        if oif:
            devices.append(names.get(oif, f"#{oif}"))
    if RTA_TABLE in attrs:
        table = struct.unpack("=I", attrs[RTA_TABLE])[0]
    source = attrs.get(RTA_PREFSRC)
    return Route(family=family, table=table_name(table), destination=destination,
                 gateway=", ".join(gateways), device=", ".join(dict.fromkeys(devices)),
                 source=socket.inet_ntop(family_number, source) if source else "",
                 protocol=PROTOCOL_NAMES.get(protocol, str(protocol)),
                 peer=peers.peer(family, dst, dst_len) if peers else "")


def _hops(attrs: dict[int, bytes]) -> list[tuple[bytes | None, int]]:
    """(gateway, output interface) of each next hop; a plain route is its own single hop."""
    multipath = attrs.get(RTA_MULTIPATH)
    if multipath is None:
        oif = attrs.get(RTA_OIF)
        return [(attrs.get(RTA_GATEWAY), struct.unpack("=i", oif)[0] if oif else 0)]
    hops, offset = [], 0
    while offset + _RTNEXTHOP.size <= len(multipath):
        length, _flags, _weight, oif = _RTNEXTHOP.unpack_from(multipath, offset)
        if length < _RTNEXTHOP.size:
            raise DriverError("The kernel sent a malformed multipath route.")
        hop = attributes(multipath, offset + _RTNEXTHOP.size, min(offset + length, len(multipath)))
        hops.append((hop.get(RTA_GATEWAY), oif))
        offset += (length + 3) & ~3
    return hops


class PeerNetworks:
    """The peers' remote networks, for naming the peer a route reaches. Built once per listing:
    each route then costs a dictionary probe per distinct prefix length, where comparing every
    route with every peer's networks grows with tunnels times peers."""

    def __init__(self, peers: Sequence[Peer]):
        self._networks: dict[tuple[int, int], dict[int, str]] = {}
        for peer in peers:
            for remote in peer.remote_networks:
                try:
                    net = ipaddress.ip_network(remote, strict=False)
                except ValueError:
                    continue  # the store validates; a bad record must not break the whole listing
                # setdefault: of two peers with the same network, the first one listed names it
                self._networks.setdefault((net.version, net.prefixlen), {}) \
                    .setdefault(int(net.network_address), peer.name)
        self._lengths = {family: sorted((length for (version, length) in self._networks
                                         if version == family), reverse=True)
                         for family in (4, 6)}

    def peer(self, family: int, address: bytes | None, prefix: int) -> str:
        """The peer whose remote network holds `address`/`prefix` (None: the default route); the
        most specific one if several do."""
        bits = 32 if family == 4 else 128
        number = int.from_bytes(address, "big") if address else 0
        for length in self._lengths[family]:
            if length > prefix:
                continue  # a network narrower than the route cannot hold it
            network = number >> (bits - length) << (bits - length) if length else 0
            name = self._networks[family, length].get(network)
            if name is not None:
                return name
        return ""


def peer_for(destination: str, family: int, peers: Sequence[Peer]) -> str:
    """The peer whose remote network holds `destination` ("default" or a CIDR)."""
    if destination == "default":
        return PeerNetworks(peers).peer(family, None, 0)
    net = ipaddress.ip_network(destination, strict=False)
    return PeerNetworks(peers).peer(family, net.network_address.packed, net.prefixlen)


def parse_rule(message) -> RoutingRule:
    family = 6 if message["family"] == socket.AF_INET6 else 4
    parts = []
    if message["flags"] & FIB_RULE_INVERT:
        parts.append("not")
    src, dst = message.get_attr("FRA_SRC"), message.get_attr("FRA_DST")
    parts.append(f"from {src}/{message['src_len']}" if src else "from all")
    if dst:
        parts.append(f"to {dst}/{message['dst_len']}")
    mark, mask = message.get_attr("FRA_FWMARK"), message.get_attr("FRA_FWMASK")
    if mark or mask:
        parts.append(f"fwmark {mark or 0:#x}" + (f"/{mask:#x}" if mask not in (None, 0xFFFFFFFF)
                                                 else ""))
    for attr, word in (("FRA_IIFNAME", "iif"), ("FRA_OIFNAME", "oif")):
        if message.get_attr(attr):
            parts.append(f"{word} {message.get_attr(attr)}")
    action = message["action"]
    table = RULE_ACTIONS.get(action) or table_name(message.get_attr("FRA_TABLE") or message["table"])
    return RoutingRule(family=family, priority=message.get_attr("FRA_PRIORITY") or 0,
                       selector=" ".join(parts), table=table)


# --- Ping ----------------------------------------------------------------------------------------

# iputils: "4 packets transmitted, 4 received"; busybox: "4 packets transmitted, 4 packets received"
_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_REPLY = re.compile(r"^\d+ bytes from .*time[=<]([\d.]+) ?ms", re.MULTILINE)


def parse_ping(output: str) -> PingResult:
    """sent, received and each reply's round trip, from what ping printed (iputils or busybox)."""
    summary = _PING_SUMMARY.search(output)
    rtts = tuple(float(t) for t in _PING_REPLY.findall(output))
    if summary is None:
        return PingResult(received=len(rtts), rtts=rtts,
                          error="ping printed no summary" if not rtts else "")
    return PingResult(sent=int(summary.group(1)), received=int(summary.group(2)), rtts=rtts)


def ping_argv(source: str, destination: str, count: int, deadline: float,
              busybox: bool = False) -> list[str]:
    """Four echo requests at most, from `source`, over in `deadline` seconds whatever answers:
    an argument list (the addresses are checked ones, and no shell ever reads them)."""
    numeric = [] if busybox else ["-n"]  # busybox never resolves and has no -n
    return ["ping", *numeric, "-c", str(count), "-W", "1", "-w", str(max(1, int(deadline))),
            "-I", source, destination]


# --- The driver ----------------------------------------------------------------------------------


class NetlinkDriver:
    """Reads the router's network over rtnetlink; `netns` names its namespace ("" = this one)."""

    def __init__(self, netns: str = "", ipsec_interfaces: Sequence[str] = ("ipsec0",),
                 timeout: float = 3.0):
        self.netns = netns
        self.ipsec_names = frozenset(ipsec_interfaces)
        self.timeout = timeout

    def interfaces(self) -> tuple[Interface, ...]:
        links, addrs = (decoded(messages) for messages in self._dumps(RTM_GETLINK, RTM_GETADDR))
        by_index: dict[int, list[Address]] = {}
        for message in addrs:
            index, address = parse_address(message)
            by_index.setdefault(index, []).append(address)
        return tuple(parse_link(link, by_index.get(link["index"], ()), self.ipsec_names)
                     for link in links)

    def routes(self, peers: Sequence[Peer] = ()) -> Routes:
        links, routes, rules = self._dumps(RTM_GETLINK, RTM_GETROUTE, RTM_GETRULE)
        names = dict(link_name(raw) for raw in links
                     if _HEADER.unpack_from(raw)[1] == RTM_NEWLINK)
        # An AF_UNSPEC dump also brings multicast-routing (ipmr) entries and the local table:
        # not what "routes" means here.
        networks = PeerNetworks(peers)
        shown = [parse_route(raw, names, networks) for raw in routes if shown_route(raw)]
        shown.sort(key=route_order)
        parsed_rules = sorted((parse_rule(m) for m in decoded(rules) if m["family"] in IP_FAMILIES),
                              key=lambda r: (r.family, r.priority))
        return Routes(routes=tuple(shown), rules=tuple(parsed_rules))

    def ping(self, source: str, destination: str, count: int = 4,
             deadline: float = 5.0) -> PingResult:
        """Ping `destination` from the router's address `source` (in the router's namespace)."""
        found = shutil.which("ping")
        if found is None:
            return PingResult(error="ping is not installed on the router.")
        argv = ping_argv(source, destination, count, deadline,
                         busybox=os.path.basename(os.path.realpath(found)) == "busybox")
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=child_env(),
                                  timeout=deadline + 2)
        except subprocess.TimeoutExpired:
            return PingResult(error=f"ping did not finish within {deadline + 2:g} s.")
        except OSError as e:
            return PingResult(error=f"ping could not be run: {e.strerror or e}.")
        result = parse_ping(done.stdout)
        if done.returncode not in (0, 1) and not result.sent:
            # 2: ping itself failed (the source address is not the router's, say)
            return PingResult(error=(done.stderr.strip().splitlines() or ["ping failed"])[-1])
        return result

    def _dumps(self, *kinds: int) -> list[list]:
        """One dump per kind, on one socket; retried when the kernel says a table changed mid-dump."""
        for _attempt in range(3):
            try:
                sock = self._socket()
                try:
                    return [_dump(sock, kind, seq) for seq, kind in enumerate(kinds, start=1)]
                finally:
                    sock.close()
            except _Interrupted:
                continue
            except socket.timeout:
                raise DriverError("The kernel did not answer the netlink request in time.")
            except OSError as e:
                raise DriverError(f"Cannot read the router's network state: {e.strerror or e}.")
        raise DriverError("The routing tables kept changing while being read; try again.")

    def _socket(self) -> socket.socket:
        if self.netns:
            sock = _netns_socket(self.netns)
        else:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        sock.settimeout(self.timeout)
        sock.bind((0, 0))
        return sock
