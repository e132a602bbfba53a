"""The IPsec service: the one door between the views and the store and drivers below.

Writes apply saved peers, the store first, then strongSwan and the firewall; reads give the views
what they show, as plain data (a page of peers, the notices, charon's status, the kernel's tables).

What the administrator saved is never lost to a daemon that is down: the store is written first,
and a peer that could not be applied is remembered as "not applied" with the reason, and applied
again on the next reconcile (start-up, Restart IPsec, the Reconcile button, or the first status poll
that finds strongSwan back). Only charon's own refusal of a peer (a proposal it rejects, say) undoes
the save, so the form can show the refusal next to the field.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from flask import current_app

from webui import capabilities, paging, tunnel_test
from webui import status as peer_state
from webui.atomic import write_atomic
from webui.drivers import (CommandFailed, DriverError, Drivers, Interface, IPsecStatus, LogLine,
                           Routes, StateSnapshot, Step, Transition, TunnelState,
                           swanctl_conf)
from webui.drivers.peer_log import redact
from webui.drivers.vici_messages import sa_settings
from webui.forms import peer_problem
from webui.paging import PeerPage
from webui.peers import Peer
from webui.store import PeerStore, StoreError

log = logging.getLogger(__name__)


def service() -> IPsecService:
    """The app's one service: the door every view goes through to the peers and the drivers."""
    return current_app.extensions["webui"]


def needs_fresh_sa(old: Peer, new: Peer) -> bool:
    """Whether SAs set up under `old` must be ended when `new` replaces it: its key, an ID, an
    address or the IKE version changed. Rekeying keeps an IKE SA's authentication, so without
    this a rotated (leaked) key would keep the old holder's tunnel up. Saving, restoring and
    reconciling a peer all end such SAs and start the tunnel again."""
    return sa_settings(old) != sa_settings(new)


def auth_changes(old: Peer, new: Peer) -> tuple[str, ...]:
    """Which of what authentication rests on a save changed (the form's field names): the IDs as
    charon uses them, and the key (that it changed, never what it is)."""
    changed = [("local_id", old.effective_local_id != new.effective_local_id),
               ("peer_id", old.effective_peer_id != new.effective_peer_id),
               ("psk", old.psk != new.psk)]
    return tuple(name for name, differs in changed if differs)


def usable(peers) -> tuple[list[Peer], dict[str, str]]:
    """The peers that pass every field rule, and why each other one is left out. A peer stored by an
    older version or edited by hand must not stop the others from loading."""
    good, bad = [], {}
    for peer in peers:
        problem = peer_problem(peer)
        if problem is None:
            good.append(peer)
        else:
            field, reason = problem
            bad[peer.name] = f"not loaded: its {field.replace('_', ' ')} is invalid ({reason})"
            log.warning("peer %s not loaded: %s is invalid", peer.name, field)
    return good, bad


# strongSwan (or a proposal rule it enforces) refused a peer: the driver's own exception, which
# carries the field to show it at and the reason in charon's words, reaches the view unchanged.
Refused = CommandFailed


class IPsecService:
    """Owns the store and the drivers, and keeps the record of what is not applied yet."""

    def __init__(self, store: PeerStore, drivers: Drivers, swanctl_conf: str | Path | None = None):
        self.store = store
        self.drivers = drivers
        self.not_applied: dict[str, str] = {}  # peer name -> reason
        self.firewall_error = ""
        # peer name -> what it needs that the running charon lacks (get-algorithms), in words.
        self.lacking: dict[str, str] = {}
        # Until when (monotonic) charon not answering is the restart the admin asked for.
        self._restarting_until = 0.0
        # WEBUI_SWANCTL_CONF: the enabled peers also written as swanctl.conf, for the system's
        # strongSwan to load at boot when the UI is not running (webui/drivers/swanctl_conf.py).
        self.swanctl_conf = Path(swanctl_conf) if swanctl_conf else None
        self.swanctl_error = ""
        self._swanctl_text: str | None = None  # what the file holds, once known
        # One change at a time, from the store write to the last driver call: otherwise a
        # reconcile working from an older read of the store could load a peer just deleted, or
        # two firewall transactions could land in the wrong order and drop a peer's rules.
        self._lock = threading.RLock()
        self._tests = tunnel_test.Limiter()  # Test the tunnel: one at a time, spaced
        # peer name -> {field: when (wall clock) a save here last changed it}, for auth_changes'
        # fields: "Why it is down" points at a change the tunnel has not been up since
        self._auth_changed: dict[str, dict[str, float]] = {}

    # --- peer changes ----------------------------------------------------------------------------

    def add(self, peer: Peer) -> None:
        with self._lock:
            self.store.add(peer)
            try:
                self._apply(peer, None)
            except Refused:
                self.store.delete(peer.name)
                raise
            self._check_algorithms([peer])
            self._apply_firewall()
            self._write_swanctl_conf()

    def update(self, old: Peer, peer: Peer) -> None:
        saved_at = time.time()  # before charon starts the tunnel with the change
        with self._lock:
            self.store.replace(old.name, peer)
            try:
                self._apply(peer, old.name, renew=needs_fresh_sa(old, peer))
            except Refused:
                self.store.replace(peer.name, old)
                self._apply(old, peer.name if peer.name != old.name else None)
                raise
            self.lacking.pop(old.name, None)
            changed = self._auth_changed.pop(old.name, {})
            changed.update(dict.fromkeys(auth_changes(old, peer), saved_at))
            if changed:
                self._auth_changed[peer.name] = changed
            self._check_algorithms([peer])
            self._apply_firewall()
            self._write_swanctl_conf()

    def delete(self, peer: Peer) -> None:
        with self._lock:
            self.store.delete(peer.name)
            self.not_applied.pop(peer.name, None)
            self.lacking.pop(peer.name, None)
            self._auth_changed.pop(peer.name, None)
            try:
                self.drivers.ipsec.remove(peer.name)
            except DriverError as e:
                # Gone from the store; the next reconcile unloads it from charon.
                log.warning("peer %s deleted but not unloaded: %s", peer.name, e)
            self._apply_firewall()
            self._write_swanctl_conf()

    def restore(self, peers: list[Peer], based_on: list[Peer]) -> list[Step]:
        """Replace every peer with `peers` (a checked restore, webui/backup.py) in one store
        write, then bring charon and the firewall in line. Refused, with nothing written, when
        the store no longer holds `based_on`, what the restore was checked against."""
        with self._lock:
            if self.store.all() != based_on:
                raise StoreError("The peers changed since this restore was checked; "
                                 "nothing was restored. Check the file again.")
            self.store.replace_all(peers)
            names = {p.name for p in peers}
            self._auth_changed = {n: c for n, c in self._auth_changed.items() if n in names}
            return self.reconcile()

    def _apply(self, peer: Peer, previous_name: str | None, renew: bool = False) -> None:
        if previous_name and previous_name != peer.name:
            self.not_applied.pop(previous_name, None)
        try:
            if renew:
                self.drivers.ipsec.apply(peer, previous_name, renew=True)
            else:
                self.drivers.ipsec.apply(peer, previous_name)
        except Refused:
            raise  # the caller undoes the save and shows why at the field
        except DriverError as e:
            self.not_applied[peer.name] = str(e)
            log.warning("peer %s saved but not applied: %s", peer.name, e)
        else:
            self.not_applied.pop(peer.name, None)

    def _check_algorithms(self, peers) -> None:
        """Note, for each of `peers`, what it needs that the running charon lacks. While charon
        cannot be asked, what was noted last stands."""
        supported = self.drivers.ipsec.supported_algorithms()
        if supported is None:
            return
        for peer in peers:
            lacking = capabilities.check(peer, supported)
            if lacking is None:
                self.lacking.pop(peer.name, None)
            else:
                self.lacking[peer.name] = lacking.message
                log.warning("peer %s %s", peer.name, lacking.message)

    def _apply_firewall(self, verify: bool = False) -> None:
        try:
            self.drivers.firewall.apply(usable(self.store.all())[0], verify=verify)
        except DriverError as e:
            self.firewall_error = str(e)
            log.warning("firewall rules not applied: %s", e)
        else:
            self.firewall_error = ""

    # --- bringing everything in line -------------------------------------------------------------

    def reconcile(self) -> list[Step]:
        """Load every enabled peer, unload what we loaded that is gone, and apply the firewall."""
        return self._bring_in_line(lambda peers: self.drivers.ipsec.reconcile(peers),
                                   "Load peers into strongSwan")

    # How long Restart IPsec waits for the tunnels that were up to come back before saying how
    # many did: start_action=start initiates each as it is loaded, so on a healthy link they are
    # back within seconds; one that is not back by then is reported, not waited for.
    TUNNELS_BACK_SECONDS = 15.0

    def router_addresses(self) -> dict[str, str] | None:
        """This router's own addresses (address -> interface), loopback and link-local left out;
        None when the kernel cannot be asked."""
        try:
            interfaces = self.drivers.kernel.interfaces()
        except DriverError:
            return None
        found = {}
        for interface in interfaces:
            for address in interface.addresses:
                ip = ipaddress.ip_address(address.address)
                if not (ip.is_loopback or ip.is_link_local):
                    found[str(ip)] = interface.name
        return found

    def _tunnel_states(self) -> dict:
        """Each tunnel's state by name; empty when strongSwan cannot be asked."""
        try:
            return self.drivers.ipsec.tunnel_states()
        except DriverError:
            return {}

    def tunnels_up(self) -> set[str]:
        """The names of the tunnels up now (empty when strongSwan cannot be asked)."""
        return {name for name, state in self._tunnel_states().items() if state.state == "up"}

    def tunnels_disconnected(self) -> list[str]:
        """The peers the admin disconnected (Disconnect, or Terminate of the tunnel), by name: a
        restart loads every enabled peer as configured, so these come up again."""
        return sorted(name for name, state in self._tunnel_states().items() if state.disconnected)

    def restart(self) -> list[Step]:
        """Restart strongSwan, then load every configured peer again (VICI config is in memory),
        and end with how many of the tunnels that were up are back."""
        before = self.tunnels_up()
        self._restarting_until = float("inf")
        try:
            steps = self._bring_in_line(lambda peers: self.drivers.ipsec.restart(peers),
                                        "Restart strongSwan")
            if before:
                steps.append(self._tunnels_back(before))
        finally:
            # The monitor finds the new charon a moment later; a charon still silent after
            # this was not just restarting, and says why.
            self._restarting_until = time.monotonic() + self.TUNNELS_BACK_SECONDS
        return steps

    def status_problem(self, snap) -> str:
        """Why the states shown are not current: a restart the admin asked for is said plainly,
        not as the socket error it causes. While Restart IPsec runs, every row says so, whether or
        not the monitor has seen charon go yet: the states it last listed are about to end."""
        if self.restart_in_progress():
            return peer_state.RESTARTING
        if snap.problem and time.monotonic() < self._restarting_until:
            return peer_state.RESTARTING
        return snap.problem

    def restart_in_progress(self) -> bool:
        return self._restarting_until == float("inf")

    def _tunnels_back(self, before: set[str]) -> Step:
        deadline = time.monotonic() + self.TUNNELS_BACK_SECONDS
        back = self.tunnels_up() & before
        while back != before and time.monotonic() < deadline:
            time.sleep(0.25)
            back = self.tunnels_up() & before
        missing = ", ".join(sorted(before - back))
        return Step(f"{len(back)} of {len(before)} tunnel{'s' if len(before) != 1 else ''} back up",
                    back == before, f"not yet: {missing}" if missing else "")

    def _bring_in_line(self, operation, what: str) -> list[Step]:
        with self._lock:
            peers, invalid = usable(self.store.all())
            try:
                steps = operation(peers)
            except DriverError as e:
                steps = [Step(what, False, str(e))]
                self.not_applied = {p.name: str(e) for p in peers if p.enabled}
            else:
                loaded = all(step.ok for step in steps if not step.peer)
                if loaded:
                    self.not_applied = {s.peer: s.detail for s in steps if s.peer and not s.ok}
                else:
                    reason = next(s.detail for s in steps if not s.ok and not s.peer)
                    self.not_applied = {p.name: reason for p in peers if p.enabled}
            self.lacking = {}
            self._check_algorithms(peers)
            self.not_applied.update(invalid)
            steps += [Step(f"Load {name}", False, reason, peer=name) for name, reason in invalid.items()]
            self._apply_firewall(verify=True)
            self._write_swanctl_conf()
        steps.append(Step("Apply firewall rules", not self.firewall_error, self.firewall_error))
        if self.swanctl_conf is not None:
            steps.append(Step(f"Write {self.swanctl_conf} for boot", not self.swanctl_error,
                              self.swanctl_error))
        return steps

    def _write_swanctl_conf(self) -> None:
        """Rewrite the swanctl.conf file when its text changes (a router's flash wears): atomic,
        mode 0600 (the keys are in it). A failure is shown and logged; the save stands."""
        if self.swanctl_conf is None:
            return
        try:
            text = swanctl_conf.render(self.store.all())
            if self._swanctl_text is None:
                self._swanctl_text = _read_text(self.swanctl_conf)
            if text != self._swanctl_text:
                write_atomic(self.swanctl_conf, text.encode(), mode=0o600)
                self._swanctl_text = text
                log.info("wrote %s", self.swanctl_conf)
            else:
                os.chmod(self.swanctl_conf, 0o600)
        except (OSError, swanctl_conf.Unwritable) as e:
            self._swanctl_text = None
            self.swanctl_error = f"{self.swanctl_conf} not written: {e}"
            log.warning("%s", self.swanctl_error)
        else:
            self.swanctl_error = ""

    def start(self, watch: bool, reconcile: bool, sync_period: float = 5.0,
              backoff: float = 30.0, backoff_max: float = 600.0) -> None:
        """At start-up, with `reconcile`: apply the firewall and load the peers into charon.
        With `watch`, a background listener loads them each time it (re)connects to charon, at
        start-up too (so a charon that is slow to answer does not hold up the first page): a charon
        restarted by anyone has forgotten what was loaded over VICI, and peers saved while it was
        away are applied when it is back."""
        with self._lock:
            self._write_swanctl_conf()
        if watch:
            self.drivers.ipsec.watch(wait=0, on_connected=self._charon_connected if reconcile else None,
                                     on_missing=self._charon_lost if reconcile else None,
                                     sync_period=sync_period, meant_up=self._meant_up,
                                     backoff=backoff, backoff_max=backoff_max,
                                     peers_at=self._peers_at)
        if reconcile:
            self._apply_firewall(verify=True)
            if not watch:
                self.reconcile()

    def _charon_connected(self) -> None:
        with self._lock:
            # Restart IPsec loads the charon it started, holding this lock; the listener finds
            # that charon a moment before or after, and must not load every peer a second time.
            if self.drivers.ipsec.loaded_this_charon():
                log.info("strongSwan answers; the configured peers are loaded already")
                return
            log.info("strongSwan answers; loading the configured peers")
            self.reconcile()

    def _meant_up(self, name: str, tunnel) -> bool:
        """Whether this peer's tunnel should be kept up (started, not waited for): the monitor
        initiates it again when charon has given up (webui/drivers/monitor.py)."""
        peer = self.store.get(name)
        return peer is not None and peer.enabled and peer.start_action == "start"

    def _peers_at(self, address: str, remote_id: str = "") -> list[str]:
        """The enabled peers a remote at `address` may be: those whose gateway is that address
        (or any), narrowed to those expecting `remote_id` when some do. For the lines of an IKE
        SA the remote started, which charon logs before it has chosen a connection."""
        at = [p for p in self.store.all() if p.enabled
              and (p.remote_gateway == address or p.any_gateway)]
        expecting = [p for p in at if remote_id and p.effective_peer_id == remote_id]
        return [p.name for p in expecting or at]

    def _charon_lost(self, names) -> None:
        """Connections this UI loaded that charon no longer has (`swanctl --load-all` unloads
        every connection not in swanctl.conf): load those peers again, and only those."""
        with self._lock:
            for name in names:
                peer = self.store.get(name)
                if peer is not None and peer.enabled:
                    try:
                        self._apply(peer, None)
                    except Refused as e:
                        self.not_applied[peer.name] = str(e)

    # --- what the views read (they never reach the store or the drivers themselves) --------------

    def peers(self) -> list[Peer]:
        return self.store.all()

    def peer(self, name: str) -> Peer | None:
        return self.store.get(name)

    def page(self, query: str = "", number: int = 1, size: int = 100) -> PeerPage:
        """Page `number` of the peers matching `query` (webui/paging.py)."""
        return paging.peer_page(self.store.all(), query, number, size)

    def notices(self) -> dict:
        """What the IPsec page says beside each peer and above the table, as plain data: why a
        peer is not applied, what it needs that charon lacks, a firewall or swanctl.conf error."""
        return {"not_applied": dict(self.not_applied), "lacking": dict(self.lacking),
                "firewall_error": self.firewall_error, "swanctl_error": self.swanctl_error}

    def supported_algorithms(self) -> frozenset[str] | None:
        """What charon can do (cached by the driver); None when it cannot be asked."""
        return self.drivers.ipsec.supported_algorithms()

    def ipsec_status(self) -> IPsecStatus:
        """Get IPsec status: charon's connections and SAs, asked now."""
        return self.drivers.ipsec.status()

    def status_overview(self, number: int, size: int, snap: StateSnapshot) -> dict:
        """The status pane, page `number` (webui/status.py); DriverError when charon cannot
        be asked."""
        return peer_state.status_overview(self.store.all(), self.ipsec_status(), number, size,
                                          snap.tunnels, self.not_applied)

    def tunnel_states(self, names) -> dict[str, TunnelState]:
        """The named peers' tunnels, asked of charon now (after Connect, say). A tunnel the admin
        just took down keeps what only the monitor knows (disconnected by the admin, not
        "never reached it yet"), so Disconnect's answer is the state the next poll shows."""
        states = self.drivers.ipsec.tunnel_states(names)
        known = self.drivers.ipsec.snapshot().tunnels
        for name, state in states.items():
            kept = known.get(name)
            if state.state == "down" and kept is not None and kept.disconnected:
                states[name] = replace(state, disconnected=True, ever_up=kept.ever_up,
                                       reason=kept.reason, reason_at=kept.reason_at)
        return states

    def tunnel_command(self, name: str, verb: str) -> str:
        """Connect, Disconnect or Rekey the peer's tunnel now; charon's answer, in words."""
        if verb not in ("connect", "disconnect", "rekey"):
            raise ValueError(f"not a tunnel command: {verb}")
        return getattr(self.drivers.ipsec, verb)(name)

    def interfaces(self) -> tuple[Interface, ...]:
        return self.drivers.kernel.interfaces()

    def routes(self) -> Routes:
        """The routes, each marked with the peer whose remote network it reaches."""
        return self.drivers.kernel.routes(self.store.all())

    def history(self, name: str) -> list[Transition]:
        """A peer's last state changes (time, from, to, reason), kept in memory by the monitor."""
        return self.drivers.ipsec.history(name)

    def auth_changed(self, name: str) -> dict[str, float]:
        """The IDs and key of the peer changed by a save here since its tunnel was last up
        ({field: when}): what "Why it is down" points at when authentication fails."""
        changed = self._auth_changed.get(name, {})
        last_up = max((t.at for t in self.history(name) if t.new == "up"), default=0.0)
        return {field: at for field, at in changed.items() if at > last_up}

    def counters(self, name: str) -> list[tuple[float, int, int]]:
        """A peer's byte counters (time, in, out), sampled while pages poll, about an hour."""
        return self.drivers.ipsec.counters(name)

    def log_lines(self, name: str) -> list[LogLine]:
        """charon's recent log lines about a peer (LogLine, oldest first), its key hidden."""
        lines = self.drivers.ipsec.log_lines(name)
        peer = self.store.get(name)
        if peer is None or not peer.psk:
            return lines
        return [replace(line, text=redact(line.text, peer.psk)) if peer.psk in line.text
                or peer.psk.encode().hex() in line.text.lower() else line for line in lines]

    def watch_log(self, name: str) -> None:
        """Someone reads the peer's log: keep its full ring for a while."""
        self.drivers.ipsec.watch_log(name)

    # A peer's page (webui/blueprints/tunnel.py): what each of its buttons does, by name.
    SA_ACTIONS = {"rekey-ike": "rekey_ike", "reauthenticate": "reauthenticate",
                  "rekey-child": "rekey_child", "terminate-child": "terminate_child"}

    def tunnel_action(self, peer: Peer, verb: str, sa_id: int | None = None) -> str:
        """Connect, Disconnect, or act on one of the peer's SAs (`SA_ACTIONS`, by charon's id);
        what happened, in words. DriverError when strongSwan cannot be asked."""
        ipsec = self.drivers.ipsec
        if verb == "connect":
            if peer.responder_only:
                return f"{peer.name} waits for the other side to connect (responder only)."
            return ipsec.connect(peer.name)
        if verb == "disconnect":
            return ipsec.disconnect(peer.name)
        if sa_id is None:
            return "Choose an SA: that button belongs to one."
        return getattr(ipsec, self.SA_ACTIONS[verb])(peer.name, sa_id)

    def test_tunnel(self, peer: Peer, host: str) -> tunnel_test.TestOutcome:
        """Ping `host` (in the peer's remote networks) from the router's address in its local
        networks; whether the packets went into the tunnel (webui/tunnel_test.py)."""
        return tunnel_test.run(self.drivers, self._tests, peer, host)

    def poll_key(self, snap) -> str:
        """What a status poll's answer depends on besides its page: the snapshot's version, what
        is not applied, and a half-minute clock (durations and the age shown never lag by more).
        "" without a monitor: there is no version to compare then."""
        if not snap.version:
            return ""
        applied = hash(frozenset(self.not_applied.items())) & 0xffffff
        restarting = "r" if self.restart_in_progress() else ""
        return f"{snap.version}.{applied:x}.{int(time.time() // 30)}{restarting}"

    def snapshot(self):
        """Every tunnel's state as the monitor keeps it (webui/drivers/monitor.py)."""
        return self.drivers.ipsec.snapshot()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
