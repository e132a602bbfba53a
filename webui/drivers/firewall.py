"""The firewall driver: keeps the UI's own nftables table (`inet webui_ipsec`) equal to the peers.

The table is replaced whole in one `nft -j -f -` transaction (built by `nft_rules`); nothing outside
it is read for decisions or ever written. nft runs as an argv list with the JSON on stdin, inside the
router's namespace through `ip netns exec` when one is configured.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
from typing import Sequence

from webui.drivers import CommandFailed, ConfigError, DriverError, child_env
from webui.drivers import nft_rules
from webui.peers import Peer

log = logging.getLogger(__name__)


# A Linux interface name as nft gets it: at most 15 characters, none that nft reads specially
# ("*" would be a wildcard matching every interface, quotes or spaces would break the rule).
_INTERFACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def interface_list(value, setting: str = "interfaces") -> tuple[str, ...]:
    """A config value "lan0, lan1" (environment) or ["lan0", "lan1"] (config file) as a tuple;
    ConfigError naming `setting` when an item is not an interface name."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    names = tuple(str(i).strip() for i in items if str(i).strip())
    for name in names:
        if not _INTERFACE_RE.fullmatch(name):
            raise ConfigError(f"WEBUI_{setting}: {name!r} is not an interface name (1 to 15 "
                              "letters, digits, '.', '_' or '-'; no wildcards).")
    return names


def clean_error(stderr: str) -> str:
    """nft's complaint without the echoed input and caret lines, which can be the whole JSON."""
    lines = [line.split("Error:", 1)[1].strip() for line in stderr.splitlines() if "Error:" in line]
    lines = list(dict.fromkeys(lines))
    return "; ".join(lines) or stderr.strip()[:300] or "nft failed without saying why"


class NftFirewall:
    """Turns peers' firewall choices into the rules of the UI's nftables table."""

    def __init__(self, netns: str = "", lan: Sequence[str] = (), wan: Sequence[str] = (),
                 tunnel: Sequence[str] = ("ipsec0",), nft: str = "nft", timeout: float = 10.0):
        self.netns = netns
        self.zones = nft_rules.Zones(lan=tuple(lan), wan=tuple(wan), tunnel=tuple(tunnel))
        self.nft = nft
        self.timeout = timeout
        self._loaded = ""  # what this process last saw the table hold (a digest), "" = unknown

    @classmethod
    def from_config(cls, config) -> NftFirewall:
        return cls(netns=config.get("NETNS", ""),
                   lan=interface_list(config.get("LAN_INTERFACES", ""), "LAN_INTERFACES"),
                   wan=interface_list(config.get("WAN_INTERFACES", ""), "WAN_INTERFACES"),
                   tunnel=interface_list(config.get("IPSEC_INTERFACES", "ipsec0"),
                                         "IPSEC_INTERFACES"))

    def apply(self, peers: Sequence[Peer], verify: bool = False) -> bool:
        """Make the table match `peers`; False when it already did and nothing was touched.

        Listing the table to compare costs as much as loading it (docs/PERFORMANCE.md, "Measured
        by hand"), so the digest of what this process last loaded stands in for it: the same
        rules again are skipped, different ones are loaded straight away. `verify` (start-up,
        reconcile) lists and compares whatever the digest says, which also repairs a hand edit."""
        ruleset = nft_rules.build_ruleset(peers, self.zones)
        # The last rule carries build_ruleset's fingerprint of every rule (in its comment).
        digest = json.dumps(ruleset["nftables"][-1], sort_keys=True)
        if not verify and self._loaded:
            if digest == self._loaded:
                return False
        elif self._unchanged(ruleset):
            self._loaded = digest
            return False
        self._loaded = ""  # unknown until nft has answered
        self.load(ruleset)
        self._loaded = digest
        log.info("firewall table %s replaced for %d peer(s)", nft_rules.TABLE, len(peers))
        return True

    def load(self, ruleset: dict) -> None:
        """Send one transaction; on failure nft has applied none of it and the old table stands."""
        result = self._run(["-j", "-f", "-"], stdin=json.dumps(ruleset))
        if result.returncode != 0:
            raise CommandFailed(f"The firewall rules were not applied: {clean_error(result.stderr)}")

    def current(self) -> dict | None:
        """The table as nft lists it (JSON), or None when it does not exist."""
        result = self._run(["-j", "list", "table", nft_rules.FAMILY, nft_rules.TABLE])
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return None
            raise CommandFailed(f"Cannot list the firewall table: {clean_error(result.stderr)}")
        return json.loads(result.stdout)

    def _unchanged(self, ruleset: dict) -> bool:
        # The fingerprint (in the last rule's comment) covers every expression; the chain and
        # comment comparison catches a rule someone added, removed or reordered by hand.
        listed = self.current()
        return listed is not None and nft_rules.layout(listed) == nft_rules.layout(ruleset) \
            and nft_rules.chains(listed) == nft_rules.chains(ruleset)

    def _argv(self, args: list[str]) -> list[str]:
        if self.netns:
            return ["ip", "netns", "exec", self.netns, self.nft, *args]
        return [self.nft, *args]

    def _run(self, args: list[str], stdin: str = "") -> subprocess.CompletedProcess:
        argv = self._argv(args)
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout, check=False, env=child_env())
        except FileNotFoundError:
            raise DriverError(f"{argv[0]!r} is not installed; the firewall cannot be managed.")
        except subprocess.TimeoutExpired:
            raise DriverError(f"nft did not finish within {self.timeout:g} s.")
