"""The real drivers: strongSwan over VICI, the kernel over netlink, the firewall through nftables."""
from __future__ import annotations

import shlex
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


def restart_command(config) -> list[str] | None:
    """WEBUI_IPSEC_RESTART_COMMAND as an argument list (a JSON list or a plain string split like a
    shell would, but never run by one), else the host's usual command."""
    from webui.drivers.strongswan import default_restart_command
    value = config.get("IPSEC_RESTART_COMMAND")
    if not value:
        return default_restart_command()
    if isinstance(value, str):
        return shlex.split(value)
    return [str(arg) for arg in value]


def make(config) -> Drivers:
    from webui.drivers.strongswan import DEFAULT_SOCKET, ViciDriver
    ipsec = ViciDriver(socket_path=config.get("VICI_SOCKET", DEFAULT_SOCKET),
                       data_dir=config.get("DATA_DIR", "."),
                       restart_command=restart_command(config),
                       timeout=float(config.get("VICI_TIMEOUT", 5)))
    if config.get("VICI_WATCH_FAILURES", True):
        ipsec.watch(wait=0)  # never hold up app start-up when charon is down
    return Drivers(ipsec=ipsec, kernel=_NotYet("Kernel inspection"),
                   firewall=_NotYet("The firewall"))
