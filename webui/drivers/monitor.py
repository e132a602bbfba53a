"""The tunnel-state monitor: the one VICI session that listens to charon, and the snapshot it keeps.

It registers for charon's log (why negotiations fail), `ike-updown`, `child-updown`, `ike-rekey`
and `child-rekey`. An event names the connection that changed; the monitor then asks charon for
that connection's SAs alone (`list-sas` filtered by name, on a short session of its own) and
replaces its entry. It runs a full `list-sas` when it (re)connects and, for byte counters, every
`sync_period` while some page has polled recently (stretched while nothing moves: QUIET_STRETCH),
and a `get-conns` every period to notice its connections unloaded behind its back
(`swanctl --load-all`). Everything lands in one snapshot with
a version that grows on every change: web requests read it and never wait on charon for state.
"""
from __future__ import annotations

import array
import collections
import logging
import os
import re
import select
import socket
import threading
import time
from dataclasses import replace
from typing import Callable, Iterable

from vici.protocol import Packet

from webui.drivers import (ASKED_BACK, ASKED_DOWN, DriverError, IkeSA, StateSnapshot, Transition,
                           TunnelState)
from webui.drivers import failure_reasons
from webui.drivers import vici_messages as vm
from webui.drivers.peer_log import LogLine, PeerLog
from webui.drivers.vici_wire import event_message

log = logging.getLogger(__name__)

EVENTS = ("log", "ike-updown", "child-updown", "ike-rekey", "child-rekey")
HISTORY = 100  # transitions kept per peer
SAMPLES = 60  # counter samples kept per peer, one every SAMPLE_EVERY seconds: about an hour
SAMPLE_EVERY = 60.0
DISCONNECTED = "disconnected by the admin"
# The reasons the history gives for what the admin did (Transition.asked says which were asked).
CHILD_TERMINATED = "child SA terminated by the admin"
REAUTHENTICATED = "reauthenticated by the admin"
REKEYED = "rekeyed by the admin"
RELOADED = "peer changed and reloaded"
# A new charon answers: every SA of the one before ended with it (Restart IPsec, or not).
RESTARTED = "strongSwan restarted by the admin"
CHARON_REPLACED = "strongSwan stopped or restarted, not from this UI"
# The other end closed the IKE SA: charon logs "received DELETE for IKE_SA site-b[7]" when it
# processes the remote's DELETE (IKEv1 and IKEv2 alike).
CLOSED_BY_REMOTE = "closed by the remote (it sent a DELETE)"
LATE_LOG = 2.0  # how far a log line may trail the event it explains (see _closed_by_remote)
# How long an action of the admin waits for the state change it causes: charon's answer comes
# within a second or two; longer, and a drop no one asked for would be put down to the admin.
ASKED_FOR = 20.0
# A rekey or reauthentication that settle() did not see done in its time is late; the note then
# lasts only this much longer, so a drop seconds later is not put down to the admin on a guess.
ASKED_LATE = 5.0
# How long two established IKE SAs of one peer may stand before the older is closed: longer than
# a reauthentication's overlap (charon closes the old SA itself once the new one is up).
DUPLICATE_GRACE = 30.0
CONFIRM_AT_MOST = 20  # SAs missing from a noblock listing, asked again one by one
# While pages poll, each full listing that finds nothing changed (no counter moved, no state)
# doubles the wait before the next, up to this many periods; anything that changes, any SA event
# and a page opened after a quiet spell bring it back to one period. An idle router with a page
# left open then lists its SAs every 20 s instead of every 5 s (docs/PERFORMANCE.md, idle CPU);
# a tunnel that starts to carry traffic shows it within that, the state changes at once.
QUIET_STRETCH = 4

_RANK = {"down": 0, "connecting": 1, "ike-up": 2, "up": 3}  # a move down this scale is a drop
_UP_IKE = {"ESTABLISHED", "REKEYING", "REKEYED"}
_UP_CHILD = {"INSTALLED", "REKEYING", "REKEYED", "UPDATING"}
# "initiating IKE_SA site-b[3] to 192.0.2.2", "initiating Main Mode IKE_SA ..." (IKEv1)
_WE_INITIATE = re.compile(r"^initiating .*IKE_SA")
_THEY_INITIATE = re.compile(r"^(\S+) is initiating an? .*IKE_SA")
# Before charon has chosen a connection for an IKE SA the remote started, its lines carry no name:
# the remote's address (and the IDs it sent) say which peers they are about.
_FROM = re.compile(r"^received packet: from (\S+?)\[\d+\]")
# "looking for peer configs matching 192.0.2.1[%any]...192.0.2.2[branch.example.com]" (IKEv1:
# "looking for pre-shared key peer configs matching 192.0.2.1...192.0.2.2[branch.example.com]")
_LOOKING = re.compile(r"^looking for .*peer configs matching (\S+?)(?:\[(.*?)\])?\.\.\.(\S+?)\[(.*)\]$")
# Only the remote's DELETE makes charon log this: each of the admin's own actions here (Disconnect,
# Terminate, Rekey IKE, Reauthenticate, a save that renews the SAs) makes this end *send* the
# DELETE instead (tests/integration/test_tunnel_page.py checks the router's log for it). A rekey
# or reauthentication the remote starts ends the old IKE SA with the same line (seen in the lab);
# the tunnel stays up on the new one, and the next listing forgets the reason.
_THEY_DELETE = re.compile(r"^received DELETE for IKE_SA ")
_CONNECTION = re.compile(r"^(?:added|updated|replaced) vici connection: (\S+)$")
_UNNAMED = "(unnamed)"  # charon's name for an IKE SA without a connection yet
_malloc_trim = None  # glibc's, once looked up; False where there is none


class _Wake:
    """A request thread's "list now" (refresh, settle): `threading.Event`'s set/is_set/clear, plus
    a socket the listener's select() watches, so the listing starts at once instead of at the
    next tick; the tick is left to the timers (retries, the period), and the listener sleeps
    between events. The socket pair exists while the listener runs (`open`, `close`)."""

    def __init__(self):
        self._event = threading.Event()
        self._reader = self._writer = None

    def open(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def close(self) -> None:
        reader, writer, self._reader, self._writer = self._reader, self._writer, None, None
        for end in (reader, writer):
            if end is not None:
                end.close()

    def fileno(self) -> int:
        return self._reader.fileno()

    def set(self) -> None:
        self._event.set()
        writer = self._writer
        if writer is not None:
            try:
                writer.send(b"\0")
            except OSError:
                pass  # full (a wake is pending anyway) or closed (the listener is gone)

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        """Before the listener does what was asked: a set() after this wakes the next select."""
        self._event.clear()
        try:
            while self._reader.recv(64):
                pass
        except (BlockingIOError, AttributeError):
            pass


def give_back_memory() -> None:
    """Hand the free pages in the C heap back to the system (glibc's `malloc_trim`). A full
    listing of a thousand SAs decodes megabytes of short-lived messages; glibc keeps what they
    freed in its heap, resident, until something reuses it. What it saves: docs/PERFORMANCE.md.
    musl (OpenWrt) has no `malloc_trim`: nothing to do there."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def summarise(name: str, sas: Iterable[IkeSA], at: float,
              previous: TunnelState | None) -> TunnelState:
    """One connection's state from its SAs as charon listed them at wall time `at`, keeping what
    the previous state knew (reason, attempts, since) where the SAs say nothing new."""
    previous = previous or TunnelState(name=name, state="down")
    ike_up, up_since, bytes_in, bytes_out = False, 0.0, 0, 0
    newest_child: int | None = None  # seconds since the youngest installed CHILD_SA came in
    local_ts: list[str] = []
    remote_ts: list[str] = []
    any_sa = False
    for sa in sas:
        any_sa = True
        if sa.state not in _UP_IKE:
            continue
        ike_up = True
        if sa.established_for is not None:
            up_since = max(up_since, at - sa.established_for)
        for child in sa.children:
            if child.state in _UP_CHILD:
                if child.installed_for is not None:
                    newest_child = min(child.installed_for, newest_child if newest_child is not None
                                       else child.installed_for)
                bytes_in += child.bytes_in
                bytes_out += child.bytes_out
                local_ts += [ts for ts in child.local_ts if ts not in local_ts]
                remote_ts += [ts for ts in child.remote_ts if ts not in remote_ts]
    up = bool(local_ts or remote_ts)
    state = "up" if up else "ike-up" if ike_up else "connecting" if any_sa else "down"
    # charon counts whole seconds: the same IKE SA seen a period later may compute a second
    # apart, and a snapshot that changed on every listing would never answer a poll with 204.
    up_since = float(int(up_since)) if ike_up else 0.0
    if up and previous.state == "up" and previous.up_since:
        # A rekey or a reauthentication replaces the SAs, not the tunnel: it has been up all
        # along (History shows no drop), so "up for" goes on counting.
        up_since = previous.up_since
    elif up and previous.since and previous.state != "up" and newest_child is not None:
        # It came up just now, perhaps on an IKE SA that was up before (a terminated CHILD_SA
        # connected again): up since the tunnel came in, not since the IKE SA did.
        up_since = float(int(at - newest_child))
    elif ike_up and previous.up_since and abs(up_since - previous.up_since) <= 2:
        up_since = previous.up_since
    fields = dict(state=state, ike_up=ike_up, up_since=up_since, bytes_in=bytes_in,
                  bytes_out=bytes_out, local_ts=tuple(local_ts), remote_ts=tuple(remote_ts))
    if state != previous.state:
        fields["since"] = at
    if up:
        fields["down_since"] = 0.0
    elif previous.state == "up":
        fields["down_since"] = at
    else:
        fields["down_since"] = previous.down_since or previous.since or at
    if up:  # its cause is gone: a reason is history now, and so are the attempts
        fields.update(reason="", reason_at=0.0, direction="", attempts=0, ever_up=True,
                      retry_at=0.0, disconnected=False)
    return replace(previous, **fields)


def _socket_identity(path: str) -> tuple[int, int] | None:
    """Which VICI socket file is there: charon unlinks and binds it anew each time it starts."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


class CounterRing:
    """The last SAMPLES (time, bytes in, bytes out) of one peer in a flat array: a thousand peers'
    hour costs about as much memory as a few of their rows in a dict of tuples would."""

    __slots__ = ("values", "next", "count")

    def __init__(self):
        self.values = array.array("d", bytes(8 * 3 * SAMPLES))
        self.next = 0
        self.count = 0

    def add(self, at: float, bytes_in: int, bytes_out: int) -> None:
        i = 3 * self.next
        self.values[i:i + 3] = array.array("d", (at, bytes_in, bytes_out))
        self.next = (self.next + 1) % SAMPLES
        self.count = min(self.count + 1, SAMPLES)

    def samples(self) -> list[tuple[float, int, int]]:
        start = (self.next - self.count) % SAMPLES
        out = []
        for k in range(self.count):
            i = 3 * ((start + k) % SAMPLES)
            out.append((self.values[i], int(self.values[i + 1]), int(self.values[i + 2])))
        return out


class Monitor(threading.Thread):
    """Keeps the snapshot. One listening socket, plus a short session for each query it makes.

    `reason_of(name, message)` turns a log line into an administrator's reason (the driver's
    `Failures.note_log`); `on_connected()` runs each time it (re)connects to charon (a restarted
    charon has forgotten what was loaded over VICI); `expected()` names the connections this UI
    loaded, and `on_missing(names)` gets those charon no longer has; `on_given_up(names)` gets
    tunnels that should be up and that charon has stopped trying."""

    def __init__(self, socket_path: str, session, query_timeout: float = 5.0,
                 sync_period: float = 5.0, reason_of: Callable[[str, str], str | None] = None,
                 on_connected=None, expected: Callable[[], Iterable[str]] = None,
                 on_missing=None, retry: float = 2.0, tick: float = 1.0,
                 meant_up: Callable[[str, TunnelState], bool] = None, initiate: Callable[[str], None] = None,
                 backoff: float = 30.0, backoff_max: float = 600.0,
                 peers_at: Callable[[str, str], Iterable[str]] = None, log_book: PeerLog = None,
                 close: Callable[[str, int], None] = None):
        super().__init__(name="vici-monitor", daemon=True)
        self.socket_path = socket_path
        self.session = session  # vici_wire.session: the one place VICI errors are translated
        self.query_timeout = query_timeout
        self.sync_period = sync_period
        self._period = sync_period  # the wait before the next full listing: QUIET_STRETCH
        self.reason_of = reason_of or (lambda name, message: vm.failure_reason(message))
        self.on_connected = on_connected
        self.expected = expected or (lambda: ())
        self.on_missing = on_missing
        self.retry = retry
        self.tick = tick
        self.meant_up = meant_up or (lambda name, tunnel: False)
        self.initiate = initiate
        self.backoff, self.backoff_max = backoff, backoff_max
        # peers_at(address, remote_id): the peers a remote at `address` (presenting `remote_id`,
        # when known) may be; attributes the lines of IKE SAs the remote started (the store knows)
        self.peers_at = peers_at or (lambda address, remote_id: ())
        self.log_book = log_book if log_book is not None else PeerLog()
        self._sa_peers: dict[str, tuple[str, ...]] = {}  # IKE SA unique id -> the peers it is about
        self._sa_ids: dict[str, tuple[str, str]] = {}  # unique id -> (ID asked of us, ID presented)
        self._sa_reason: dict[str, str] = {}  # unique id -> the last reason its lines gave
        self._delays: dict[str, float] = {}  # name -> the wait before its next retry
        self.close = close  # close(name, IKE SA unique id): end one IKE SA, telling the peer
        self._duplicated: dict[str, float] = {}  # name -> since when (monotonic) it has two
        self._scanned = 0.0
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._snapshot = StateSnapshot()
        self._sas: dict[str, tuple[IkeSA, ...]] = {}
        self._history: dict[str, collections.deque[Transition]] = {}
        # name -> (reason, asked, until (monotonic), the IKE SA ids the action replaces)
        self._asked: dict[str, tuple[str, str, float, frozenset[int]]] = {}
        self._counters: dict[str, CounterRing] = {}
        self._initiated: dict[str, str] = {}  # IKE SA unique id -> "we" or the remote's address
        self._polled_at = 0.0  # monotonic: when a page last read the snapshot
        self._synced_at = 0.0  # monotonic: the last full list-sas
        self._checked_at = 0.0  # monotonic: the last get-conns
        self._sampled_at = 0.0
        self._dirty: set[str] = set()
        # settle(): listings are numbered as they start; the last one applied to the snapshot
        self._listings = 0
        self._applied = 0
        self._listed = threading.Condition(self._lock)
        self._wake = _Wake()
        self._identity: tuple[int, int] | None = None
        self._listener = None  # the listening socket, while connected
        self._was_up = False  # this connection got as far as a first listing
        self._lost_at = 0.0  # wall clock: when a listener that was up broke (0: it did not)
        # note_restart(): (reason, the charon being replaced (socket identity), until (monotonic))
        self._restart: tuple[str, tuple[int, int], float] | None = None

    # --- what the web requests read --------------------------------------------------------------
    def snapshot(self, polled: bool = True) -> StateSnapshot:
        if polled:
            if time.monotonic() - self._polled_at > 2 * self.sync_period:
                self._period = self.sync_period
                self._wake.set()  # a page opened after a quiet spell: bring the counters up to date
            self._polled_at = time.monotonic()
        return self._snapshot

    def history(self, name: str) -> list[Transition]:
        """The peer's last transitions, oldest first."""
        with self._lock:
            return list(self._history.get(name, ()))

    def counters(self, name: str) -> list[tuple[float, int, int]]:
        """The peer's byte counters sampled while pages polled: (time, in, out), oldest first."""
        with self._lock:
            ring = self._counters.get(name)
            return ring.samples() if ring else []

    def log_lines(self, name: str) -> list[LogLine]:
        """charon's recent lines about this peer, oldest first (webui/drivers/peer_log.py)."""
        return self.log_book.lines(name)

    # --- what the driver tells it ----------------------------------------------------------------
    def note_asked(self, name: str, reason: str, stays_down: bool = False,
                   replacing: Iterable[int] = ()) -> None:
        """The admin is about to act on the tunnel (before the command, so the event it causes
        finds the note): its next drop is theirs, with `reason` in the history, and not a flap.
        `stays_down`: it is meant to stay down until Connect. `replacing`: the IKE SAs (unique
        ids) the action replaces; once the tunnel is up on others, the action is over, drop or
        not, and the note goes (a drop after that is no one's doing)."""
        with self._lock:
            self._asked[name] = (reason, ASKED_DOWN if stays_down else ASKED_BACK,
                                 time.monotonic() + ASKED_FOR, frozenset(replacing))

    def note_done(self, name: str) -> None:
        """The admin's action is over (its result listed): what changes next is not theirs."""
        with self._lock:
            self._asked.pop(name, None)

    def note_late(self, name: str) -> None:
        """The action the admin asked for has not shown its result in the time it normally takes
        (settle() timed out): its note lasts only ASKED_LATE longer."""
        with self._lock:
            pending = self._asked.get(name)
            if pending:
                until = min(pending[2], time.monotonic() + ASKED_LATE)
                self._asked[name] = (pending[0], pending[1], until, pending[3])

    def note_not_asked(self, name: str) -> None:
        """The admin's action was refused: it changed nothing, and what changes next is not
        theirs (a tunnel noted down on purpose is not any more)."""
        with self._lock:
            pending = self._asked.pop(name, None)
        if pending and pending[1] == ASKED_DOWN:
            self._update(name, lambda t: replace(t, disconnected=False, reason="")
                         if t.disconnected and t.reason == pending[0] else t)

    def note_disconnected(self, name: str, reason: str = DISCONNECTED) -> None:
        """Taken down by the admin (Disconnect; Terminate of its CHILD_SA): not retried until
        Connect, and not a flap."""
        self.note_asked(name, reason, stays_down=True)
        self._update(name, lambda t: replace(t, disconnected=True, reason=reason,
                                             reason_at=time.time(), direction="", retry_at=0.0))

    def note_restart(self, reason: str | None, charon: tuple[int, int] | None,
                     lasting: float = ASKED_FOR) -> None:
        """The admin is about to replace `charon` (the VICI socket's identity, the driver's
        reading): when the monitor finds another charon in its place, within `lasting`, every
        tunnel's drop is theirs, with `reason`. `reason` None takes the note back (the restart
        command failed and that charon still answers)."""
        with self._lock:
            self._restart = (reason, charon, time.monotonic() + lasting) \
                if reason and charon else None

    def note_connecting(self, name: str) -> None:
        with self._lock:
            self._asked.pop(name, None)
        self._update(name, lambda t: replace(t, disconnected=False, retry_at=0.0,
                                             reason="" if t.disconnected else t.reason))

    def note_reason(self, name: str, reason: str, direction: str = "we") -> None:
        self._update(name, lambda t: replace(t, reason=reason, reason_at=time.time(),
                                             direction=direction))

    def note_retry(self, name: str, at: float) -> None:
        self._update(name, lambda t: replace(t, retry_at=at))

    def note_loaded(self, names: Iterable[str] = (), unloaded: Iterable[str] = (),
                    everything: frozenset[str] | None = None) -> None:
        """What the driver just loaded or unloaded (or, after a reconcile, all charon holds)."""
        with self._lock:
            loaded = everything if everything is not None else \
                (self._snapshot.loaded | set(names)) - set(unloaded)
            if loaded != self._snapshot.loaded:
                tunnels = dict(self._snapshot.tunnels)
                for name in loaded - tunnels.keys():
                    tunnels[name] = TunnelState(name=name, state="down", since=time.time())
                self._publish(loaded=frozenset(loaded), tunnels=tunnels)

    def forget(self, name: str) -> None:
        with self._lock:
            self._sas.pop(name, None)
            self._history.pop(name, None)
            self._asked.pop(name, None)
            self._counters.pop(name, None)
            self.log_book.forget(name)
            tunnels = dict(self._snapshot.tunnels)
            if tunnels.pop(name, None) is not None:
                self._publish(tunnels=tunnels)

    def refresh(self, name: str) -> None:
        """Ask charon for this connection's SAs soon (after Connect, say)."""
        with self._lock:
            self._dirty.add(name)
        self._wake.set()

    def settle(self, name: str, until: Callable[[tuple[IkeSA, ...]], bool] | None = None,
               timeout: float = 3.0) -> bool:
        """After the admin acted on the tunnel: wait until the snapshot holds a listing of its
        SAs that charon gave after now (and, with `until`, one where `until(sas)` holds: a
        rekey is still under way when charon answers), so the page drawn next shows the state
        the action left. At most `timeout`; whether it got there."""
        deadline = time.monotonic() + timeout
        while True:
            with self._listed:
                self._dirty.add(name)
                wanted = self._listings + 1  # the next listing to start covers `name`
                self._wake.set()
                if not self._listed.wait_for(lambda: self._applied >= wanted,
                                             max(0.0, deadline - time.monotonic())):
                    return False
                sas = self._sas.get(name, ())
            if until is None or until(sas):
                return True
            if time.monotonic() + 0.1 > deadline:
                return False
            time.sleep(0.1)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout=5)

    # --- keeping the snapshot --------------------------------------------------------------------
    def _publish(self, **changes) -> None:
        """Replace the snapshot (lock held): readers see either the old one or the new one."""
        self._snapshot = replace(self._snapshot, version=self._snapshot.version + 1, **changes)

    def _update(self, name: str, change) -> None:
        with self._lock:
            tunnels = dict(self._snapshot.tunnels)
            old = tunnels.get(name) or TunnelState(name=name, state="down")
            new = change(old)
            if new != old:
                tunnels[name] = new
                self._note_transition(old, new)
                self._publish(tunnels=tunnels)

    def _note_transition(self, old: TunnelState, new: TunnelState, at: float | None = None) -> None:
        """A row in the peer's history for each change of state (lock held). A reason that comes
        while the state stays (charon's failure after the monitor saw "connecting") is the
        reason of the change into that state, not a row of its own."""
        history = self._history.setdefault(old.name, collections.deque(maxlen=HISTORY))
        if old.state == new.state:
            last = history[-1] if history else None
            if new.reason and new.reason != old.reason and new.state != "up" \
                    and not new.disconnected and last and last.new == new.state and not last.reason:
                history[-1] = last._replace(reason=new.reason)
            return
        reason, asked = new.reason, ""
        if _RANK[new.state] > _RANK[old.state] and reason == old.reason:
            reason = ""  # what kept it down explains nothing about it coming up
        # the first drop after the admin's action is theirs; back up, the action is over
        pending = self._asked.pop(old.name, None)
        if pending and pending[2] >= time.monotonic() and _RANK[new.state] < _RANK[old.state]:
            reason, asked = pending[0], pending[1]
        history.append(Transition(at or time.time(), old.state, new.state, reason, asked))

    def _apply_sas(self, by_name: dict[str, tuple[IkeSA, ...]], at: float, whole: bool,
                   loaded: frozenset[str] | None = None, listing: int = 0) -> None:
        """Replace the SAs of the names in `by_name` (of every name, when `whole`), as listed
        at `at` by the listing numbered `listing`."""
        with self._lock:
            sas = dict(by_name) if whole else {**self._sas, **by_name}
            listed_at = {**({} if whole else self._snapshot.listed_at), **dict.fromkeys(by_name, at)}
            sas = {name: found for name, found in sas.items() if found}
            tunnels = dict(self._snapshot.tunnels)
            names = set(by_name) | (set(tunnels) if whole else set())
            changed = False
            for name in names:
                old = tunnels.get(name)
                new = summarise(name, sas.get(name, ()), at, old)
                if new != old:
                    tunnels[name] = new
                    changed = True
                    if old is not None:
                        self._note_transition(old, new)
            self._sas = sas
            for name in set(by_name) & set(self._asked):
                replacing = self._asked[name][3]
                if replacing and tunnels.get(name) and tunnels[name].state == "up" and \
                        not replacing & {sa.unique_id for sa in sas.get(name, ())}:
                    del self._asked[name]  # up on new SAs without a drop seen: it is over
            for name in (set(self._duplicated) | set(sas)) if whole else by_name:
                if sum(1 for sa in sas.get(name, ()) if sa.state == "ESTABLISHED") > 1:
                    self._duplicated.setdefault(name, time.monotonic())
                else:
                    self._duplicated.pop(name, None)
            extra = {"loaded": loaded} if loaded not in (None, self._snapshot.loaded) else {}
            for name in (loaded or ()):  # loaded, no SA yet: down (not "unknown")
                if name not in tunnels:
                    tunnels[name] = TunnelState(name=name, state="down", since=at)
                    changed = True
            everything = tuple(sa for found in sas.values() for sa in found)
            if changed or extra:
                self._publish(tunnels=tunnels, sas=everything, listed_at=listed_at, **extra)
            else:
                # Only the SAs' own clocks moved (established, rekey in): worth showing the next
                # time anything renders, not a change every open page has to fetch again.
                self._snapshot = replace(self._snapshot, sas=everything, listed_at=listed_at)
            self._applied = max(self._applied, listing)
            self._listed.notify_all()

    def _confirmed(self) -> None:
        with self._lock:
            if self._snapshot.unanswered_since:
                self._publish(unanswered_since=0.0, error="", confirmed_at=time.time())
            else:  # not a change anyone has to re-render for
                self._snapshot = replace(self._snapshot, confirmed_at=time.time())

    def _unanswered(self, error: str) -> None:
        with self._lock:
            if not self._snapshot.unanswered_since or self._snapshot.error != error:
                since = self._snapshot.unanswered_since or self._snapshot.confirmed_at or time.time()
                self._publish(unanswered_since=since, error=error)

    # --- talking to charon -----------------------------------------------------------------------
    def _list_sas(self, name: str | None = None, vs=None) -> dict[str, tuple[IkeSA, ...]]:
        """The IKE SAs by connection name, all of them or `name`'s. Asked with `noblock`, so one
        IKE SA charon keeps busy cannot hold up the whole listing; but charon then leaves out any
        IKE SA in use at that moment (a rekey, a DPD, a message being handled): missing from the
        answer, not gone. A peer whose SAs the snapshot holds and the answer lacks is asked
        again, waiting for its SAs (bounded by the query timeout), before its tunnel is taken
        for down; a real drop costs one more short question."""
        found = self._query_sas({"noblock": "yes"} | ({"ike": name} if name else {}), vs)
        with self._lock:
            held = dict(self._sas)
        missing = [n for n in ((name,) if name else held) if held.get(n) and n not in found]
        if len(missing) > CONFIRM_AT_MOST:
            return found  # a storm of drops (charon restarted): they are real, no SA is busy
        for gone in missing:
            try:
                again = self._query_sas({"ike": gone}, vs).get(gone)
            except DriverError as err:
                log.info("listing %s again: %s; its SAs are kept as they were", gone, err)
                again = held[gone]
            if again:
                found[gone] = again
        return found

    def _query_sas(self, query: dict, vs=None) -> dict[str, tuple[IkeSA, ...]]:
        """`list-sas` with `query`, on `vs` (a session open already) or a session of its own."""
        if vs is None:
            with self.session(self.socket_path, self.query_timeout) as vs:
                return self._query_sas(query, vs)
        found: dict[str, list[IkeSA]] = {}
        for event in vs.events("list-sas", "list-sa", query):
            for key, sa in event.items():
                sa_name = vm.text(key)
                found.setdefault(sa_name, []).append(vm.parse_ike_sa(sa_name, sa))
        return {n: tuple(sas) for n, sas in found.items()}

    def _get_conns(self, vs=None) -> frozenset[str]:
        if vs is None:
            with self.session(self.socket_path, self.query_timeout) as vs:
                return self._get_conns(vs)
        return frozenset(vm.text(n) for n in vs.request("get-conns").get("conns", []))

    def _next_listing(self) -> int:
        with self._lock:
            self._listings += 1
            return self._listings

    def sync(self) -> None:
        """A full list-sas and get-conns: the snapshot as charon has it now."""
        listing = self._next_listing()
        at = time.time()
        version = self._snapshot.version
        with self.session(self.socket_path, self.query_timeout) as vs:  # one connection for both
            loaded = self._get_conns(vs)
            by_name = self._list_sas(vs=vs)
        self._apply_sas(by_name, at, whole=True, loaded=loaded, listing=listing)
        self._period = self.sync_period if self._snapshot.version != version else \
            min(2 * self._period, QUIET_STRETCH * self.sync_period)
        self._synced_at = self._checked_at = time.monotonic()
        self._confirmed()
        self._sample(at)
        give_back_memory()

    def _refresh(self, names: set[str], listing: int) -> None:
        at = time.time()
        if len(names) > 20:  # a storm (charon restarted, a thousand tunnels up): one full listing
            self.sync()
            return
        by_name = {}
        for name in names:
            by_name[name] = self._list_sas(name).get(name, ())
        self._apply_sas(by_name, at, whole=False, listing=listing)
        self._confirmed()

    def _check_loaded(self) -> None:
        loaded = self._get_conns()
        self._checked_at = time.monotonic()
        self._confirmed()
        if loaded != self._snapshot.loaded:
            with self._lock:
                self._publish(loaded=loaded)
        missing = sorted(set(self.expected()) - loaded)
        if missing and self.on_missing is not None:
            log.warning("strongSwan no longer has %d connection(s) this UI loaded (%s): "
                        "loading them again", len(missing), ", ".join(missing[:5]))
            self.on_missing(missing)

    def _sample(self, at: float) -> None:
        if time.monotonic() - self._sampled_at < SAMPLE_EVERY:
            return
        self._sampled_at = time.monotonic()
        with self._lock:
            for name, tunnel in self._snapshot.tunnels.items():
                if tunnel.state == "up":
                    self._counters.setdefault(name, CounterRing()).add(at, tunnel.bytes_in,
                                                                       tunnel.bytes_out)

    # --- the thread ------------------------------------------------------------------------------
    def run(self) -> None:
        self._wake.open()
        try:
            self._run()
        finally:
            self._wake.close()

    def _run(self) -> None:
        pause = 0.0
        while not self._stopping.wait(pause):
            self._was_up = False
            try:
                self._listen()
            except DriverError as err:
                # A listener that was up and broke is not news yet: the reconnect, at once, says
                # whether charon is gone (not running) or it was only this socket.
                if not self._was_up:
                    self._unanswered(str(err))
            except Exception:  # noqa: BLE001 - the monitor must outlive a bug in one event
                log.exception("the VICI monitor failed; reconnecting")
                self._unanswered("the UI's connection to strongSwan failed")
            if self._was_up and not self._lost_at:
                self._lost_at = time.time()  # when the old charon went, if a new one answers
            # A listener that was up and broke tries again at once (charon restarting binds its
            # socket anew within a second); one that could not connect waits a little.
            pause = 0.0 if self._was_up else self.retry
            self.listening.clear()

    def _listen(self) -> None:
        with self.session(self.socket_path, self.query_timeout) as vs:
            identity = _socket_identity(self.socket_path)
            for event in EVENTS:
                vs.register(event)
            # Registered: from here on no event is missed, whatever the listing below takes.
            self.listening.set()
            if None not in (identity, self._identity) and identity != self._identity:
                self._charon_replaced(self._identity)
            self._lost_at = 0.0
            self.sync()
            self._was_up = True
            if identity is None or identity != self._identity:
                # A new charon (or the first): it holds nothing loaded over VICI. The same charon
                # after a stall still has everything: reloading a thousand peers would be waste.
                self._identity = identity
                self._connected()
            sock = self._listener = vs.transport.socket
            transport = vs.transport
            while not self._stopping.is_set():
                # A packet the transport read along with the last one is not in the socket any
                # more: select() would sleep on it.
                ready = transport.buffered() or \
                    sock in select.select([sock, self._wake], [], [], self.tick)[0]
                if ready:
                    self._handle(transport.receive())
                    # drain what is already there before asking charon anything
                    while (transport.buffered() or select.select([sock], [], [], 0)[0]) \
                            and len(self._dirty) < 1000:
                        self._handle(transport.receive())
                if self._wake.is_set():
                    self._wake.clear()
                self._periodic()

    def _charon_replaced(self, old: tuple[int, int]) -> None:
        """Another charon answers than the one listened to before: every SA went with that one,
        whatever the new one has started since. Each tunnel not down dropped when the listener
        broke: the admin's doing when they restarted that very charon (note_restart), not
        otherwise (a crash, a restart by someone else: a flap)."""
        at = self._lost_at or time.time()
        with self._lock:
            note, self._restart = self._restart, None
            asked = note is not None and note[1] == old and note[2] >= time.monotonic()
            reason = note[0] if asked else CHARON_REPLACED
            tunnels = dict(self._snapshot.tunnels)
            for name, tunnel in tunnels.items():
                self._asked.pop(name, None)  # an action on the old charon's SAs is over
                if tunnel.state == "down":
                    continue
                tunnels[name] = replace(tunnel, state="down", since=at, ike_up=False,
                                        up_since=0.0, bytes_in=0, bytes_out=0, local_ts=(),
                                        remote_ts=(), retry_at=0.0)
                self._asked[name] = (reason, ASKED_BACK if asked else "", float("inf"), frozenset())
                self._note_transition(tunnel, tunnels[name], at)
            self._sas = {}
            self._duplicated.clear()
            self._publish(tunnels=tunnels, sas=(), listed_at={})
        log.info("a new charon answers: %s", reason)

    def _connected(self) -> None:
        if self.on_connected is None:
            return
        try:
            self.on_connected()
        except Exception:  # noqa: BLE001 - the listener must outlive a failed callback
            log.exception("reloading peers after charon (re)connected failed")

    def _periodic(self) -> None:
        try:
            self._due()
        except DriverError as err:
            # The listener itself is fine (events still come when charon does): say that charon
            # is not answering and try again next period, without tearing the session down.
            self._unanswered(str(err))
            self._synced_at = self._checked_at = time.monotonic()

    def _due(self) -> None:
        now = time.monotonic()
        if self._dirty:
            with self._lock:  # settle() adds its name and reads the number under this lock
                names, self._dirty = self._dirty, set()
                self._listings += 1
                listing = self._listings
            try:
                self._refresh(names, listing)
            except DriverError:
                with self._lock:
                    self._dirty |= names
                raise
        self._retry_given_up()
        self._close_duplicates()
        polled = now - self._polled_at < 2 * self.sync_period
        if polled and now - self._synced_at >= self._period:
            self.sync()
        elif now - self._checked_at >= self.sync_period:
            self._check_loaded()

    def _retry_given_up(self) -> None:
        """Tunnels meant to be up that charon has stopped trying (keying tries spent, or a fatal
        notify such as AUTHENTICATION_FAILED, after which charon never retries): initiate them again after `backoff` seconds, doubling
        to `backoff_max`, so a remote fixed at any hour comes up without a click. A Disconnect
        stops it until Connect. `meant_up(name, tunnel)` says which (the store knows)."""
        now = time.time()
        if self.initiate is None or self._snapshot.unanswered_since or now - self._scanned < 1:
            return
        self._scanned = now
        tunnels = self._snapshot.tunnels
        for name in self.expected():
            tunnel = tunnels.get(name)
            if tunnel is None:
                continue
            # Not an "up but partial" tunnel: a new CHILD_SA on its IKE SA is narrowed the same
            # way, and tearing down what does pass, every backoff, for a remote that narrows on
            # purpose would be worse than the partial tunnel the row shows.
            given_up = (tunnel.state == "down" or (tunnel.state == "ike-up" and tunnel.reason)) \
                and not tunnel.disconnected
            if not given_up:
                if tunnel.state == "up":
                    self._delays.pop(name, None)
                if tunnel.retry_at:
                    self.note_retry(name, 0.0)
                continue
            if not tunnel.retry_at:
                if self.meant_up(name, tunnel):
                    self.note_retry(name, now + self._delays.setdefault(name, self.backoff))
            elif now >= tunnel.retry_at:
                self._delays[name] = min(2 * self._delays.get(name, self.backoff),
                                         self.backoff_max)
                self.note_retry(name, 0.0)
                log.info("retrying %s: strongSwan had given up on it", name)
                try:
                    self.initiate(name)
                except DriverError as err:
                    log.info("retrying %s: %s", name, err)
                self._dirty.add(name)

    def _close_duplicates(self) -> None:
        """Two ends that both start a tunnel, at the same moment, each complete a negotiation:
        two IKE SAs (each with its CHILD_SA) for one tunnel, which strongSwan keeps (a
        uniqueness policy acts only when it answers, and each end answered the other before its
        own was up). Once that has lasted DUPLICATE_GRACE, close all but the newest, with a
        DELETE the other end honours. That ends a duplicate and starts nothing: closing is not a
        failure, so neither end's retry, DPD or close action initiates again."""
        if self.close is None:
            return
        now = time.monotonic()
        for name, since in list(self._duplicated.items()):
            if now - since < DUPLICATE_GRACE:
                continue
            del self._duplicated[name]
            found = [sa for sa in self._list_sas(name).get(name, ()) if sa.state == "ESTABLISHED"]
            found.sort(key=lambda sa: sa.established_for or 0)
            for older in found[1:]:
                log.info("closing a duplicate IKE SA of %s (#%d): both ends started it at once",
                         name, older.unique_id)
                try:
                    self.close(name, older.unique_id)
                except DriverError as err:
                    log.info("closing a duplicate IKE SA of %s: %s", name, err)
            self._dirty.add(name)

    def _handle(self, packet: bytes) -> None:
        if packet[:1] != bytes([Packet.EVENT]):
            return  # a late confirmation: nothing to do
        kind = packet[2:2 + packet[1]].decode()
        message = event_message(packet)
        if kind == "log":
            self._log_line(message)
            return
        self._period = self.sync_period  # a tunnel changed: its counters are news again
        for key in message:
            name = vm.text(key)
            if name != "up":
                self._dirty.add(name)

    def _log_line(self, event: dict) -> None:
        text = vm.text(event.get("msg"))
        name = vm.text(event.get("ikesa-name"))
        name = "" if name == _UNNAMED else name
        uid = vm.text(event.get("ikesa-uniqueid"))
        peers = self._peers_of(name, uid, text)
        level = vm._int(event.get("level"))
        for peer in peers:
            self.log_book.add(peer, time.time(), 0 if level is None else level,
                              int(uid) if uid.isdigit() else 0, text)
        if _WE_INITIATE.match(text):
            self._initiated[uid] = "we"
            if name:
                self._update(name, lambda t: replace(t, attempts=t.attempts + 1))
            return
        they = _THEY_INITIATE.match(text)
        if they:
            self._initiated[uid] = they.group(1)
            return
        if name and _THEY_DELETE.match(text):
            # The remote closed it: a drop that follows is its doing, not the admin's, even
            # while a note of the admin's action is pending (review24 M2). Unless another IKE
            # SA of the peer is listed up: then the remote replaced this one (its rekey, or a
            # reauthentication that makes before it breaks) and the tunnel goes on.
            gone = int(uid) if uid.isdigit() else None
            with self._lock:
                if any(sa.unique_id != gone and sa.state in _UP_IKE
                       for sa in self._sas.get(name, ())):
                    self._dirty.add(name)
                    return
                self._asked.pop(name, None)
                self._closed_by_remote(name)
            self._update(name, lambda t: replace(t, reason=CLOSED_BY_REMOTE, reason_at=time.time(),
                                                 direction=""))
            self._dirty.add(name)
            return
        reason = self.reason_of(name, text)
        if reason and uid and (ids := self._sa_ids.get(uid)) and "peer config" in text:
            reason = failure_reasons.id_mismatch(presented=ids[1], asked_for=ids[0])
        # IKEv1 with a wrong key ends that way: charon cannot read the answers and retransmits
        # until it gives up. That it gave up is not the news; the key is.
        if reason == failure_reasons.NOT_RESPONDING and self._sa_reason.get(uid, reason) != reason:
            reason = None
        if reason and peers:
            if uid:
                self._sa_reason[uid] = reason
            direction = self._initiated.get(uid, "")
            for peer in peers:
                self._update(peer, lambda t: replace(t, reason=reason, reason_at=time.time(),
                                                     direction=direction))
                self._dirty.add(peer)
        for table in (self._initiated, self._sa_peers, self._sa_ids, self._sa_reason):
            if len(table) > 4096:  # unique ids only grow: keep the newest half
                for key in list(table)[:len(table) - 2048]:
                    del table[key]

    def _closed_by_remote(self, name: str) -> None:
        """charon raises its log lines to VICI from a queue of their own and `ike-updown` at
        once, so the remote's DELETE line may come after the listing that saw the drop: a drop
        that just took a pending note of an action meant to come straight back is the remote's
        (lock held). A Disconnect or a Terminate is done when charon answers; never rewritten."""
        history = self._history.get(name)
        last = history[-1] if history else None
        if last and last.asked == ASKED_BACK and last.reason != RESTARTED and \
                _RANK[last.new] < _RANK[last.old] and time.time() - last.at < LATE_LOG:
            history[-1] = last._replace(reason=CLOSED_BY_REMOTE, asked="")

    def _peers_of(self, name: str, uid: str, text: str) -> tuple[str, ...]:
        """Which peers a log line is about: its connection's name when charon gives one; for an
        IKE SA the remote started, before charon chose a connection, the peers at the remote's
        address (narrowed by the ID it presented, once it has); a few lines about no IKE SA name
        their connection in the text."""
        if name:
            if uid:
                self._sa_peers[uid] = (name,)
            return (name,)
        if not uid:
            loaded = _CONNECTION.match(text)
            return (loaded.group(1),) if loaded else ()
        looking = _LOOKING.match(text)
        if looking:
            asked_for, address, presented = looking.group(2) or "", looking.group(3), looking.group(4)
            if asked_for == looking.group(1):
                asked_for = ""  # this router's own address: the default, not worth a word
            self._sa_ids[uid] = (asked_for, presented)
            self._sa_peers[uid] = tuple(self.peers_at(address, presented))
        elif uid not in self._sa_peers:
            source = _FROM.match(text) or _THEY_INITIATE.match(text)
            if not source:
                return ()
            self._sa_peers[uid] = tuple(self.peers_at(source.group(1), ""))
        return self._sa_peers[uid]
