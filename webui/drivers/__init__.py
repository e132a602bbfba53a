"""The driver layer: the only code that talks to strongSwan, the kernel and the firewall.

This module holds what every driver shares and what the UI sees of them: the exception tree, the small
frozen result types (plain str/int, never bytes or raw vici dicts), the interfaces, and `make_drivers`,
which picks the real drivers or the fake one from configuration. It imports nothing heavy: vici and
pyroute2 are imported only by the modules that need them, and only when the real drivers are made.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple, Protocol, Sequence

from webui.peers import Peer

# --- Errors --------------------------------------------------------------------------------------


class DriverError(Exception):
    """Something a driver could not do; the message is safe to show to the administrator."""


class DaemonUnavailable(DriverError):
    """The daemon (charon) cannot be reached: no socket, refused, or timed out."""


class CommandFailed(DriverError):
    """The daemon or tool answered and refused, or a rule it enforces refused first (an impossible
    proposal, webui/peers.py). `field` names the peer field at fault, if known; `reason` is the
    refusal in charon's (or the rule's) own words, kept as data so that whoever shows it next to
    the field needs to strip nothing. The message says the same for a log or a step."""

    def __init__(self, message: str, field: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.field = field
        self.reason = message if reason is None else reason


def child_env() -> dict[str, str]:
    """The environment of a command a driver runs (nft, the restart command): a search path and
    the C locale (messages read as English), nothing of the UI's own (its secrets included)."""
    import os
    return {"PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


class ConfigError(ValueError):
    """A setting the drivers cannot work with; the message names the setting."""


# --- strongSwan ----------------------------------------------------------------------------------


# Slots: the monitor's snapshot holds one of these per SA charon has, a thousand on a busy router.
@dataclass(frozen=True, slots=True)
class ChildSA:
    name: str
    state: str  # INSTALLED, REKEYING, ...
    mode: str = ""
    protocol: str = ""  # ESP
    encap: bool = False  # UDP-encapsulated
    encryption: str = ""  # e.g. AES_GCM_16-256
    integrity: str = ""
    dh_group: str = ""
    local_ts: tuple[str, ...] = ()
    remote_ts: tuple[str, ...] = ()
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    installed_for: int | None = None  # seconds
    rekey_in: int | None = None  # seconds
    life_in: int | None = None  # seconds
    spi_in: str = ""  # hex, as charon reports it
    spi_out: str = ""
    unique_id: int = 0  # charon's id of this CHILD_SA (what rekey and terminate name)


@dataclass(frozen=True, slots=True)
class IkeSA:
    name: str  # the connection name
    unique_id: int
    state: str  # CONNECTING, ESTABLISHED, DELETING, ...
    version: int
    local_host: str = ""
    remote_host: str = ""
    local_id: str = ""
    remote_id: str = ""
    initiator: bool = False
    encryption: str = ""
    integrity: str = ""
    prf: str = ""
    dh_group: str = ""
    established_for: int | None = None  # seconds
    rekey_in: int | None = None  # seconds
    reauth_in: int | None = None  # seconds
    children: tuple[ChildSA, ...] = ()
    nat_local: bool = False  # this side is behind a NAT
    nat_remote: bool = False  # the other side is
    nat_forced: bool = False  # UDP encapsulation forced (charon fakes a NAT)


@dataclass(frozen=True)
class Connection:
    """A connection loaded in charon; `managed` when this UI loaded it, else external."""

    name: str
    version: str = ""  # "IKEv1", "IKEv2", "IKEv1/2"
    local_addrs: tuple[str, ...] = ()
    remote_addrs: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    managed: bool = False


@dataclass(frozen=True)
class IPsecStatus:
    connections: tuple[Connection, ...] = ()
    sas: tuple[IkeSA, ...] = ()


@dataclass(frozen=True, slots=True)
class TunnelState:
    """What the per-peer status cell shows."""

    name: str
    state: str  # "down", "connecting", "up"
    established_for: int | None = None  # seconds
    bytes_in: int = 0
    bytes_out: int = 0
    reason: str = ""  # why it is down, when known (e.g. "authentication failed")
    loaded: bool = False
    # Kept by the monitor (webui/drivers/monitor.py); times are wall-clock seconds, 0 = unknown.
    since: float = 0.0  # when it entered this state
    up_since: float = 0.0  # when the IKE SA that carries it was established
    reason_at: float = 0.0
    direction: str = ""  # who initiated the negotiation that failed: "we" or the remote's address
    attempts: int = 0  # negotiations we started since it was last up
    ever_up: bool = False  # it has been up since the UI started
    ike_up: bool = False  # an IKE SA is established (with or without a tunnel)
    local_ts: tuple[str, ...] = ()  # networks the installed CHILD_SAs carry
    remote_ts: tuple[str, ...] = ()
    disconnected: bool = False  # taken down by the admin (Disconnect): not retried until Connect
    retry_at: float = 0.0  # when the monitor initiates it again, if it gave up
    # When it stopped being up (or was first seen not up), kept through failed attempts (down,
    # connecting, down …) so "down since" does not move with each retry; 0 while up.
    down_since: float = 0.0


# Why the admin's own action took a tunnel from its state (Transition.asked): to stay down until
# Connect (Disconnect, Terminate), or to come straight back (Reauthenticate, Rekey, a changed peer
# reloaded). Neither is a flap; only the first is time the tunnel was not meant to be up.
ASKED_DOWN = "down"
ASKED_BACK = "back"


class Transition(NamedTuple):
    """One change of a tunnel's state as the monitor saw it (webui/drivers/monitor.py)."""

    at: float  # wall clock
    old: str  # the monitor's states: "down", "connecting", "ike-up", "up"
    new: str
    reason: str = ""
    asked: str = ""  # "" when nobody here asked for it, else ASKED_DOWN or ASKED_BACK


@dataclass(frozen=True)
class StateSnapshot:
    """Every tunnel's state as the monitor last knew it, and how current that is."""

    version: int = 0  # grows on every change: a poll that has this version needs nothing new
    tunnels: dict[str, TunnelState] = field(default_factory=dict)
    sas: tuple[IkeSA, ...] = ()
    loaded: frozenset[str] = frozenset()
    confirmed_at: float = 0.0  # wall clock: when charon last answered the monitor (0: never)
    # wall clock: when charon listed each tunnel's SAs in `sas` (their ages are as of then)
    listed_at: dict[str, float] = field(default_factory=dict)
    unanswered_since: float = 0.0  # wall clock: charon has not answered since (0: it answers)
    error: str = ""  # why charon is not answering

    @property
    def as_of(self) -> float:
        """When what the tunnels show (counters, ages) was listed: the last full listing, the
        oldest of them; when charon last answered if nothing is listed. Not `confirmed_at`: a
        check that charon answers lists no SA, and "as of" then claimed counters it had not
        read (a fresh-eyes review pinged and saw 0 B "as of" a time after the pings)."""
        return min(self.listed_at.values(), default=0.0) or self.confirmed_at

    @property
    def problem(self) -> str:
        """Why this is not current, in the administrator's words; "" when it is."""
        if not self.unanswered_since:
            return ""
        if not self.confirmed_at:
            return self.error
        when = time.strftime("%H:%M:%S", time.localtime(self.unanswered_since))
        return f"strongSwan has not answered since {when}: {self.error}"


@dataclass(frozen=True)
class LogLine:
    """One line charon logged about a peer (kept by webui/drivers/peer_log.py)."""

    at: float  # wall clock
    level: int  # charon's: 0 the main events, 1 the details
    ike: int  # charon's IKE SA unique id, 0 when the line is about none
    text: str


@dataclass(frozen=True)
class Step:
    """One step of a multi-step operation (Restart IPsec, reconcile), with its outcome."""

    what: str
    ok: bool
    detail: str = ""
    peer: str = ""  # the peer this step was about, when it was about one


class IPsecDriver(Protocol):
    """What the service (webui/apply.py) asks of strongSwan. The fake (webui/drivers/fake.py) and
    the real driver (webui/drivers/strongswan.py) both have exactly these public methods, with
    these signatures: tests/unit/test_driver_contract.py checks it."""

    def status(self) -> IPsecStatus: ...
    def tunnel_states(self, names: Sequence[str] | None = None) -> dict[str, TunnelState]: ...
    def snapshot(self) -> StateSnapshot: ...
    def history(self, name: str) -> list[Transition]: ...
    def counters(self, name: str) -> list[tuple[float, int, int]]: ...
    def apply(self, peer: Peer, previous_name: str | None = None, renew: bool = False) -> None: ...
    def remove(self, name: str) -> None: ...
    def reconcile(self, peers: Sequence[Peer]) -> list[Step]: ...
    def restart(self, peers: Sequence[Peer]) -> list[Step]: ...
    def loaded_this_charon(self) -> bool: ...
    def connect(self, name: str) -> str: ...
    def disconnect(self, name: str) -> str: ...
    def rekey(self, name: str) -> str: ...
    # One SA of the peer `name`, by charon's unique id; refused when the SA is not that peer's.
    def rekey_ike(self, name: str, ike_id: int) -> str: ...
    def reauthenticate(self, name: str, ike_id: int) -> str: ...
    def rekey_child(self, name: str, child_id: int) -> str: ...
    def terminate_child(self, name: str, child_id: int) -> str: ...
    def supported_algorithms(self) -> frozenset[str] | None: ...
    def watch(self, wait: float = 2.0, on_connected: Callable[[], None] | None = None,
              on_missing: Callable[[Iterable[str]], None] | None = None,
              sync_period: float = 5.0, meant_up: Callable[[str, TunnelState], bool] | None = None,
              backoff: float = 30.0, backoff_max: float = 600.0,
              peers_at: Callable[[str, str], Iterable[str]] | None = None) -> bool: ...
    def close(self) -> None: ...
    def log_lines(self, name: str) -> list[LogLine]: ...
    def watch_log(self, name: str) -> None: ...


# --- Kernel --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    family: int  # 4 or 6
    address: str
    prefixlen: int


@dataclass(frozen=True)
class Interface:
    index: int
    name: str
    kind: str  # "veth", "loopback", "tun", "ether", ...
    state: str  # "up", "down", "unknown"
    mtu: int
    mac: str = ""
    addresses: tuple[Address, ...] = ()
    rx_bytes: int = 0
    tx_bytes: int = 0
    ipsec: bool = False  # the IPsec tunnel interface (ipsec0 with libipsec, xfrm/vti)


@dataclass(frozen=True, slots=True)  # one per tunnel in table 220
class Route:
    family: int
    table: str  # "main", "220", ...
    destination: str  # CIDR or "default"
    gateway: str = ""
    device: str = ""
    source: str = ""  # preferred source
    protocol: str = ""
    peer: str = ""  # the peer whose remote network this route reaches


@dataclass(frozen=True)
class RoutingRule:
    family: int
    priority: int
    selector: str  # "from all", "from 10.0.0.0/8 fwmark 0x1", ...
    table: str


@dataclass(frozen=True)
class Routes:
    routes: tuple[Route, ...] = ()
    rules: tuple[RoutingRule, ...] = ()


@dataclass(frozen=True)
class PingResult:
    """What `ping` saw: echo requests sent, replies received, and each reply's round trip."""

    sent: int = 0
    received: int = 0
    rtts: tuple[float, ...] = ()  # milliseconds
    error: str = ""  # why it could not run (not why no reply came: that is received == 0)


class KernelDriver(Protocol):
    def interfaces(self) -> tuple[Interface, ...]: ...
    def routes(self, peers: Sequence[Peer] = ()) -> Routes: ...
    def ping(self, source: str, destination: str, count: int = 4,
             deadline: float = 5.0) -> PingResult: ...


# --- Firewall ------------------------------------------------------------------------------------


class FirewallDriver(Protocol):
    def apply(self, peers: Sequence[Peer], verify: bool = False) -> bool: ...


# --- Choosing ------------------------------------------------------------------------------------


@dataclass
class Drivers:
    ipsec: IPsecDriver
    kernel: KernelDriver
    firewall: FirewallDriver


def make_drivers(config) -> Drivers:
    """The drivers `config["DRIVER"]` asks for: "real" (default) or "fake"."""
    kind = config.get("DRIVER", "real")
    if kind == "fake":
        from webui.drivers import fake
        return Drivers(ipsec=fake.FakeIPsec(fail=config.get("FAKE_FAIL", False)),
                       kernel=fake.FakeKernel(), firewall=fake.FakeFirewall())
    if kind != "real":
        raise ValueError(f"WEBUI_DRIVER must be 'real' or 'fake', not {kind!r}")
    from webui.drivers import real
    return real.make(config)
