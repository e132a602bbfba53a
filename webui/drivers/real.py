"""The real drivers: strongSwan over VICI, the kernel over netlink, the firewall through nftables."""
from __future__ import annotations

from typing import Sequence

from webui.drivers import Drivers, NotAvailable
from webui.peers import Peer


class _NotYet:
    """Stands in for a real driver that is not built yet: every call says so plainly."""

    def __init__(self, what: str):
        self.what = what

    def __getattr__(self, name):
        def unavailable(*args, **kwargs):
            raise NotAvailable(f"{self.what} is not available yet in this build.")
        return unavailable

    def apply(self, peers: Sequence[Peer]) -> None:  # firewall: nothing to apply yet
        raise NotAvailable(f"{self.what} is not available yet in this build.")


def make(config) -> Drivers:
    # Both imports are light: pyroute2 is loaded on the first kernel call, not here.
    from webui.drivers.firewall import NftFirewall, interface_list
    from webui.drivers.kernel import NetlinkDriver
    kernel = NetlinkDriver(netns=config.get("NETNS", ""),
                           ipsec_interfaces=interface_list(config.get("IPSEC_INTERFACES", "ipsec0")))
    return Drivers(ipsec=_NotYet("strongSwan control"), kernel=kernel,
                   firewall=NftFirewall.from_config(config))
