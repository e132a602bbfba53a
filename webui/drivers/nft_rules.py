"""Pure builder: peers' firewall choices -> the nftables JSON transaction that replaces the UI's table.

No I/O here; `webui/drivers/firewall.py` sends what this builds. Everything is data: peer names and
networks go into JSON values (set elements and their comments), never into a command line.
See docs/FIREWALL.md for how the table sits beside the router's main firewall.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Sequence

from webui.peers import Peer

FAMILY, TABLE = "inet", "webui_ipsec"
# Just before the usual filter chains (fw4 and most hand-written rulesets use priority filter = 0),
# so a drop here happens before they spend work on the packet. Order matters only for drops:
# an accept here is not final, every other base chain on the hook still judges the packet.
PRIORITY = -5
COMMENT_MAX = 120  # nftables keeps at most 128 bytes of a rule comment
CHOICE_LABELS = {"forward_lan": "forward to LAN", "forward_wan": "forward to WAN",
                 "input": "reach the router"}


@dataclass(frozen=True)
class Zones:
    """Interface lists from configuration: what counts as LAN, WAN and the userspace tunnel."""

    lan: tuple[str, ...] = ()
    wan: tuple[str, ...] = ()
    tunnel: tuple[str, ...] = ("ipsec0",)


def _match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _names(values: Sequence[str]):
    return values[0] if len(values) == 1 else {"set": list(values)}


def _addr(version: int, field: str) -> dict:
    return {"payload": {"protocol": "ip" if version == 4 else "ip6", "field": field}}


def _comment(text: str) -> str:
    return text if len(text.encode()) <= COMMENT_MAX else \
        text.encode()[:COMMENT_MAX - 3].decode(errors="ignore") + "..."


@functools.lru_cache(maxsize=4096)
def _network(text: str) -> tuple[int, str, int]:
    """(version, network address, prefix length); parsed once per network, not once per apply:
    every change rebuilds the rules of every peer."""
    net = ipaddress.ip_network(text, strict=False)
    return net.version, str(net.network_address), net.prefixlen


def _networks(texts: Sequence[str], version: int) -> list[tuple[int, str, int]]:
    return [n for n in map(_network, texts) if n[0] == version]


# Peers' networks live in sets, not in a rule per peer: the table keeps a fixed handful of rules,
# and nft loads a set's elements several times faster than as many rules (docs/PERFORMANCE.md,
# "Measured by hand"). Each element carries "peer <name>: <choice>" as its comment, so `nft list table` still
# says whose it is. Interval sets refuse overlapping elements, which the peer validation already
# rules out (no two peers' remote networks overlap, nor the networks within one side of a peer).
SET_KINDS = ("lan", "wan", "input")
ADDRESS_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}


def set_elements(peers: Sequence[Peer], zones: Zones) -> dict[str, list[tuple[object, str]]]:
    """Every set's elements as (value, comment), from the enabled peers' firewall choices."""
    sets: dict[str, list] = {f"{kind}{v}": [] for kind in SET_KINDS for v in (4, 6)}
    for peer in sorted(peers, key=lambda p: p.name):
        if not peer.enabled:
            continue
        for version in (4, 6):
            remote = _networks(peer.remote_networks, version)
            local = _networks(peer.local_networks, version)
            for choice in peer.firewall:
                label = _comment(f"peer {peer.name}: {CHOICE_LABELS.get(choice, choice)}")
                if choice == "forward_lan":
                    sets[f"lan{version}"] += [({"concat": [_prefix(r), _prefix(l)]}, label)
                                              for r in remote for l in local]
                elif choice == "forward_wan" and zones.wan:
                    sets[f"wan{version}"] += [(_prefix(r), label) for r in remote]
                elif choice == "input":
                    sets[f"input{version}"] += [(_prefix(r), label) for r in remote]
    return sets


def _prefix(network: tuple[int, str, int]) -> dict:
    return {"prefix": {"addr": network[1], "len": network[2]}}


def _set_rules(zones: Zones) -> list[tuple[str, list, str]]:
    """The rules that look tunnel traffic up in the peers' sets: the same few for any number."""
    accept = {"accept": None}
    rules = []
    for v in (4, 6):
        pair = {"concat": [_addr(v, "saddr"), _addr(v, "daddr")]}
        out = [_match({"meta": {"key": "oifname"}}, _names(zones.lan))] if zones.lan else []
        rules.append(("tunnel_forward", [_match(pair, f"@lan{v}")] + out + [accept],
                      f"peers' remote to local networks, out to the LAN (set lan{v})"))
        if zones.wan:
            rules.append(("tunnel_forward", [_match(_addr(v, "saddr"), f"@wan{v}"),
                                             _match({"meta": {"key": "oifname"}}, _names(zones.wan)),
                                             accept],
                          f"peers' remote networks, out to the WAN (set wan{v})"))
        rules.append(("tunnel_input", [_match(_addr(v, "saddr"), f"@input{v}"), accept],
                      f"peers' remote networks, to the router itself (set input{v})"))
    return rules


def _base_chain(name: str, hook: str) -> dict:
    return {"family": FAMILY, "table": TABLE, "name": name, "type": "filter", "hook": hook,
            "prio": PRIORITY, "policy": "accept"}


def _tunnel_entry(base: str, target: str, zones: Zones) -> list[tuple[str, list, str]]:
    """The only way into the judging chains: traffic that came out of a tunnel. All else passes."""
    rules = [(base, [_match({"meta": {"key": "ipsec"}}, True), {"jump": {"target": target}}],
              "from an IPsec tunnel (kernel IPsec policy)")]
    if zones.tunnel:
        rules.append((base, [_match({"meta": {"key": "iifname"}}, _names(zones.tunnel)),
                             {"jump": {"target": target}}], "from an IPsec tunnel interface"))
    return rules


def rules(zones: Zones) -> list[tuple[str, list, str]]:
    """Every rule of the table, in order, as (chain, expressions, comment)."""
    ordered = _tunnel_entry("forward", "tunnel_forward", zones) \
        + _tunnel_entry("input", "tunnel_input", zones)
    allowed = _set_rules(zones)
    for chain in ("tunnel_forward", "tunnel_input"):
        ordered.append((chain, [_match({"ct": {"key": "state"}}, ["established", "related"], "in"),
                                {"accept": None}], "replies to connections made from this side"))
        ordered += [r for r in allowed if r[0] == chain]
        ordered.append((chain, [{"counter": None}, {"drop": None}],
                        "not allowed by any peer's firewall choice"))
    return ordered


def fingerprint(ordered: list) -> str:
    return hashlib.sha256(json.dumps(ordered, sort_keys=True).encode()).hexdigest()[:16]


def build_ruleset(peers: Sequence[Peer], zones: Zones) -> dict:
    """One transaction: ensure the table exists, delete it, and recreate it whole.

    `add table` first makes `delete table` safe when the table is missing (first start); nft applies
    the list atomically, so the router never sees the table half-built or briefly absent.
    The fingerprint of the rules and every set element rides in the last rule's comment, so
    `firewall.py` can tell an unchanged table.
    """
    ordered = rules(zones)
    sets = set_elements(peers, zones)
    last_chain, last_exprs, last_comment = ordered[-1]
    ordered[-1] = (last_chain, last_exprs,
                   f"{last_comment} [ruleset {fingerprint([ordered, sets])}]")
    table = {"family": FAMILY, "name": TABLE}
    commands = [{"add": {"table": table}}, {"delete": {"table": table}}, {"add": {"table": table}}]
    for name in ("forward", "input"):
        commands.append({"add": {"chain": _base_chain(name, name)}})
    for name in ("tunnel_forward", "tunnel_input"):
        commands.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
    for name, elements in sets.items():
        kind, version = name[:-1], int(name[-1])
        address = ADDRESS_TYPES[version]
        commands.append({"add": {"set": {
            "family": FAMILY, "table": TABLE, "name": name, "flags": ["interval"],
            "type": [address, address] if kind == "lan" else address}}})
        if elements:
            commands.append({"add": {"element": {
                "family": FAMILY, "table": TABLE, "name": name,
                "elem": [{"elem": {"val": value, "comment": comment}} for value, comment in elements]}}})
    for chain, exprs, comment in ordered:
        commands.append({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain,
                                          "expr": exprs, "comment": comment}}})
    return {"nftables": commands}


def layout(ruleset: dict) -> list[tuple[str, str]]:
    """(chain, comment) of every rule, in order: what an unchanged table must still show."""
    found = []
    for item in ruleset.get("nftables", []):
        rule = item.get("rule") or item.get("add", {}).get("rule")
        if rule and rule.get("table") == TABLE and rule.get("family") == FAMILY:
            found.append((rule["chain"], rule.get("comment", "")))
    return found


def chains(ruleset: dict) -> list[tuple]:
    """(name, hook, priority, policy) of every chain, listed or to be added."""
    found = []
    for item in ruleset.get("nftables", []):
        chain = item.get("chain") or item.get("add", {}).get("chain")
        if chain and chain.get("table") == TABLE and chain.get("family") == FAMILY:
            found.append((chain["name"], chain.get("hook"), chain.get("prio"), chain.get("policy")))
    return sorted(found)
