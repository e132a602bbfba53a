"""The driver contract: the fake and the real drivers have the Protocols' methods, with the same
signatures, so the service can call either without asking what it has."""
import inspect

import pytest

from webui.drivers import FirewallDriver, IPsecDriver, KernelDriver
from webui.drivers.fake import FakeFirewall, FakeIPsec, FakeKernel
from webui.drivers.firewall import NftFirewall
from webui.drivers.kernel import NetlinkDriver
from webui.drivers.strongswan import ViciDriver
from webui.peers import Peer

CONTRACTS = [(IPsecDriver, FakeIPsec, ViciDriver),
             (KernelDriver, FakeKernel, NetlinkDriver),
             (FirewallDriver, FakeFirewall, NftFirewall)]

# Public methods a real driver has beyond its Protocol, and why the service never calls them.
DRIVER_ONLY = {
    NftFirewall: {"from_config",  # how make_drivers builds it from the settings
                  "load", "current", "describe"},  # one nft transaction / listing, for apply()
    ViciDriver: {"monitor"},  # the running monitor, for the integration tests that watch it
}


def peer(name: str) -> Peer:
    return Peer(name=name, local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                psk="x" * 20)


def methods(cls) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def shape(function) -> list[tuple[str, object, object]]:
    """A signature as the caller sees it: names, kinds and defaults (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("protocol, fake, real", CONTRACTS, ids=lambda c: c.__name__)
def test_the_fake_and_the_real_driver_have_the_protocols_methods_and_no_others(protocol, fake, real):
    wanted = methods(protocol)
    assert methods(fake) == wanted
    assert methods(real) - DRIVER_ONLY.get(real, set()) == wanted


@pytest.mark.parametrize("protocol, fake, real", CONTRACTS, ids=lambda c: c.__name__)
def test_each_method_takes_the_same_arguments_in_the_fake_the_real_driver_and_the_protocol(
        protocol, fake, real):
    for name in methods(protocol):
        expected = shape(getattr(protocol, name))
        assert shape(getattr(fake, name)) == expected, f"{fake.__name__}.{name}"
        assert shape(getattr(real, name)) == expected, f"{real.__name__}.{name}"


def test_the_fake_filters_tunnel_states_by_name_as_the_real_driver_does():
    ipsec = FakeIPsec()
    for name in ("a", "b"):
        ipsec.apply(peer(name))
    assert set(ipsec.tunnel_states()) == {"a", "b"}
    assert set(ipsec.tunnel_states(["b"])) == {"b"}


def test_the_fake_firewall_says_whether_it_changed_anything():
    firewall = FakeFirewall()
    assert firewall.apply([]) is False
    assert firewall.apply([peer("a")]) is True
    assert firewall.apply([peer("a")]) is False
