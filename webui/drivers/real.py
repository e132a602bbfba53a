"""The real drivers: strongSwan over VICI, the kernel over netlink, the firewall through nftables."""
from __future__ import annotations

import shlex


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


def make(config):
    # All three imports are light: vici's and pyroute2's weight comes on first use, not here.
    from webui.drivers import Drivers
    from webui.drivers.firewall import NftFirewall, interface_list
    from webui.drivers.kernel import NetlinkDriver
    from webui.drivers.strongswan import DEFAULT_SOCKET, ViciDriver
    ipsec = ViciDriver(socket_path=config.get("VICI_SOCKET", DEFAULT_SOCKET),
                       data_dir=config.get("DATA_DIR", "."),
                       restart_command=restart_command(config),
                       timeout=float(config.get("VICI_TIMEOUT", 5)))
    kernel = NetlinkDriver(netns=config.get("NETNS", ""),
                           ipsec_interfaces=interface_list(config.get("IPSEC_INTERFACES", "ipsec0")))
    return Drivers(ipsec=ipsec, kernel=kernel, firewall=NftFirewall.from_config(config))
