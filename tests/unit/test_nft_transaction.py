"""The firewall transaction checked whole: packets are run through the table it builds.

A small evaluator (below) reads the `nft -j` transaction the way the kernel reads the table: base
chains by hook, rules in order, jumps, set lookups with prefixes, the base chain's policy. The
tests then ask what happens to packets coming out of a tunnel, for several peers with each firewall
choice, instead of how the rules are spelled. The integration tests send real packets through real
nftables; this is the fast net under them that every change of the builder has to pass.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from webui.drivers import nft_rules
from webui.peers import Peer


@dataclass(frozen=True)
class Packet:
    hook: str  # "forward" or "input"
    saddr: str
    daddr: str = "192.0.2.1"
    iif: str = "wan0"
    oif: str = ""
    ipsec: bool = False  # decrypted by kernel IPsec (meta ipsec)
    ct: str = "new"


class Table:
    """The table a transaction leaves behind (it must create everything it uses)."""

    def __init__(self, transaction: dict):
        self.chains: dict[str, dict] = {}
        self.rules: dict[str, list[list]] = {}
        self.sets: dict[str, dict] = {}
        self.elements: dict[str, list] = {}
        for command in transaction["nftables"]:
            (verb, body), = command.items()
            (kind, obj), = body.items()
            if kind == "table":
                assert obj == {"family": "inet", "name": "webui_ipsec"}
                if verb == "delete":
                    self.__init__({"nftables": []})
                continue
            assert verb == "add", command
            assert (obj["family"], obj["table"]) == ("inet", "webui_ipsec"), command
            if kind == "chain":
                self.chains[obj["name"]] = obj
                self.rules[obj["name"]] = []
            elif kind == "set":
                assert "interval" in obj["flags"]
                self.sets[obj["name"]] = obj
                self.elements[obj["name"]] = []
            elif kind == "element":
                assert obj["name"] in self.sets, "elements of a set that was not declared"
                self.elements[obj["name"]] += [e["elem"]["val"] for e in obj["elem"]]
            elif kind == "rule":
                assert obj["chain"] in self.rules, "a rule in a chain that was not declared"
                self.rules[obj["chain"]].append(obj["expr"])
            else:
                raise AssertionError(f"unexpected {kind}")

    def verdict(self, packet: Packet) -> str:
        """accept or drop, for the packet on its hook (every base chain of the hook)."""
        for name, chain in self.chains.items():
            if chain.get("hook") == packet.hook:
                result = self._run(name, packet)
                if result == "drop":
                    return "drop"
        return "accept"

    def _run(self, name: str, packet: Packet, depth: int = 0) -> str | None:
        assert depth < 8, "jump loop"
        for exprs in self.rules[name]:
            for expr in exprs:
                (kind, arg), = expr.items()
                if kind == "match":
                    if not self._matches(arg, packet):
                        break
                elif kind == "counter":
                    continue
                elif kind in ("accept", "drop"):
                    return kind
                elif kind == "jump":
                    result = self._run(arg["target"], packet, depth + 1)
                    if result is not None:
                        return result
                    break
                else:
                    raise AssertionError(f"unknown statement {kind}")
        return self.chains[name].get("policy")

    def _matches(self, match: dict, packet: Packet) -> bool:
        value = self._value(match["left"], packet)
        if value is None:  # an ip payload match on an ip6 packet, or the other way round
            return False
        right, op = match["right"], match["op"]
        if isinstance(right, list):
            # A list is a combination of flags (ct state): "in" asks for any of them, "==" for
            # all of them at once, which a connection's one state never is.
            assert match["left"] == {"ct": {"key": "state"}}, match
            return {"in": value in right, "==": [value] == right}[op]
        if isinstance(right, str) and right.startswith("@"):
            found = any(self._element_has(e, value) for e in self.elements[right[1:]])
        elif isinstance(right, dict):
            (kind, values), = right.items()
            assert kind == "set"
            found = value in values
        else:
            found = value == right
        return {"==": found, "!=": not found}[op]

    def _value(self, left: dict, packet: Packet):
        (kind, arg), = left.items()
        if kind == "meta":
            return {"ipsec": packet.ipsec, "iifname": packet.iif, "oifname": packet.oif}[arg["key"]]
        if kind == "ct":
            assert arg["key"] == "state"
            return packet.ct
        if kind == "payload":
            version = {"ip": 4, "ip6": 6}[arg["protocol"]]
            address = ipaddress.ip_address(getattr(packet, arg["field"]))
            return address if address.version == version else None
        if kind == "concat":
            parts = tuple(self._value(part, packet) for part in arg)
            return None if None in parts else parts
        raise AssertionError(f"unknown expression {kind}")

    def _element_has(self, element, value) -> bool:
        if isinstance(value, tuple):
            parts = element["concat"]
            return len(parts) == len(value) and all(map(self._element_has, parts, value))
        if isinstance(element, dict):
            prefix = element["prefix"]
            return value in ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}")
        return value == ipaddress.ip_address(element)


def peer(name, remote, local, firewall, enabled=True):
    return Peer(name, "192.0.2.1", "192.0.2.2", tuple(local), tuple(remote), "secret-key",
                firewall=tuple(firewall), enabled=enabled)


# Sorted by name on purpose with the disabled one in the middle: the peers after it still count.
PEERS = [
    peer("a-lan", ["10.1.0.0/16", "2001:db8:a::/48"], ["192.168.1.0/24", "2001:db8:1::/64"],
         ["forward_lan"]),
    peer("b-wan-input", ["10.2.0.0/16", "10.3.0.0/16"], ["192.168.2.0/24"],
         ["forward_wan", "input"]),
    peer("c-disabled", ["10.4.0.0/16"], ["192.168.4.0/24"],
         ["forward_lan", "forward_wan", "input"], enabled=False),
    peer("d-all", ["10.5.0.0/16", "2001:db8:d::/48"], ["192.168.5.0/24", "192.168.6.0/24"],
         ["forward_lan", "forward_wan", "input"]),
    peer("e-none", ["10.6.0.0/16"], ["192.168.7.0/24"], []),
]
ZONES = nft_rules.Zones(lan=("lan0", "lan1"), wan=("wan0",), tunnel=("ipsec0",))
INTERNET = {4: "198.18.0.1", 6: "2001:db8:ffff::1"}


def table(peers=PEERS, zones=ZONES) -> Table:
    return Table(nft_rules.build_ruleset(peers, zones))


def host(network: str) -> str:
    return str(ipaddress.ip_network(network)[1])


def tunnel_packets(hook, saddr, daddr, oif=""):
    """The same packet out of a tunnel both ways the table recognises one."""
    return [Packet(hook, saddr, daddr, iif="wan0", oif=oif, ipsec=True),
            Packet(hook, saddr, daddr, iif="ipsec0", oif=oif)]


def allowed(p: Peer, choice: str) -> bool:
    return p.enabled and choice in p.firewall


@pytest.mark.parametrize("p", PEERS, ids=[p.name for p in PEERS])
def test_each_peer_reaches_its_own_lan_only_if_it_chose_to(p):
    t = table()
    for remote in p.remote_networks:
        for local in p.local_networks:
            if ipaddress.ip_network(remote).version != ipaddress.ip_network(local).version:
                continue
            for oif in ZONES.lan:
                for packet in tunnel_packets("forward", host(remote), host(local), oif):
                    expected = "accept" if allowed(p, "forward_lan") else "drop"
                    assert t.verdict(packet) == expected, (packet, expected)
            # the right addresses, out of the WAN: only forward to WAN lets it
            for packet in tunnel_packets("forward", host(remote), host(local), "wan0"):
                expected = "accept" if allowed(p, "forward_wan") else "drop"
                assert t.verdict(packet) == expected, (packet, expected)


@pytest.mark.parametrize("p", PEERS, ids=[p.name for p in PEERS])
def test_each_peer_reaches_the_wan_only_if_it_chose_to(p):
    t = table()
    for remote in p.remote_networks:
        version = ipaddress.ip_network(remote).version
        for packet in tunnel_packets("forward", host(remote), INTERNET[version], "wan0"):
            expected = "accept" if allowed(p, "forward_wan") else "drop"
            assert t.verdict(packet) == expected, (packet, expected)
        for packet in tunnel_packets("forward", host(remote), INTERNET[version], "lan0"):
            assert t.verdict(packet) == "drop", "forward to LAN needs the peer's local networks"


@pytest.mark.parametrize("p", PEERS, ids=[p.name for p in PEERS])
def test_each_peer_reaches_the_router_only_if_it_chose_to(p):
    t = table()
    for remote in p.remote_networks:
        version = ipaddress.ip_network(remote).version
        router = "192.0.2.1" if version == 4 else "2001:db8::1"
        for packet in tunnel_packets("input", host(remote), router):
            expected = "accept" if allowed(p, "input") else "drop"
            assert t.verdict(packet) == expected, (packet, expected)


def test_a_peer_cannot_reach_another_peers_lan():
    t = table()
    for packet in tunnel_packets("forward", host("10.5.0.0/16"), host("192.168.1.0/24"), "lan0"):
        assert t.verdict(packet) == "drop"
    for packet in tunnel_packets("forward", host("10.1.0.0/16"), host("192.168.5.0/24"), "lan0"):
        assert t.verdict(packet) == "drop"


@pytest.mark.parametrize("state", ["established", "related"])
def test_replies_to_connections_made_from_this_side_come_back(state):
    t = table()
    for hook, oif in (("forward", "lan0"), ("input", "")):
        # a peer with no choice at all, and an address no peer has
        for saddr in (host("10.6.0.0/16"), "172.31.0.1", "2001:db8:e::1"):
            daddr = "192.168.7.1" if ":" not in saddr else "2001:db8:1::1"
            for packet in tunnel_packets(hook, saddr, daddr, oif):
                assert t.verdict(Packet(**{**packet.__dict__, "ct": state})) == "accept"
                assert t.verdict(packet) == "drop"


def test_tunnel_traffic_from_nowhere_known_is_dropped_on_both_hooks():
    t = table()
    for version, saddr in ((4, "172.31.0.1"), (6, "2001:db8:e::1")):
        for packet in (tunnel_packets("forward", saddr, INTERNET[version], "wan0")
                       + tunnel_packets("forward", saddr, host("192.168.1.0/24"), "lan0")
                       + tunnel_packets("input", saddr, "192.0.2.1")):
            assert t.verdict(packet) == "drop", packet


def test_traffic_that_did_not_come_out_of_a_tunnel_is_left_to_the_main_firewall():
    t = table()
    for hook, oif in (("forward", "lan0"), ("forward", "wan0"), ("input", "")):
        for saddr in ("172.31.0.1", host("10.6.0.0/16"), "2001:db8:e::1"):
            daddr = "192.168.1.1" if ":" not in saddr else "2001:db8:1::1"
            assert t.verdict(Packet(hook, saddr, daddr, iif="eth1", oif=oif)) == "accept"


def test_without_a_wan_list_forward_to_wan_allows_nothing_and_the_rest_still_works():
    t = table(zones=nft_rules.Zones(lan=("lan0",), wan=(), tunnel=("ipsec0",)))
    for packet in tunnel_packets("forward", host("10.5.0.0/16"), INTERNET[4], "wan0"):
        assert t.verdict(packet) == "drop"
    for packet in tunnel_packets("forward", host("10.5.0.0/16"), host("192.168.6.0/24"), "lan0"):
        assert t.verdict(packet) == "accept"
    for packet in tunnel_packets("input", host("10.2.0.0/16"), "192.0.2.1"):
        assert t.verdict(packet) == "accept"


def test_without_a_lan_list_forward_to_lan_goes_out_of_any_interface():
    """No LAN interfaces configured: the peer's local networks alone say where LAN is."""
    t = table(zones=nft_rules.Zones(lan=(), wan=("wan0",), tunnel=("ipsec0",)))
    for oif in ("lan0", "br-lan", "eth5"):
        for packet in tunnel_packets("forward", host("10.1.0.0/16"), host("192.168.1.0/24"), oif):
            assert t.verdict(packet) == "accept"


def test_without_a_tunnel_interface_only_kernel_ipsec_traffic_is_judged():
    t = table(zones=nft_rules.Zones(lan=("lan0",), wan=("wan0",), tunnel=()))
    assert t.verdict(Packet("input", host("10.1.0.0/16"), "192.0.2.1", ipsec=True)) == "drop"
    assert t.verdict(Packet("input", host("10.1.0.0/16"), "192.0.2.1", iif="ipsec0")) == "accept"


def test_several_tunnel_interfaces_are_all_judged():
    t = table(zones=nft_rules.Zones(lan=("lan0",), wan=("wan0",), tunnel=("ipsec0", "vti1")))
    for iif in ("ipsec0", "vti1"):
        assert t.verdict(Packet("input", host("10.1.0.0/16"), "192.0.2.1", iif=iif)) == "drop"
        assert t.verdict(Packet("input", host("10.2.0.0/16"), "192.0.2.1", iif=iif)) == "accept"


def test_every_enabled_peers_networks_are_in_every_set_it_chose():
    t = table()
    expected: dict[str, set] = {name: set() for name in t.sets}
    for p in PEERS:
        if not p.enabled:
            continue
        for remote in p.remote_networks:
            r = ipaddress.ip_network(remote)
            for choice, kind in (("forward_wan", "wan"), ("input", "input")):
                if choice in p.firewall:
                    expected[f"{kind}{r.version}"].add(str(r))
            if "forward_lan" in p.firewall:
                for local in map(ipaddress.ip_network, p.local_networks):
                    if local.version == r.version:
                        expected[f"lan{r.version}"].add((str(r), str(local)))

    def text(element):
        if "concat" in element:
            return tuple(text(part) for part in element["concat"])
        return f"{element['prefix']['addr']}/{element['prefix']['len']}"
    assert {name: {text(e) for e in elements} for name, elements in t.elements.items()} == expected
    assert t.sets["lan4"]["type"] == ["ipv4_addr", "ipv4_addr"]
    assert t.sets["lan6"]["type"] == ["ipv6_addr", "ipv6_addr"]
    for kind in ("wan", "input"):
        assert (t.sets[f"{kind}4"]["type"], t.sets[f"{kind}6"]["type"]) == ("ipv4_addr", "ipv6_addr")


def test_each_judging_chain_ends_in_a_counted_drop_and_base_chains_accept():
    t = table()
    for name in ("tunnel_forward", "tunnel_input"):
        assert t.rules[name][-1] == [{"counter": None}, {"drop": None}], name
    assert {n: (c.get("hook"), c.get("type"), c.get("prio"), c.get("policy"))
            for n, c in t.chains.items()} == {
        "forward": ("forward", "filter", -5, "accept"), "input": ("input", "filter", -5, "accept"),
        "tunnel_forward": (None, None, None, None), "tunnel_input": (None, None, None, None)}


def test_the_table_is_created_before_it_is_deleted_and_built_again():
    commands = nft_rules.build_ruleset(PEERS, ZONES)["nftables"]
    first = [next(iter(next(iter(c.values())))) for c in commands[:4]]
    assert first == ["table", "table", "table", "chain"]
    assert [next(iter(c)) for c in commands[:3]] == ["add", "delete", "add"]


def test_an_unchanged_table_is_recognised_and_any_change_is_not():
    layout = nft_rules.layout(nft_rules.build_ruleset(PEERS, ZONES))
    assert nft_rules.layout(nft_rules.build_ruleset(list(reversed(PEERS)), ZONES)) == layout
    # a peer without firewall choices adds nothing to the table
    assert nft_rules.layout(nft_rules.build_ruleset(PEERS[:-1], ZONES)) == layout
    changed = [
        PEERS[1:],
        PEERS[:1] + [peer("b-wan-input", ["10.2.0.0/16"], ["192.168.2.0/24"],
                          ["forward_wan", "input"])] + PEERS[2:],
        [peer("a-lan", ["10.1.0.0/16"], ["192.168.1.0/24"], ["forward_wan"])],
        [peer("a-lan", ["10.1.0.0/16"], ["192.168.1.0/24"], ["forward_lan"], enabled=False)],
    ]
    seen = {layout[-1][1]}
    for peers in changed:
        last = nft_rules.layout(nft_rules.build_ruleset(peers, ZONES))[-1][1]
        assert last not in seen
        seen.add(last)
    other_zones = nft_rules.Zones(lan=("lan9",), wan=("wan0",), tunnel=("ipsec0",))
    assert nft_rules.layout(nft_rules.build_ruleset(PEERS, other_zones))[-1][1] not in seen
