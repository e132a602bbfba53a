"""The IPsec service's writes: store first, then drivers; one change at a time; refusals undo the save."""
from __future__ import annotations

import random
import threading
import time

import pytest

from webui.apply import IPsecService, Refused
from webui import status
from webui.drivers import CommandFailed, Drivers, StateSnapshot, Step, TunnelState
from webui.drivers.fake import FakeFirewall, FakeIPsec, FakeKernel
from webui.peers import Peer
from webui.store import PeerStore


def peer(i: int, **kw) -> Peer:
    return Peer(**{"name": f"p{i}", "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
                   "local_networks": ("198.51.100.0/24",), "remote_networks": (f"10.9.{i}.0/24",),
                   "psk": "k" * 20, **kw})


class FirstCallWaits(FakeFirewall):
    """The first apply waits (bounded) for a later one to finish, as a slow nft run overtaken by
    a quick one would: unserialized, the first, older view of the store would win."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.later_done = threading.Event()

    def apply(self, peers, verify=False):
        self.calls += 1
        if self.calls == 1:
            self.later_done.wait(timeout=0.5)
            super().apply(peers)
        else:
            super().apply(peers)
            self.later_done.set()


class SlowIPsec(FakeIPsec):
    """Takes a random while to load, as charon does, so the adds interleave."""

    def apply(self, peer, previous_name=None):
        time.sleep(random.uniform(0, 0.01))
        super().apply(peer, previous_name)


def applier(tmp_path, ipsec=None, firewall=None) -> IPsecService:
    return IPsecService(PeerStore(tmp_path / "peers.json"),
                   Drivers(ipsec=ipsec or FakeIPsec(), kernel=FakeKernel(),
                           firewall=firewall or FakeFirewall()))


def test_a_slow_firewall_apply_is_not_overtaken_by_a_later_change(tmp_path):
    a = applier(tmp_path, firewall=FirstCallWaits())
    first = threading.Thread(target=a.add, args=(peer(1),))
    first.start()
    while a.drivers.firewall.calls == 0:
        time.sleep(0.001)
    a.add(peer(2))
    first.join()
    assert a.drivers.firewall.peers == ("p1", "p2")


def test_concurrent_adds_lose_nothing(tmp_path):
    a = applier(tmp_path, SlowIPsec())
    threads = [threading.Thread(target=a.add, args=(peer(i),)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.drivers.firewall.peers) == sorted(f"p{i}" for i in range(20))
    assert sorted(a.drivers.ipsec.loaded) == sorted(f"p{i}" for i in range(20))


class RefusingIPsec(FakeIPsec):
    def apply(self, peer, previous_name=None):
        if "aes128" in peer.esp_encryption:
            raise CommandFailed("invalid value for: esp_proposals", field="esp_encryption")
        super().apply(peer, previous_name)


def test_a_refused_peer_is_not_kept_and_an_edit_is_rolled_back(tmp_path):
    a = applier(tmp_path, RefusingIPsec())
    with pytest.raises(Refused) as e:
        a.add(peer(1, esp_encryption=("aes128",), esp_integrity=("sha256",)))
    assert e.value.field == "esp_encryption" and a.store.all() == []
    a.add(peer(2))
    with pytest.raises(Refused):
        a.update(peer(2), peer(2, name="renamed", esp_encryption=("aes128",), esp_integrity=("sha256",)))
    assert a.store.all() == [peer(2)] and set(a.drivers.ipsec.loaded) == {"p2"}


def test_charon_away_keeps_the_save_and_marks_it(tmp_path):
    a = applier(tmp_path, FakeIPsec(fail=True))
    a.add(peer(1))
    assert a.store.get("p1") == peer(1)
    assert "not running" in a.not_applied["p1"]
    a.drivers.ipsec.fail = False
    steps = a.reconcile()
    assert a.not_applied == {} and all(s.ok for s in steps)


def test_reconcile_with_charon_away_marks_every_enabled_peer(tmp_path):
    a = applier(tmp_path)
    a.add(peer(1))
    a.add(peer(2, enabled=False))
    a.drivers.ipsec.fail = True
    steps = a.reconcile()
    assert not steps[0].ok and "not running" in steps[0].detail
    assert set(a.not_applied) == {"p1"}


class ComesBack(FakeIPsec):
    """Tunnels that were up drop at the restart and come back one state poll at a time, except
    those named in `stays_down`."""

    def __init__(self, up, stays_down=()):
        super().__init__()
        self.up, self.stays_down, self.restarted, self.polls = set(up), set(stays_down), False, 0

    def restart(self, peers):
        self.restarted, self.polls = True, 0
        return super().restart(peers)

    def tunnel_states(self, names=None):
        self.polls += 1
        back = self.up if not self.restarted else set(sorted(self.up - self.stays_down)[:self.polls - 1])
        return {n: TunnelState(name=n, state="up" if n in back else "connecting") for n in self.loaded}


def test_restart_ends_with_how_many_tunnels_are_back(tmp_path):
    a = applier(tmp_path, ComesBack(up={"p1", "p2", "p3"}))
    for i in (1, 2, 3):
        a.add(peer(i))
    last = a.restart()[-1]
    assert (last.what, last.ok) == ("3 of 3 tunnels back up", True)


def test_restart_says_which_tunnels_did_not_come_back(tmp_path, monkeypatch):
    monkeypatch.setattr(IPsecService, "TUNNELS_BACK_SECONDS", 1.0)
    a = applier(tmp_path, ComesBack(up={"p1", "p2"}, stays_down={"p2"}))
    a.add(peer(1))
    a.add(peer(2))
    started = time.monotonic()
    last = a.restart()[-1]
    assert (last.what, last.ok, last.detail) == ("1 of 2 tunnels back up", False, "not yet: p2")
    assert time.monotonic() - started < 3, "the wait is bounded"


class NoticedDuringRestart(FakeIPsec):
    """The listener notices the new charon while Restart IPsec is still loading it (charon's
    socket is back before the restart's reconcile ends), as the real listener does."""

    def watch(self, wait=2.0, on_connected=None, **kw):
        self.on_connected = on_connected  # what the listener calls for each new charon
        return True

    def restart(self, peers):
        self.charon, self.loaded = self.charon + 1, {}
        self.listener = threading.Thread(target=self.on_connected)
        self.listener.start()
        self.listener.join(timeout=0.2)  # it waits: the restart holds the service's lock
        return [Step("Restart strongSwan (fake: a new charon)", True)] + self.reconcile(peers)


def test_restart_ipsec_loads_the_new_charon_once(tmp_path):
    ipsec = NoticedDuringRestart()
    a = applier(tmp_path, ipsec)
    a.start(watch=True, reconcile=True)
    a.add(peer(1))
    a.add(peer(2))
    ipsec.on_connected()  # the first charon, at start-up: loaded
    before = ipsec.changes
    steps = a.restart()
    ipsec.listener.join(timeout=5)
    assert not ipsec.listener.is_alive()
    assert ipsec.changes == before + 1, "the listener loaded the restarted charon a second time"
    assert set(ipsec.loaded) == {"p1", "p2"} and all(s.ok for s in steps)
    ipsec.charon += 1  # restarted by something else (swanctl, a crash, the init system)
    ipsec.loaded = {}
    ipsec.on_connected()
    assert ipsec.changes == before + 2 and set(ipsec.loaded) == {"p1", "p2"}


class Restarting(FakeIPsec):
    """charon does not answer the monitor while it restarts: what would the rows say then?"""

    def restart(self, peers):
        self.said_during = self.applier.status_problem(SILENT)
        self.said_before_silence = self.applier.status_problem(StateSnapshot(version=3, confirmed_at=time.time()))
        self.key_during = self.applier.poll_key(StateSnapshot(version=3, confirmed_at=time.time()))
        return super().restart(peers)


SILENT = StateSnapshot(version=3, confirmed_at=time.time() - 2, unanswered_since=time.time() - 1,
                       error="The connection to strongSwan broke (/run/charon.vici): "
                             "[Errno 104] Connection reset by peer")


def test_an_asked_for_restart_is_said_plainly_not_as_a_socket_error(tmp_path, monkeypatch):
    ipsec = Restarting()
    a = ipsec.applier = applier(tmp_path, ipsec)
    assert a.status_problem(SILENT) == SILENT.problem and "Errno 104" in SILENT.problem
    key_before = a.poll_key(StateSnapshot(version=3, confirmed_at=time.time()))
    a.restart()
    assert ipsec.said_during == status.RESTARTING
    assert ipsec.said_before_silence == status.RESTARTING, "from the click, before charon has gone"
    assert ipsec.key_during != key_before, "an open page's poll is answered with the rows, not 204"
    assert a.status_problem(SILENT) == status.RESTARTING, "while the monitor finds the new charon"
    assert a.status_problem(StateSnapshot(version=4, confirmed_at=time.time())) == "", "once it answers"
    monkeypatch.setattr(time, "monotonic", lambda: float("1e12"))
    assert a.status_problem(SILENT) == SILENT.problem, "a charon silent long after is not just restarting"
    row = status.of(peer(1), TunnelState(name="p1", state="up"), problem=status.RESTARTING)
    assert (row.kind, row.detail, status.KINDS[row.kind][0]) == ("restarting", "", "restarting")


def test_restart_with_no_tunnel_up_does_not_wait(tmp_path):
    a = applier(tmp_path)
    a.add(peer(1))
    assert "back up" not in a.restart()[-1].what


class JustDisconnected(FakeIPsec):
    """The monitor has noted the admin's Disconnect; a fresh listing of charon cannot know it."""

    def snapshot(self):
        return StateSnapshot(version=5, confirmed_at=time.time(), tunnels={"p1": TunnelState(
            name="p1", state="down", disconnected=True, ever_up=True, reason="taken down by the admin")})


def test_disconnects_answer_is_the_state_the_next_poll_shows(tmp_path):
    a = applier(tmp_path, JustDisconnected())
    a.add(peer(1))
    a.add(peer(2))
    states = a.tunnel_states(["p1", "p2"])
    assert status.of(peer(1), states["p1"]).kind == "disconnected", "not 'waiting, never reached it yet'"
    assert status.of(peer(2), states["p2"]).kind == "waiting", "another peer is left as charon says"
