"""The strongSwan driver: what the IPsec page asks of charon, one short-lived VICI session per call.

The bytes go over the socket in `vici_wire` (sessions with a timeout, closed on exit, every
failure a DaemonUnavailable or, when charon answered and refused, a CommandFailed); messages are
built and answers parsed in `vici_messages`, which is pure; why a tunnel failed is kept by
`failure_reasons.Failures`. The tunnel-state monitor is `monitor.py`.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from webui import capabilities
from webui.atomic import write_atomic
from webui.drivers import (CommandFailed, Connection, DaemonUnavailable, DriverError, IkeSA,
                           IPsecStatus, LogLine, StateSnapshot, Step, Transition, TunnelState,
                           child_env)
from webui.drivers import vici_messages as vm
from webui.drivers.failure_reasons import Failures
from webui.drivers.monitor import (ASKED_FOR, CHILD_TERMINATED, REAUTHENTICATED, REKEYED, RELOADED,
                                   RESTARTED)
# `stream` is not used here: tests and the lab reach the wire as strongswan.stream too.
from webui.drivers.vici_wire import (DEFAULT_TIMEOUT, call, events, request, session, stream,  # noqa: F401
                                     streamed)
from webui.peers import Peer

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/run/charon.vici"


BUSY = "strongSwan is busy or not answering"


class Gate:
    """At most one web request at a time talks to charon; the others answer at once.

    A hung charon (stopped, wedged) holds whoever asks it for the whole VICI timeout. Waitress has
    a handful of threads, so without this a few open tabs would stall every page of the UI. A
    healthy charon answers in milliseconds, so requests that queue here briefly lose nothing;
    those that would wait longer than `wait` are told it is busy instead of joining the wait.
    """

    def __init__(self, wait: float = 0.5):
        self.wait = wait
        self._lock = threading.Lock()
        self._since = 0.0

    @contextlib.contextmanager
    def __call__(self):
        if not self._lock.acquire(timeout=self.wait):
            held = time.monotonic() - self._since
            raise DaemonUnavailable(f"{BUSY}: another request has been waiting for it for "
                                    f"{held:.0f} s. Try again in a moment.")
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._lock.release()


# --- The driver ----------------------------------------------------------------------------------

STATE_FILE = "ipsec-loaded.json"
# How long a save waits for the old IKE SAs to be deleted before it starts the new one.
TERMINATE_WAIT_MS = 2000
# A VICI value carries a 16-bit length: anything longer cannot even be encoded.
VICI_MAX_VALUE = 65535

# charon's "invalid value for: <key>" names the message key; the form wants the peer field.
_FIELDS = {"esp_proposals": "esp_encryption", "proposals": "ike_encryption",
           "local_ts": "local_networks", "remote_ts": "remote_networks",
           "local_addrs": "local_ip", "remote_addrs": "remote_gateway"}


def field_at_fault(message: str) -> str | None:
    for key, field in _FIELDS.items():  # esp_proposals before proposals: it contains it
        if f"for: {key}" in message:
            return field
    return None


def _check_sizes(message) -> None:
    """Refuse a message charon could not even decode, before it breaks the session for others."""
    values = message.values() if isinstance(message, dict) else message
    for value in values:
        if isinstance(value, (dict, list)):
            _check_sizes(value)
        elif len(str(value).encode()) > VICI_MAX_VALUE:
            raise CommandFailed("A value of this peer is too long for strongSwan.")


# Said after an action's outcome when the monitor has not seen it through yet.
STILL_AT_IT = (" strongSwan is still at it: Now shows the result when it has it (without "
               "JavaScript, reload the page).")


def _replaced_ike(ike_id: int) -> Callable[[tuple[IkeSA, ...]], bool]:
    """Whether a rekey or reauthentication of IKE SA `ike_id` is done: another IKE SA is
    established with its tunnel installed."""
    return lambda sas: any(sa.unique_id != ike_id and sa.state == "ESTABLISHED" and
                           any(c.state == "INSTALLED" for c in sa.children) for sa in sas)


def _replaced_child(child_id: int) -> Callable[[tuple[IkeSA, ...]], bool]:
    """Whether a rekey of CHILD_SA `child_id` is done: another one is installed in its place."""
    def done(sas):
        children = [c for sa in sas for c in sa.children]
        return not any(c.unique_id == child_id and c.state == "INSTALLED" for c in children) \
            and any(c.state == "INSTALLED" for c in children)
    return done


def default_restart_command() -> list[str] | None:
    """How this host restarts strongSwan: systemd, OpenWrt, or unknown (None)."""
    if Path("/run/systemd/system").is_dir():
        return ["systemctl", "restart", "strongswan"]
    if Path("/etc/openwrt_release").exists():
        return ["/etc/init.d/swanctl", "restart"]
    return None


class ViciDriver:
    """strongSwan over VICI, as the IPsec page uses it. Thread-safe; one VICI session per call."""

    def __init__(self, socket_path: str | Path = DEFAULT_SOCKET, data_dir: str | Path = ".",
                 restart_command: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = 10.0, restart_wait: float = 20.0,
                 busy_wait: float = 0.5):
        self.socket_path = str(socket_path)
        self.state_path = Path(data_dir) / STATE_FILE
        self.restart_command = list(restart_command) if restart_command else None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.restart_wait = restart_wait
        self.failures = Failures()
        self.gate = Gate(busy_wait)
        self._lock = threading.Lock()  # one change to charon at a time, and to the names' file
        # The names this UI loaded. Replaced, never changed in place, so status() reads it without
        # the lock: a reconcile of 1000 peers holds the lock for seconds.
        self._managed: frozenset[str] = self._read_state()
        # A keyed digest of each loaded peer's authentication settings (vm.sa_settings), kept with
        # the names: a reconcile that finds a peer's key or IDs changed since it was loaded (peers
        # restored or edited while the UI was down) ends the SAs the old settings authenticated.
        self._salt, self._digests = self._read_digests()
        self._algorithms: frozenset[str] | None = None
        self._monitor = None  # webui.drivers.monitor.Monitor, once watch() started it
        self._loaded_charon: tuple[int, int] | None = None  # socket identity at the last reconcile
        self._external_cache: tuple[frozenset[str], list[Connection]] = (frozenset(), [])

    # --- what this UI loaded ---------------------------------------------------------------------
    def _read_state(self) -> frozenset[str]:
        try:
            return frozenset(json.loads(self.state_path.read_text())["loaded"])
        except FileNotFoundError:
            return frozenset()
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable %s", self.state_path)
            return frozenset()

    def _read_digests(self) -> tuple[bytes, dict[str, str]]:
        try:
            doc = json.loads(self.state_path.read_text())
            return bytes.fromhex(doc["salt"]), dict(doc.get("settings", {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return secrets.token_bytes(16), {}

    def _digest(self, peer: Peer) -> str:
        settings = json.dumps(vm.sa_settings(peer)).encode()
        return hmac.new(self._salt, settings, hashlib.sha256).hexdigest()

    def _save_state(self) -> None:
        self._digests = {n: d for n, d in self._digests.items() if n in self._managed}
        data = json.dumps({"loaded": sorted(self._managed), "salt": self._salt.hex(),
                           "settings": self._digests}, indent=1).encode()
        write_atomic(self.state_path, data, mode=0o600)

    @contextlib.contextmanager
    def _session(self, timeout: float | None = None):
        with self.gate(), session(self.socket_path, timeout or self.timeout) as vs:
            yield vs

    @contextlib.contextmanager
    def _changing(self):
        """The change lock, waited for at most one VICI timeout: a reconcile of many peers holds
        it for seconds, and a web request must not hang behind it for longer."""
        if not self._lock.acquire(timeout=self.timeout):
            raise DaemonUnavailable(f"{BUSY}: another change to strongSwan is still being "
                                    f"applied.")
        try:
            yield
        finally:
            self._lock.release()

    # --- loading ---------------------------------------------------------------------------------
    @staticmethod
    def _messages(peer: Peer) -> tuple[dict, dict]:
        """load-shared and load-conn for the peer, built once per load (InvalidProposal, a
        CommandFailed, when its algorithms make no proposal)."""
        messages = vm.load_shared(peer), vm.load_conn(peer)
        for message in messages:
            _check_sizes(message)
        return messages

    def _load(self, vs, peer: Peer, supported: frozenset[str] | None,
              renew: bool = False) -> bool:
        """Load the peer; with `renew` (or when its key, IDs, addresses or IKE version differ from
        what was loaded before), end the IKE SAs authenticated under the old settings and start
        the tunnel again: neither load-shared nor load-conn touches an established SA. Whether
        it did that."""
        # charon does not leave out an algorithm it lacks: it fails the whole negotiation. So it
        # gets the peer without them (the store keeps them; the page says what was left out).
        usable = capabilities.loadable(peer, supported)
        if usable is None:
            raise CommandFailed(f"{peer.name} {capabilities.check(peer, supported).message}",
                                field=capabilities.first_lacking_field(peer, supported))
        shared, conn = self._messages(usable)
        digest = self._digest(peer)
        renew = renew or self._digests.get(peer.name, digest) != digest
        old_sas = self._sa_ids(vs, peer.name) if renew else ()
        # Forget the old failure before loading: charon starts the tunnel at once, and its new
        # failure may be noted by the watcher before load-conn even answers.
        self.failures.clear(peer.name)
        request(vs, "load-shared", shared)
        try:
            request(vs, "load-conn", conn)
        except CommandFailed as err:
            raise CommandFailed(f"strongSwan refused peer {peer.name}: {err.reason}",
                                field=field_at_fault(err.reason), reason=err.reason) from None
        self._managed = self._managed | {peer.name}
        self._digests[peer.name] = digest
        if self._monitor is not None:
            self._monitor.note_loaded([peer.name])
        log.info("loaded connection %s", peer.name)
        if old_sas:
            if self._monitor is not None:
                self._monitor.note_asked(peer.name, RELOADED, replacing=old_sas)
            self._renew(vs, peer, old_sas)
        return bool(old_sas)

    def _start_if_down(self, vs, peer: Peer) -> None:
        """After a change to a loaded peer meant to be up: start its tunnel now if it is down.
        charon starts a connection when it is first loaded, not when it is replaced, so a change
        that fixes a tunnel charon gave up on (the proposals, the key) would otherwise wait for
        the monitor's next retry, minutes away after a few failures. A Disconnect stands."""
        if peer.start_action != "start":
            return
        tunnel = self._monitor.snapshot(polled=False).tunnels.get(peer.name) \
            if self._monitor is not None else None
        if tunnel is not None and tunnel.disconnected:
            return
        sas = vm.parse_sas(events(vs, "list-sas", "list-sa", {"ike": peer.name, "noblock": "yes"}))
        if any(child.state == "INSTALLED" for sa in sas for child in sa.children):
            return
        if self._monitor is not None:
            self._monitor.note_connecting(peer.name)
        self._initiate(vs, peer, "after a change")

    @staticmethod
    def _sa_ids(vs, name: str) -> tuple[int, ...]:
        sas = vm.parse_sas(events(vs, "list-sas", "list-sa", {"ike": name, "noblock": "yes"}))
        return tuple(sa.unique_id for sa in sas if sa.name == name)

    def _renew(self, vs, peer: Peer, old_sas: Sequence[int]) -> None:
        """Terminate the IKE SAs `old_sas` (by unique id, so an SA the new settings already started
        is spared), then start the tunnel unless one is already on its way."""
        for unique_id in old_sas:
            try:
                streamed(vs, "terminate", "control-log",
                         {"ike-id": unique_id, "force": "yes", "timeout": TERMINATE_WAIT_MS})
            except CommandFailed as err:
                log.info("terminating %s's old IKE SA %d: %s", peer.name, unique_id, err)
        log.info("ended the IKE SAs of %s authenticated with its old settings", peer.name)
        if set(self._sa_ids(vs, peer.name)) - set(old_sas) or not peer.enabled:
            return
        self._initiate(vs, peer, "again")

    @staticmethod
    def _initiate(vs, peer: Peer, when: str) -> None:
        """Start each of the peer's CHILD_SAs without waiting (charon retries on its own); a
        refusal is logged, not raised: the save or renewal it follows has already succeeded."""
        for child, _, _ in vm.child_selectors(peer):
            try:
                streamed(vs, "initiate", "control-log",
                         {"child": child, "ike": peer.name, "timeout": -1})
            except CommandFailed as err:
                log.info("starting %s %s: %s", peer.name, when, err)

    def _unload(self, vs, name: str, loaded: set[str]) -> None:
        """Unload the connection and its key, and end its SAs (unload-conn leaves them up)."""
        if name in loaded:
            request(vs, "unload-conn", {"name": name})
        request(vs, "unload-shared", {"id": vm.shared_key_id(name)})  # succeeds when absent too
        try:
            streamed(vs, "terminate", "control-log", {"ike": name, "timeout": -1})
        except CommandFailed:
            pass  # "no matching SAs to terminate found": nothing was up
        self._managed = self._managed - {name}
        self.failures.clear(name)
        if self._monitor is not None:
            self._monitor.forget(name)
            self._monitor.note_loaded(unloaded=[name])
        log.info("unloaded connection %s", name)

    @staticmethod
    def _loaded(vs) -> set[str]:
        return {vm.text(n) for n in request(vs, "get-conns").get("conns", [])}

    def apply(self, peer: Peer, previous_name: str | None = None, renew: bool = False) -> None:
        vm.check_proposals(peer)  # refuse an impossible proposal before touching charon
        supported = self.supported_algorithms()
        with self._changing(), self._session() as vs:
            try:
                loaded = self._loaded(vs)
                if previous_name and previous_name != peer.name:
                    self._unload(vs, previous_name, loaded)
                if peer.enabled:
                    if not self._load(vs, peer, supported, renew=renew) and peer.name in loaded:
                        self._start_if_down(vs, peer)
                else:
                    self._unload(vs, peer.name, loaded)
            finally:
                self._save_state()

    def remove(self, name: str) -> None:
        with self._changing(), self._session() as vs:
            try:
                self._unload(vs, name, self._loaded(vs))
            finally:
                self._save_state()

    def reconcile(self, peers: Sequence[Peer]) -> list[Step]:
        """Make charon hold what the store says; unload what this UI loaded and the store dropped;
        leave connections this UI did not create alone."""
        wanted = {p.name: p for p in peers if p.enabled}
        steps, failed = [], []
        supported = self.supported_algorithms()
        charon = self._socket_identity()  # before connecting: a charon restarted since is not this one
        with self._changing(), self._session() as vs:
            try:
                loaded = self._loaded(vs)
                self._unload_legacy_keys(vs)
                for peer in wanted.values():
                    try:
                        self._load(vs, peer, supported)
                    except CommandFailed as err:
                        failed.append(peer.name)
                        steps.append(Step(f"Load {peer.name}", False, str(err), peer=peer.name))
                stale = sorted((self._managed | {p.name for p in peers}) - set(wanted))
                for name in stale:
                    if name in loaded or name in self._managed:
                        self._unload(vs, name, loaded)
                        steps.append(Step(f"Unload {name}", True, "not an enabled peer any more"))
                everything = self._loaded(vs)
                if self._monitor is not None:
                    self._monitor.note_loaded(everything=frozenset(everything))
                self._loaded_charon = charon
            finally:
                self._save_state()
        ok = len(wanted) - len(failed)
        # The summary is "done" even when some peers failed: each failure is its own step, with
        # its peer named, so a caller can tell "charon refused X" from "charon is not there".
        steps.insert(0, Step(f"Load {ok} of {len(wanted)} enabled peer(s)", True))
        external = sorted(everything - set(wanted))
        if external:
            steps.append(Step("Leave connections not made by this UI alone", True,
                              ", ".join(external)))
        return steps

    @staticmethod
    def _unload_legacy_keys(vs) -> None:
        """Keys an older version loaded under another id: left in charon, an old key would sit
        beside the new one for the same IDs, and charon might pick it."""
        for key_id in request(vs, "get-shared").get("keys", []):
            if vm.text(key_id).startswith(vm.LEGACY_SHARED_ID_PREFIX):
                request(vs, "unload-shared", {"id": vm.text(key_id)})

    def loaded_this_charon(self) -> bool:
        """Whether the charon answering now is the one the last reconcile loaded every peer into
        (charon binds its VICI socket anew each time it starts)."""
        identity = self._socket_identity()
        return identity is not None and identity == self._loaded_charon

    def restart(self, peers: Sequence[Peer]) -> list[Step]:
        """Restart strongSwan with the configured command, wait for VICI, then reconcile."""
        if not self.restart_command:
            return [Step("Restart strongSwan", False,
                         "No restart command is configured (WEBUI_IPSEC_RESTART_COMMAND) and this "
                         "host is neither systemd nor OpenWrt.")]
        old_socket = self._socket_identity()
        if self._monitor is not None:
            # The tunnels drop with this charon: the admin's doing, not flaps. The command and
            # the wait for VICI may each take restart_wait; the monitor reconnects soon after.
            self._monitor.note_restart(RESTARTED, old_socket, 2 * self.restart_wait + ASKED_FOR)
        steps = [self._run_restart_command()]
        if not steps[0].ok:
            if self._monitor is not None and self._socket_identity() == old_socket:
                self._monitor.note_restart(None, None)  # that charon still answers
            return steps
        steps.append(self._wait_for_vici(old_socket))
        if steps[-1].ok:
            self._algorithms = None  # the new charon may have loaded other crypto plugins
            try:
                steps += self.reconcile(peers)
            except DriverError as err:
                steps.append(Step("Load peers again", False, str(err)))
        return steps

    def _run_restart_command(self) -> Step:
        what = f"Run {' '.join(self.restart_command)}"
        started = time.monotonic()
        try:
            done = subprocess.run(self.restart_command, capture_output=True, text=True,
                                  timeout=self.restart_wait, stdin=subprocess.DEVNULL,
                                  env=child_env())
        except (OSError, subprocess.TimeoutExpired) as err:
            return Step(what, False, str(err))
        detail = (done.stderr or done.stdout).strip()[-500:]
        if done.returncode != 0:
            return Step(what, False, f"exit status {done.returncode}: {detail}")
        return Step(what, True, f"done in {time.monotonic() - started:.1f} s")

    def _socket_identity(self) -> tuple[int, int] | None:
        """Which VICI socket file is there: charon unlinks and binds it anew each time it starts."""
        try:
            st = os.stat(self.socket_path)
        except OSError:
            return None
        return st.st_ino, st.st_ctime_ns

    def _wait_for_vici(self, old_socket: tuple[int, int] | None) -> Step:
        """Wait (bounded) for a charon that answers on a socket other than `old_socket`. A restart
        command may return before the old charon has gone (an init script that only signals it);
        loading the peers into a charon about to exit would report success and lose them."""
        what = "Wait for strongSwan to answer on VICI"
        started = time.monotonic()
        while True:
            if old_socket is not None and self._socket_identity() == old_socket:
                why = "the old charon's VICI socket is still in place"
            else:
                try:
                    call(self.socket_path, "version", timeout=1.0)
                    return Step(what, True, f"answered after {time.monotonic() - started:.1f} s")
                except DriverError as err:
                    why = str(err)
            if time.monotonic() - started > self.restart_wait:
                return Step(what, False, f"no answer after {self.restart_wait:g} s: {why}")
            time.sleep(0.1)

    # --- tunnels ---------------------------------------------------------------------------------
    def connect(self, name: str) -> str:
        """Bring the tunnel up now; waits at most `connect_timeout` and says what happened."""
        from webui.drivers.monitor import summarise
        if self._monitor is not None:
            self._monitor.note_connecting(name)
        with self._session(self.connect_timeout + 2) as vs:
            sas = vm.parse_sas(events(vs, "list-sas", "list-sa", {"ike": name, "noblock": "yes"}))
            current = summarise(name, sas, time.time(), None).state
            # With the IKE SA up and no tunnel (charon refused the CHILD_SA), initiating again
            # builds the CHILD_SA on that IKE SA: that is what Connect is for then.
            if current in ("up", "connecting"):
                return f"{name} is already {current}."
            conns = vm.parse_conns(streamed(vs, "list-conns", "list-conn", {"ike": name}))
            # An IKEv1 peer with several networks has a CHILD_SA per subnet pair: start each.
            children = next((c.children for c in conns if c.name == name), ()) or (name,)
            reason = None
            try:
                for child in children:
                    message = {"child": child, "ike": name,
                               "timeout": int(self.connect_timeout * 1000)}
                    for event in events(vs, "initiate", "control-log", message):
                        reason = self.failures.note_log(name, vm.text(event.get("msg"))) or reason
            except CommandFailed as err:
                reason = reason or err.reason
                self.failures.record(name, reason)
                if self._monitor is not None:
                    self._monitor.note_reason(name, reason, "we")
                    self._monitor.settle(name)
                log.info("connecting %s failed", name)
                return f"{name} did not come up: {reason}."
        self.failures.clear(name)
        if self._monitor is not None and not self._monitor.settle(name):  # drawn next: up
            return f"{name} is up." + STILL_AT_IT
        return f"{name} is up."

    def _retry(self, name: str) -> None:
        """The monitor's retry: initiate every CHILD_SA of `name`, waiting only a moment (the
        outcome arrives as events and log lines; the monitor must not stall on a slow remote)."""
        with session(self.socket_path, self.timeout) as vs:
            conns = vm.parse_conns(streamed(vs, "list-conns", "list-conn", {"ike": name}))
            children = next((c.children for c in conns if c.name == name), ()) or (name,)
            for child in children:
                try:
                    streamed(vs, "initiate", "control-log",
                             {"child": child, "ike": name, "timeout": 1000})
                except CommandFailed:
                    pass  # failed or still negotiating: the log and the events say which

    def _close_duplicate(self, name: str, unique_id: int) -> None:
        """The monitor's clean-up of a duplicate IKE SA: a DELETE to the other end, waited on
        only a moment (the event says when it is gone)."""
        with session(self.socket_path, self.timeout) as vs:
            try:
                streamed(vs, "terminate", "control-log", {"ike-id": str(unique_id), "timeout": 1000})
            except CommandFailed:
                pass  # gone already, or still deleting: the next listing says which

    def disconnect(self, name: str) -> str:
        message = {"ike": name, "timeout": int(self.connect_timeout * 1000)}
        if self._monitor is not None:
            self._monitor.note_disconnected(name)
        with self._session(self.connect_timeout + 2) as vs:
            try:
                streamed(vs, "terminate", "control-log", message)
            except CommandFailed as err:
                if self._monitor is not None:
                    self._monitor.refresh(name)
                if "no matching SAs" in str(err):
                    return f"{name} was not connected."
                return f"{name} could not be disconnected: {err.reason}"
        if self._monitor is not None:
            if not self._monitor.settle(name):  # the page drawn next shows it down
                return f"{name} is disconnected." + STILL_AT_IT
            self._monitor.note_done(name)
        return f"{name} is disconnected."

    def rekey(self, name: str) -> str:
        """Rekey the tunnel now: each CHILD_SA, then its IKE SA (new keys and SPIs; the old SAs
        carry traffic until the new ones are in, so nothing is dropped). Children first: charon
        queues a child's rekey on the IKE SA that holds the child, and one queued while that IKE
        SA is being rekeyed is lost with it (the lab's charon log: "vici rekey CHILD_SA" during
        the IKE rekey, then no CHILD_SA rekey at all; the SPIs stayed). Asked after the
        children, the IKE rekey waits on the same IKE SA until they are done."""
        if self._monitor is not None:
            self._monitor.note_asked(name, REKEYED)
        with self._session(self.connect_timeout + 2) as vs:
            conns = vm.parse_conns(streamed(vs, "list-conns", "list-conn", {"ike": name}))
            for child in next((c.children for c in conns if c.name == name), ()) or (name,):
                try:
                    request(vs, "rekey", {"child": child})
                except CommandFailed:
                    pass  # a child not up (one pair of an IKEv1 peer, say) has nothing to rekey
            try:
                request(vs, "rekey", {"ike": name})
            except CommandFailed as err:
                if self._monitor is not None:
                    self._monitor.note_not_asked(name)
                if "no matching" in str(err) or "not found" in str(err):
                    return f"{name} is not connected."
                return f"{name} could not be rekeyed: {err.reason}"
        log.info("rekeying %s", name)
        return f"{name} is rekeying."

    def _sa_of(self, vs, name: str, ike_id: int | None = None,
               child_id: int | None = None) -> IkeSA | None:
        """The IKE SA of `name` with that id (or carrying that CHILD_SA): a form names SAs by
        charon's ids, and one peer's page must never act on another peer's SA."""
        for sa in vm.parse_sas(events(vs, "list-sas", "list-sa", {"ike": name, "noblock": "yes"})):
            if sa.name != name:
                continue
            if ike_id is not None and sa.unique_id == ike_id:
                return sa
            if child_id is not None and any(c.unique_id == child_id for c in sa.children):
                return sa
        return None

    def _sa_command(self, name: str, what: str, command: str, message: dict, asked: str,
                    done: str, ike_id: int | None = None, child_id: int | None = None,
                    until: Callable[[tuple[IkeSA, ...]], bool] | None = None) -> str:
        """Run `rekey` or `terminate` on one SA of `name`; `done`, or why it was refused. The
        monitor is told first that the admin asked (`asked`, the history's reason): the drop it
        may cause is not a flap, and a terminated CHILD_SA stays down until Connect. Returns
        once the monitor has the SAs as the command left them (`until` them, for a rekey, which
        charon carries out after answering), or says it is still under way."""
        monitor = self._monitor
        with self._session(self.connect_timeout + 2) as vs:
            if self._sa_of(vs, name, ike_id, child_id) is None:
                return f"{what} is no longer there: strongSwan has replaced or closed it."
            if monitor is not None:
                if command == "terminate":
                    monitor.note_disconnected(name, asked)
                else:
                    monitor.note_asked(name, asked, replacing=(ike_id,) if ike_id else ())
            try:
                if command == "terminate":
                    streamed(vs, "terminate", "control-log",
                             message | {"timeout": int(self.connect_timeout * 1000)})
                else:
                    request(vs, "rekey", message)
            except CommandFailed as err:
                if monitor is not None:
                    monitor.note_not_asked(name)
                return f"strongSwan refused to {command} {what}: {str(err).split(': ', 1)[-1]}"
        log.info("%s %s of %s", command, what, name)
        if monitor is not None:
            if not monitor.settle(name, until):
                if command != "terminate":
                    monitor.note_late(name)
                return done + STILL_AT_IT
            monitor.note_done(name)  # its drop, if it made one, is in the history by now
        return done

    def rekey_ike(self, name: str, ike_id: int) -> str:
        """New keys for the IKE SA; its CHILD_SAs stay as they are."""
        what = f"IKE SA #{ike_id}"
        return self._sa_command(name, what, "rekey", {"ike-id": str(ike_id)}, REKEYED,
                                f"{what} of {name} is rekeying.", ike_id=ike_id,
                                until=_replaced_ike(ike_id))

    def reauthenticate(self, name: str, ike_id: int) -> str:
        """IKEv2: authenticate again with the key, building a new IKE SA and its CHILD_SAs."""
        what = f"IKE SA #{ike_id}"
        return self._sa_command(name, what, "rekey", {"ike-id": str(ike_id), "reauth": "yes"},
                                REAUTHENTICATED, f"{what} of {name} is reauthenticating.",
                                ike_id=ike_id, until=_replaced_ike(ike_id))

    def rekey_child(self, name: str, child_id: int) -> str:
        """New keys and SPIs for one CHILD_SA; the old one carries traffic until the new is in."""
        what = f"CHILD_SA #{child_id}"
        return self._sa_command(name, what, "rekey", {"child-id": str(child_id)}, REKEYED,
                                f"{what} of {name} is rekeying.", child_id=child_id,
                                until=_replaced_child(child_id))

    def terminate_child(self, name: str, child_id: int) -> str:
        """Close one CHILD_SA; its IKE SA stays up (Connect builds the tunnel again)."""
        what = f"CHILD_SA #{child_id}"
        return self._sa_command(name, what, "terminate", {"child-id": str(child_id)},
                                CHILD_TERMINATED, f"{what} of {name} is closed.",
                                child_id=child_id)

    def tunnel_states(self, names: Sequence[str] | None = None) -> dict[str, TunnelState]:
        """Every connection's state from ONE list-sas (plus get-conns) on one session; with
        `names` (one peer's Connect, say), a list-sas filtered to each name instead. Each filtered
        call costs charon about as much as a whole listing's share of many SAs, so a page of 100
        rows still asks for everything (docs/PERFORMANCE.md, "Measured by hand")."""
        queries = [{"noblock": "yes"}] if names is None else [{"noblock": "yes", "ike": name}
                                                             for name in names]
        with self._session() as vs:
            loaded = self._loaded(vs)
            sas = itertools.chain.from_iterable(events(vs, "list-sas", "list-sa", query)
                                                for query in queries)
            states = vm.tunnel_states(sas, loaded, self.failures.current())
        for name, state in states.items():
            if state.state == "up":
                self.failures.clear(name)
        return states

    def status(self) -> IPsecStatus:
        """Every SA, and every loaded connection: this UI's by name only (the store has the rest),
        in full only those it did not load. From the monitor's snapshot when it runs (a request
        never waits on charon for state then), else from charon now."""
        if self._monitor is None:
            return self._status_now()
        snap = self._monitor.snapshot()
        if snap.unanswered_since:
            raise DaemonUnavailable(snap.problem)
        managed = self._managed  # no lock: see __init__
        connections = [Connection(name=name, managed=True)
                       for name in sorted(snap.loaded & managed)]
        connections += self._external(snap.loaded - managed)
        return IPsecStatus(connections=tuple(connections), sas=snap.sas)

    def _external(self, names: frozenset[str]) -> list[Connection]:
        """Connections this UI did not load, in full: asked once per set of names (they change
        only when someone loads or unloads one), by name alone while charon cannot be asked."""
        cached_names, cached = self._external_cache
        if names == cached_names:
            return cached
        try:
            with self._session() as vs:
                found = []
                for name in sorted(names):
                    found += streamed(vs, "list-conns", "list-conn", {"ike": name})
        except DaemonUnavailable:
            return [Connection(name=name) for name in sorted(names)]
        connections = list(vm.parse_conns(found, ()))
        self._external_cache = (names, connections)
        return connections

    def _status_now(self) -> IPsecStatus:
        """status() asked of charon now. A full list-conns of a thousand peers is a lot of
        decoding (docs/PERFORMANCE.md, "Measured by hand"), repeated on every refresh of the
        status pane."""
        managed = self._managed  # no lock: see __init__
        with self._session() as vs:
            names = self._loaded(vs)
            external = []
            for name in sorted(names - managed):
                external += streamed(vs, "list-conns", "list-conn", {"ike": name})
            sas = vm.parse_sas(events(vs, "list-sas", "list-sa", {"noblock": "yes"}))
        connections = [Connection(name=name, managed=True) for name in sorted(names & managed)]
        connections += vm.parse_conns(external, managed)
        return IPsecStatus(connections=tuple(connections), sas=sas)

    def supported_algorithms(self) -> frozenset[str] | None:
        """Catalogue keywords charon can honour (cached); None while charon cannot be asked."""
        algorithms = self._algorithms  # the monitor may reset it meanwhile (a new charon)
        if algorithms is None:
            try:
                with self._session() as vs:
                    algorithms = vm.parse_algorithms(request(vs, "get-algorithms"))
            except DriverError:
                return None
            self._algorithms = algorithms
        return algorithms

    # --- the monitor: tunnel state from charon's events ------------------------------------------
    def watch(self, wait: float = 2.0, on_connected=None, on_missing=None,
              sync_period: float = 5.0, meant_up=None, backoff: float = 30.0,
              backoff_max: float = 600.0, peers_at=None) -> bool:
        """Start the monitor (webui/drivers/monitor.py), which keeps every tunnel's state from
        charon's events; wait (bounded) until it listens, so a failure right after this call is
        not missed. Whether it listens. `on_connected()` runs in its thread each time it connects
        to a new charon: a charon that was restarted, by us or anyone, has forgotten every
        connection loaded over VICI. `on_missing(names)` gets connections this UI loaded that
        charon no longer has (`swanctl --load-all` unloads them). `peers_at(address, id)` names
        the peers a remote at that address may be (for the lines of SAs the remote starts)."""
        from webui.drivers.monitor import Monitor

        def connected():
            self._algorithms = None  # a restarted charon may have loaded other crypto plugins
            if on_connected is not None:
                on_connected()

        if self._monitor is None:
            self._monitor = Monitor(self.socket_path, session, query_timeout=self.timeout,
                                    sync_period=sync_period, reason_of=self.failures.note_log,
                                    on_connected=connected, expected=lambda: self._managed,
                                    on_missing=on_missing, meant_up=meant_up,
                                    initiate=self._retry, backoff=backoff,
                                    backoff_max=backoff_max, peers_at=peers_at,
                                    close=self._close_duplicate)
            self._monitor.start()
        return self._monitor.listening.wait(wait)

    @property
    def monitor(self):
        return self._monitor

    def snapshot(self) -> StateSnapshot:
        """Every tunnel's state, from the monitor without asking charon; without a monitor
        (WEBUI_VICI_WATCH=false), from charon now."""
        if self._monitor is not None:
            return self._monitor.snapshot()
        try:
            return StateSnapshot(tunnels=self.tunnel_states(), confirmed_at=time.time())
        except DaemonUnavailable as err:
            return StateSnapshot(unanswered_since=time.time(), error=str(err))

    def history(self, name: str) -> list[Transition]:
        """The peer's last transitions (time, from, to, reason), oldest first; [] without a monitor."""
        return self._monitor.history(name) if self._monitor is not None else []

    def counters(self, name: str) -> list[tuple[float, int, int]]:
        """The peer's sampled byte counters (time, in, out), oldest first; [] without a monitor."""
        return self._monitor.counters(name) if self._monitor is not None else []

    def log_lines(self, name: str) -> list[LogLine]:
        """charon's recent lines about the peer, oldest first; [] without a monitor."""
        return self._monitor.log_lines(name) if self._monitor is not None else []

    def watch_log(self, name: str) -> None:
        """Someone is reading the peer's log: keep its full ring (webui/drivers/peer_log.py)."""
        if self._monitor is not None:
            self._monitor.log_book.watch(name)

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
