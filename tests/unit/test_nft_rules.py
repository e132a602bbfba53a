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


def peer_rules_of(ruleset):
    return [(r["chain"], r["expr"], r["comment"]) for r in
            (c["add"]["rule"] for c in ruleset["nftables"] if "rule" in c.get("add", {}))
            if r["comment"].startswith("peer ")]


def test_transaction_replaces_only_the_ui_table():
    commands = nft_rules.build_ruleset([peer()], ZONES)["nftables"]
    table = {"family": "inet", "name": "webui_ipsec"}
    assert commands[:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                            {"add": {"table": table}}]
    for command in commands[3:]:
        (verb, body), = command.items()
        (_kind, obj), = body.items()
        assert (verb, obj["family"], obj["table"]) == ("add", "inet", "webui_ipsec")


def test_forward_lan_allows_remote_to_local_networks_out_of_lan_interfaces():
    assert peer_rules_of(nft_rules.build_ruleset([peer()], ZONES)) == [(
        "tunnel_forward",
        [match("ip saddr", prefix("203.0.113.0", 24)), match("ip daddr", prefix("198.51.100.0", 24)),
         match("oifname", "lan0"), ACCEPT],
        "peer hq: forward to LAN")]


def test_forward_wan_and_input_with_two_networks_and_ipv6():
    hq = peer(firewall=("forward_wan", "input"), remote=("203.0.113.0/25", "203.0.113.128/25",
                                                         "2001:db8:1::/48"))
    source4 = match("ip saddr", {"set": [prefix("203.0.113.0", 25), prefix("203.0.113.128", 25)]})
    source6 = match("ip6 saddr", prefix("2001:db8:1::", 48))
    wan = match("oifname", {"set": ["wan0", "wan1"]})
    assert peer_rules_of(nft_rules.build_ruleset([hq], ZONES)) == [
        ("tunnel_forward", [source4, wan, ACCEPT], "peer hq: forward to WAN"),
        ("tunnel_forward", [source6, wan, ACCEPT], "peer hq: forward to WAN"),
        ("tunnel_input", [source4, ACCEPT], "peer hq: reach the router"),
        ("tunnel_input", [source6, ACCEPT], "peer hq: reach the router"),
    ]


def test_no_rule_without_a_choice_a_wan_list_or_an_enabled_peer():
    peers = [peer("a", firewall=()), peer("b", firewall=("forward_wan",)),
             peer("c", enabled=False)]
    assert peer_rules_of(nft_rules.build_ruleset(peers, nft_rules.Zones(lan=("lan0",)))) == []


def test_tunnel_traffic_enters_judging_chains_by_policy_or_interface_and_ends_in_drop():
    ordered = nft_rules.rules([], ZONES)
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
    (_chain, _exprs, comment), = peer_rules_of(nft_rules.build_ruleset([odd], ZONES))
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
