"""The nftables builder: peers' firewall choices -> one JSON transaction, compared as plain data."""
import pytest

from webui.drivers import nft_rules
from webui.drivers.firewall import clean_error, interface_list
from webui.peers import Peer

ZONES = nft_rules.Zones(lan=("lan0",), wan=("wan0", "wan1"), tunnel=("ipsec0",))
ACCEPT = {"accept": None}


def peer(name="hq", firewall=("forward_lan",), remote=("203.0.113.0/24",),
         local=("198.51.100.0/24",), enabled=True):
    return Peer(name, "192.0.2.1", "192.0.2.2", tuple(local), tuple(remote), "secret",
                firewall=tuple(firewall), enabled=enabled)


def prefix(addr, length):
    return {"prefix": {"addr": addr, "len": length}}


def match(key, right, op="=="):
    left = {"meta": {"key": key}} if key in ("iifname", "oifname", "ipsec") else \
        {"payload": {"protocol": key.split()[0], "field": key.split()[1]}}
    return {"match": {"op": op, "left": left, "right": right}}


def elements_of(ruleset):
    """{set name: [(value, comment)]} of the non-empty sets the transaction fills."""
    return {e["name"]: [(x["elem"]["val"], x["elem"]["comment"]) for x in e["elem"]]
            for e in (c["add"]["element"] for c in ruleset["nftables"] if "element" in c.get("add", {}))}


def rule_lines(ruleset):
    return [(r["chain"], r["expr"], r["comment"]) for r in
            (c["add"]["rule"] for c in ruleset["nftables"] if "rule" in c.get("add", {}))]


def test_transaction_replaces_only_the_ui_table():
    commands = nft_rules.build_ruleset([peer()], ZONES)["nftables"]
    table = {"family": "inet", "name": "webui_ipsec"}
    assert commands[:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                            {"add": {"table": table}}]
    for command in commands[3:]:
        (verb, body), = command.items()
        (_kind, obj), = body.items()
        assert (verb, obj["family"], obj["table"]) == ("add", "inet", "webui_ipsec")


def test_forward_lan_puts_remote_local_pairs_in_the_lan_set():
    ruleset = nft_rules.build_ruleset([peer()], ZONES)
    assert elements_of(ruleset) == {"lan4": [
        ({"concat": [prefix("203.0.113.0", 24), prefix("198.51.100.0", 24)]}, "peer hq: forward to LAN")]}
    pair = {"match": {"op": "==", "left": {"concat": [
        {"payload": {"protocol": "ip", "field": "saddr"}},
        {"payload": {"protocol": "ip", "field": "daddr"}}]}, "right": "@lan4"}}
    assert ("tunnel_forward", [pair, match("oifname", "lan0"), ACCEPT],
            "peers' remote to local networks, out to the LAN (set lan4)") in rule_lines(ruleset)


def test_forward_wan_and_input_with_two_networks_and_ipv6():
    hq = peer(firewall=("forward_wan", "input"), remote=("203.0.113.0/25", "203.0.113.128/25",
                                                         "2001:db8:1::/48"))
    ruleset = nft_rules.build_ruleset([hq], ZONES)
    four = [prefix("203.0.113.0", 25), prefix("203.0.113.128", 25)]
    assert elements_of(ruleset) == {
        "wan4": [(p, "peer hq: forward to WAN") for p in four],
        "wan6": [(prefix("2001:db8:1::", 48), "peer hq: forward to WAN")],
        "input4": [(p, "peer hq: reach the router") for p in four],
        "input6": [(prefix("2001:db8:1::", 48), "peer hq: reach the router")],
    }
    assert ("tunnel_forward", [match("ip6 saddr", "@wan6"), match("oifname", {"set": ["wan0", "wan1"]}),
                               ACCEPT], "peers' remote networks, out to the WAN (set wan6)") in rule_lines(ruleset)
    assert ("tunnel_input", [match("ip saddr", "@input4"), ACCEPT],
            "peers' remote networks, to the router itself (set input4)") in rule_lines(ruleset)


def test_every_set_is_declared_with_its_type_and_interval_flag():
    sets = {c["add"]["set"]["name"]: c["add"]["set"] for c in nft_rules.build_ruleset([], ZONES)["nftables"]
            if "set" in c.get("add", {})}
    assert sorted(sets) == ["input4", "input6", "lan4", "lan6", "wan4", "wan6"]
    assert sets["lan6"]["type"] == ["ipv6_addr", "ipv6_addr"] and sets["wan4"]["type"] == "ipv4_addr"
    assert all(s["flags"] == ["interval"] for s in sets.values())


def test_the_rules_do_not_grow_with_peers():
    few = nft_rules.build_ruleset([peer()], ZONES)
    many = nft_rules.build_ruleset([peer(f"p{i}", remote=(f"10.{i}.0.0/16",)) for i in range(50)], ZONES)
    assert [r[:1] for r in rule_lines(few)] == [r[:1] for r in rule_lines(many)]
    assert len(elements_of(many)["lan4"]) == 50


def test_no_element_without_a_choice_a_wan_list_or_an_enabled_peer():
    peers = [peer("a", firewall=()), peer("b", firewall=("forward_wan",)),
             peer("c", enabled=False)]
    assert elements_of(nft_rules.build_ruleset(peers, nft_rules.Zones(lan=("lan0",)))) == {}


def test_tunnel_traffic_enters_judging_chains_by_policy_or_interface_and_ends_in_drop():
    ordered = nft_rules.rules(ZONES)
    assert ordered[:2] == [
        ("forward", [match("ipsec", True), {"jump": {"target": "tunnel_forward"}}],
         "from an IPsec tunnel (kernel IPsec policy)"),
        ("forward", [match("iifname", "ipsec0"), {"jump": {"target": "tunnel_forward"}}],
         "from an IPsec tunnel interface")]
    for chain in ("tunnel_forward", "tunnel_input"):
        own = [exprs for c, exprs, _ in ordered if c == chain]
        assert own[0][-1] == ACCEPT and own[0][0]["match"]["right"] == ["established", "related"]
        assert own[-1] == [{"counter": None}, {"drop": None}]


def test_base_chains_accept_by_default_just_before_filter():
    assert nft_rules.chains(nft_rules.build_ruleset([], ZONES)) == [
        ("forward", "forward", -5, "accept"), ("input", "input", -5, "accept"),
        ("tunnel_forward", None, None, None), ("tunnel_input", None, None, None)]


def test_fingerprint_follows_the_rules():
    first = nft_rules.build_ruleset([peer()], ZONES)
    assert nft_rules.build_ruleset([peer()], ZONES) == first
    other = nft_rules.build_ruleset([peer(firewall=("forward_wan",))], ZONES)
    assert nft_rules.layout(other)[-1] != nft_rules.layout(first)[-1]
    assert "[ruleset " in nft_rules.layout(first)[-1][1]


def test_peer_names_stay_in_comments_and_long_ones_are_cut():
    odd = peer(name='x"; flush ruleset; ' + "y" * 200)
    ((_value, comment),) = elements_of(nft_rules.build_ruleset([odd], ZONES))["lan4"]
    assert comment.startswith('peer x"; flush ruleset;') and comment.endswith("...")
    assert len(comment.encode()) <= nft_rules.COMMENT_MAX


@pytest.mark.parametrize("value, expected", [
    ("lan0, lan1,", ("lan0", "lan1")), (["wan0"], ("wan0",)), ("", ()), (None, ())])
def test_interface_list(value, expected):
    assert interface_list(value) == expected


def test_clean_error_drops_echoed_input():
    stderr = ('internal:0:0-0: Error: Could not process rule: No such file or directory\n'
              '{"nftables": [{"add": ...}]}\n^^^^^\n')
    assert clean_error(stderr) == "Could not process rule: No such file or directory"
    assert clean_error("") == "nft failed without saying why"


def test_a_comment_that_fits_is_kept_whole_and_a_longer_one_is_cut_to_fit():
    prefix = "peer : forward to LAN"
    fits = peer(name="n" * (nft_rules.COMMENT_MAX - len(prefix)))
    ((_value, comment),) = elements_of(nft_rules.build_ruleset([fits], ZONES))["lan4"]
    assert comment == f"peer {fits.name}: forward to LAN"
    assert len(comment.encode()) == nft_rules.COMMENT_MAX
    longer = peer(name="n" * (nft_rules.COMMENT_MAX - len(prefix) + 1))
    ((_value, comment),) = elements_of(nft_rules.build_ruleset([longer], ZONES))["lan4"]
    assert comment == f"peer {longer.name}: forward to LAN"[:nft_rules.COMMENT_MAX - 3] + "..."
    assert len(comment.encode()) == nft_rules.COMMENT_MAX


def test_a_comment_is_never_cut_inside_a_character():
    # "é" is two bytes; placed so that the cut falls between them
    name = "n" * (nft_rules.COMMENT_MAX - 3 - len("peer ") - 1) + "é" * 10
    ((_value, comment),) = elements_of(nft_rules.build_ruleset([peer(name=name)], ZONES))["lan4"]
    assert comment == "peer " + name[:nft_rules.COMMENT_MAX - 3 - len("peer ") - 1] + "..."
    assert len(comment.encode()) <= nft_rules.COMMENT_MAX


def test_an_administrator_reads_what_each_judging_rule_is_for():
    comments = [c for chain, c in nft_rules.layout(nft_rules.build_ruleset([], ZONES))
                if chain.startswith("tunnel_")]
    assert comments[0] == "replies to connections made from this side"
    assert comments[-1].startswith("not allowed by any peer's firewall choice [ruleset ")
    assert comments.count("replies to connections made from this side") == 2
    assert comments.count("not allowed by any peer's firewall choice") == 1  # the other has the fingerprint


def test_chains_and_layout_read_the_table_as_nft_lists_it():
    """`nft -j list table` answers with bare objects, not add commands; other tables are ignored."""
    listed = {"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "webui_ipsec", "handle": 7}},
        {"chain": {"family": "inet", "table": "webui_ipsec", "name": "input", "handle": 1,
                   "type": "filter", "hook": "input", "prio": -5, "policy": "accept"}},
        {"chain": {"family": "inet", "table": "webui_ipsec", "name": "tunnel_input", "handle": 2}},
        {"chain": {"family": "inet", "table": "fw4", "name": "input", "hook": "input"}},
        {"rule": {"family": "inet", "table": "webui_ipsec", "chain": "tunnel_input",
                  "handle": 3, "expr": [], "comment": "why"}},
        {"rule": {"family": "inet", "table": "webui_ipsec", "chain": "input", "handle": 4,
                  "expr": []}},
        {"rule": {"family": "ip", "table": "webui_ipsec", "chain": "input", "expr": []}},
    ]}
    assert nft_rules.chains(listed) == [("input", "input", -5, "accept"),
                                        ("tunnel_input", None, None, None)]
    assert nft_rules.layout(listed) == [("tunnel_input", "why"), ("input", "")]
    assert nft_rules.chains({}) == [] and nft_rules.layout({}) == []


def test_the_fingerprint_does_not_depend_on_the_order_of_keys():
    assert nft_rules.fingerprint([{"a": 1, "b": [2, 3]}]) == nft_rules.fingerprint([{"b": [2, 3], "a": 1}])
    assert nft_rules.fingerprint([{"a": 1}]) != nft_rules.fingerprint([{"a": 2}])
