"""The firewall driver against real nftables: a remote host sends through a forwarding router to a
LAN host. The router's `ipsec0` is a veth to the remote namespace, so `iifname ipsec0` matches
exactly as with strongSwan's kernel-libipsec TUN."""
import json

import pytest

from tests.integration.wuinet import PREFIX, delete_namespaces, make_namespaces, needs_root, ping, run
from webui.drivers import CommandFailed
from webui.drivers import nft_rules
from webui.drivers.firewall import NftFirewall, clean_error
from webui.peers import Peer

pytestmark = needs_root
REMOTE, ROUTER, LAN = f"{PREFIX}-rem", f"{PREFIX}-rtr", f"{PREFIX}-lan"
# Stands in for the router's own firewall (fw4 or hand-written): must never change.
MAIN_FIREWALL = """
table inet mainfw {
    set trusted { type ipv4_addr; elements = { 192.0.2.9 } }
    chain forward { type filter hook forward priority filter; policy accept; counter; }
    chain input { type filter hook input priority filter; policy accept; ip saddr @trusted accept; }
}
"""


class ListedFirewall(NftFirewall):
    """The driver, and the table as nft prints it for a person: what these tests read back."""

    def describe(self) -> tuple[str, ...]:
        """The table's rules as nft prints them, one line each; () when absent."""
        result = self._run(["list", "table", nft_rules.FAMILY, nft_rules.TABLE])
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return ()
            raise CommandFailed(f"Cannot list the firewall table: {clean_error(result.stderr)}")
        return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())


@pytest.fixture(scope="module")
def site():
    make_namespaces(REMOTE, ROUTER, LAN)
    try:
        ip = lambda *a: run("ip", *a)  # noqa: E731
        ip("link", "add", "ipsec0", "netns", ROUTER, "type", "veth", "peer", "name", "eth0",
           "netns", REMOTE)
        ip("link", "add", "lan0", "netns", ROUTER, "type", "veth", "peer", "name", "eth0",
           "netns", LAN)
        for ns, dev, addr, via in ((REMOTE, "eth0", "203.0.113.10/24", "203.0.113.1"),
                                   (LAN, "eth0", "198.51.100.10/24", "198.51.100.1"),
                                   (ROUTER, "ipsec0", "203.0.113.1/24", None),
                                   (ROUTER, "lan0", "198.51.100.1/24", None)):
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            if via:
                ip("-n", ns, "route", "add", "default", "via", via)
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ROUTER)
        run("nft", "-f", "-", ns=ROUTER, stdin=MAIN_FIREWALL)
        assert ping(REMOTE, "198.51.100.10"), "the lab itself does not forward"
        yield ListedFirewall(netns=ROUTER, lan=("lan0",), wan=("wan0",))
    finally:
        delete_namespaces([REMOTE, ROUTER, LAN])


def hq(firewall):
    return Peer("hq", "192.0.2.1", "192.0.2.2", ("198.51.100.0/24",), ("203.0.113.0/24",), "k",
                firewall=tuple(firewall))


def ruleset():
    """Everything nft holds, with handles but without counter values (-s), which traffic moves."""
    return json.loads(run("nft", "-j", "-s", "list", "ruleset", ns=ROUTER).stdout)["nftables"]


def main_forward_packets():
    listed = json.loads(run("nft", "-j", "list", "chain", "inet", "mainfw", "forward",
                            ns=ROUTER).stdout)["nftables"]
    return next(i["rule"]["expr"][0]["counter"]["packets"] for i in listed if "rule" in i)


def outside_ui_table(items):
    return [i for i in items
            if next(iter(i.values())).get("table", next(iter(i.values())).get("name"))
            != nft_rules.TABLE]


def test_forward_lan_decides_whether_the_remote_site_reaches_the_lan(site):
    others = outside_ui_table(ruleset())
    site.apply([hq(["forward_lan"])])
    seen_by_main = main_forward_packets()
    assert ping(REMOTE, "198.51.100.10")
    # our accept is not final: the router's own forward chain still judged the packets
    assert main_forward_packets() >= seen_by_main + 2
    site.apply([hq(["forward_wan"])])
    assert not ping(REMOTE, "198.51.100.10")
    assert ping(LAN, "203.0.113.10")  # the LAN may still start connections; replies come back
    assert not ping(REMOTE, "198.51.100.1")  # nor may it reach the router without "input"
    site.apply([hq(["forward_lan", "input"])])
    assert ping(REMOTE, "198.51.100.10") and ping(REMOTE, "198.51.100.1")
    assert outside_ui_table(ruleset()) == others  # the main firewall is untouched, handles and all


def test_reapplying_the_same_rules_changes_nothing(site):
    assert site.apply([hq(["forward_lan"])]) in (True, False)
    before = ruleset()
    assert site.apply([hq(["forward_lan"])]) is False
    assert ruleset() == before  # same handles: nothing was deleted and re-added
    assert any("peer hq: forward to LAN" in line for line in site.describe())


def test_a_hand_edit_of_the_ui_table_is_repaired(site):
    site.apply([hq(["forward_lan"])])
    run("nft", "add", "rule", "inet", nft_rules.TABLE, "tunnel_forward", "accept", ns=ROUTER)
    assert site.apply([hq(["forward_lan"])]) is False  # this process loaded these rules: no listing
    assert site.apply([hq(["forward_lan"])], verify=True) is True  # start-up, reconcile
    assert not any(line == "accept" for line in site.describe())


def test_failed_nft_run_keeps_the_previous_table_and_says_why(site):
    site.apply([hq(["forward_lan"])])
    before = ruleset()
    broken = nft_rules.build_ruleset([hq(["forward_wan"])], site.zones)
    broken["nftables"].append({"add": {"rule": {
        "family": "inet", "table": nft_rules.TABLE, "chain": "tunnel_forward",
        "expr": [{"jump": {"target": "no_such_chain"}}]}}})
    with pytest.raises(CommandFailed, match="No such file or directory") as failure:
        site.load(broken)
    assert "nftables" not in str(failure.value)  # nft's echo of our JSON is cleaned away
    assert ruleset() == before
    assert ping(REMOTE, "198.51.100.10")  # still the old rules: forward_lan


def test_first_apply_creates_the_table_and_describe_shows_it(site):
    run("nft", "delete", "table", "inet", nft_rules.TABLE, ns=ROUTER, check=False)
    assert site.describe() == ()
    assert site.apply([]) is True
    lines = site.describe()
    assert lines[0] == f"table inet {nft_rules.TABLE} {{"
    assert any("drop comment" in line for line in lines)
    assert not ping(REMOTE, "198.51.100.10")  # no peers: nothing from a tunnel is allowed
