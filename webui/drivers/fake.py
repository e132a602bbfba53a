"""A fake driver for unit tests and for running the UI without strongSwan (WEBUI_DRIVER=fake).

It keeps what it was asked to load in memory and reports every tunnel down: it invents no traffic.
Never used by the tests that prove the product works; those drive a real charon.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Sequence

from webui.drivers import (Address, Connection, DaemonUnavailable, IkeSA, Interface, IPsecStatus,
                           LogLine, PingResult, Route, Routes, RoutingRule, StateSnapshot, Step,
                           Transition, TunnelState)
from webui.peers import Peer


class FakeIPsec:
    """Plays charon. `fail=True` behaves as if charon were down."""

    def __init__(self, fail: bool = False, supported: frozenset[str] | None = None):
        self.fail = fail
        self.supported = supported
        self.loaded: dict[str, Peer] = {}
        self.calls: list[tuple[str, str]] = []
        self.renewed: list[str] = []  # peers whose SAs a real charon would have ended and restarted
        self.changes = 0
        self.charon = 1  # which charon answers: a restart (or a test) starts another
        self._loaded_charon = 0
        self.logs: dict[str, list[LogLine]] = {}  # what a test says charon logged, per peer
        self.log_watched: list[str] = []
        # SAs a unit test puts here, as charon would list them: the fake invents none itself.
        self.sas: list[IkeSA] = []
        self.transitions: dict[str, list[tuple]] = {}  # likewise: Transition's fields
        self.samples: dict[str, list[tuple[float, int, int]]] = {}
        self._lock = threading.Lock()

    def _check(self):
        if self.fail:
            raise DaemonUnavailable("strongSwan is not running (fake driver set to fail).")

    # strongSwan
    def status(self) -> IPsecStatus:
        self._check()
        conns = tuple(Connection(name=p.name, version=f"IKEv{p.ike_version}",
                                 local_addrs=(p.local_ip,), remote_addrs=(p.remote_gateway,),
                                 children=(p.name,), managed=True)
                      for p in sorted(self.loaded.values(), key=lambda p: p.name))
        return IPsecStatus(connections=conns, sas=())

    def tunnel_states(self, names: Sequence[str] | None = None) -> dict[str, TunnelState]:
        self._check()
        states = {name: TunnelState(name=name, state="down", loaded=True) for name in self.loaded
                  if names is None or name in names}
        for sa in self.sas:
            children = [c for c in sa.children if c.state == "INSTALLED"]
            if sa.name in states and sa.state == "ESTABLISHED" and children:
                states[sa.name] = TunnelState(
                    name=sa.name, state="up", loaded=True, ike_up=True, ever_up=True,
                    bytes_in=sum(c.bytes_in for c in children),
                    bytes_out=sum(c.bytes_out for c in children),
                    local_ts=tuple(ts for c in children for ts in c.local_ts),
                    remote_ts=tuple(ts for c in children for ts in c.remote_ts))
        return states

    def snapshot(self) -> StateSnapshot:
        """As the monitor keeps it: a version that grows with every change to what is loaded."""
        if self.fail:
            return StateSnapshot(version=1, unanswered_since=time.time(),
                                 error="strongSwan is not running (fake driver set to fail).")
        return StateSnapshot(version=2 + len(self.calls) + self.changes, tunnels=self.tunnel_states(),
                             sas=tuple(self.sas), loaded=frozenset(self.loaded),
                             confirmed_at=time.time())

    def history(self, name: str) -> list[Transition]:
        # a unit test's; no monitor changes state here
        return [Transition(*t) for t in self.transitions.get(name, ())]

    def counters(self, name: str) -> list[tuple[float, int, int]]:
        return list(self.samples.get(name, ()))

    def apply(self, peer: Peer, previous_name: str | None = None, renew: bool = False) -> None:
        self._check()
        with self._lock:
            if renew:
                self.renewed.append(peer.name)
            if previous_name and previous_name != peer.name:
                self.loaded.pop(previous_name, None)
            if peer.enabled:
                self.loaded[peer.name] = peer
            else:
                self.loaded.pop(peer.name, None)
            self.calls.append(("apply", peer.name))

    def remove(self, name: str) -> None:
        self._check()
        with self._lock:
            self.loaded.pop(name, None)
            self.calls.append(("remove", name))

    def reconcile(self, peers: Sequence[Peer]) -> list[Step]:
        self._check()
        with self._lock:
            self.loaded = {p.name: p for p in peers if p.enabled}
            self.changes += 1
            self._loaded_charon = self.charon
        return [Step(f"Loaded {len(self.loaded)} enabled peer(s)", True)]

    def loaded_this_charon(self) -> bool:
        return self._loaded_charon == self.charon

    def restart(self, peers: Sequence[Peer]) -> list[Step]:
        self._check()
        self.charon += 1  # a new charon holds nothing: what is loaded is what the reconcile loads
        self.loaded = {}
        return [Step("Restart strongSwan (fake: a new charon)", True)] + self.reconcile(peers)

    def connect(self, name: str) -> str:
        self._check()
        return f"{name}: the fake driver cannot bring tunnels up."

    def disconnect(self, name: str) -> str:
        self._check()
        return f"{name}: the fake driver has no tunnel to take down."

    def rekey(self, name: str) -> str:
        self._check()
        return f"{name}: the fake driver has no tunnel to rekey."

    def _sa(self, name: str, verb: str, ike_id: int | None = None,
            child_id: int | None = None) -> str:
        """What the real driver answers, without anything changing: SAs are the test's."""
        self._check()
        what = f"IKE SA #{ike_id}" if ike_id is not None else f"CHILD_SA #{child_id}"
        for sa in self.sas:
            if sa.name == name and (sa.unique_id == ike_id or
                                    any(c.unique_id == child_id for c in sa.children)):
                self.calls.append((verb, what))
                return f"{what} of {name} is {verb}."
        return f"{what} is no longer there: strongSwan has replaced or closed it."

    def rekey_ike(self, name: str, ike_id: int) -> str:
        return self._sa(name, "rekeying", ike_id=ike_id)

    def reauthenticate(self, name: str, ike_id: int) -> str:
        return self._sa(name, "reauthenticating", ike_id=ike_id)

    def rekey_child(self, name: str, child_id: int) -> str:
        return self._sa(name, "rekeying", child_id=child_id)

    def terminate_child(self, name: str, child_id: int) -> str:
        return self._sa(name, "closed", child_id=child_id)

    def supported_algorithms(self) -> frozenset[str] | None:
        return self.supported

    def watch(self, wait: float = 2.0, on_connected: Callable[[], None] | None = None,
              on_missing: Callable[[Iterable[str]], None] | None = None,
              sync_period: float = 5.0, meant_up: Callable[[str, TunnelState], bool] | None = None,
              backoff: float = 30.0, backoff_max: float = 600.0,
              peers_at: Callable[[str, str], Iterable[str]] | None = None) -> bool:
        """There are no events to listen to: it "connects" once, at once, as a charon that was
        up all along would (the service reconciles then), and never loses anything."""
        if on_connected is not None:
            on_connected()
        return not self.fail

    def close(self) -> None:
        pass  # nothing runs in the background

    def log_lines(self, name: str) -> list[LogLine]:
        return list(self.logs.get(name, ()))

    def watch_log(self, name: str) -> None:
        self.log_watched.append(name)


class FakeKernel:
    """Plays the kernel with a fixed, plainly fake router (documentation addresses). Pings get
    no reply unless a unit test puts the destination's reply count in `replies`."""

    def __init__(self):
        self.replies: dict[str, int] = {}
        self.pinged: list[tuple[str, str]] = []

    def ping(self, source: str, destination: str, count: int = 4,
             deadline: float = 5.0) -> PingResult:
        self.pinged.append((source, destination))
        received = min(count, self.replies.get(destination, 0))
        return PingResult(sent=count, received=received, rtts=(0.5,) * received)

    def interfaces(self) -> tuple[Interface, ...]:
        return (
            Interface(1, "lo", "loopback", "unknown", 65536,
                      addresses=(Address(4, "127.0.0.1", 8), Address(6, "::1", 128))),
            Interface(2, "wan0", "ether", "up", 1500, "02:00:00:00:00:01",
                      (Address(4, "192.0.2.1", 24), Address(6, "2001:db8::1", 64))),
            Interface(3, "lan0", "ether", "up", 1500, "02:00:00:00:00:02",
                      (Address(4, "198.51.100.1", 24),)),
        )

    def routes(self, peers: Sequence[Peer] = ()) -> Routes:
        return Routes(
            routes=(Route(4, "main", "default", gateway="192.0.2.254", device="wan0"),
                    Route(4, "main", "192.0.2.0/24", device="wan0", source="192.0.2.1",
                          protocol="kernel"),
                    Route(4, "main", "198.51.100.0/24", device="lan0", source="198.51.100.1",
                          protocol="kernel")),
            rules=(RoutingRule(4, 0, "from all", "local"), RoutingRule(4, 32766, "from all", "main")),
        )


class FakeFirewall:
    """Remembers which peers' rules it was asked to apply."""

    def __init__(self):
        self.peers: tuple[str, ...] = ()

    def apply(self, peers: Sequence[Peer], verify: bool = False) -> bool:
        names = tuple(p.name for p in peers)
        changed, self.peers = names != self.peers, names
        return changed
