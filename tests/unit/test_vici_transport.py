"""The VICI transport and the driver's error translation, against a tiny fake charon (no daemon).

The fake speaks the wire protocol from strongSwan's VICI README: a 4-byte length, a packet type,
and messages of sections, key/values and lists. It answers from a script of canned replies.
"""
import json
import socket
import struct
import threading
import time

import pytest

from webui.drivers import CommandFailed, DaemonUnavailable
from webui.drivers import strongswan
from webui.peers import Peer

CMD_REQUEST, CMD_RESPONSE, EVENT_REGISTER, EVENT_UNREGISTER, EVENT_CONFIRM, EVENT = 0, 1, 3, 4, 5, 7


def encode(message: dict) -> bytes:
    out = b""
    for key, value in message.items():
        name = key.encode()
        if isinstance(value, dict):
            out += bytes([1, len(name)]) + name + encode(value) + bytes([2])
        elif isinstance(value, list):
            items = b"".join(bytes([5]) + struct.pack("!H", len(v)) + v
                             for v in (str(i).encode() for i in value))
            out += bytes([4, len(name)]) + name + items + bytes([6])
        else:
            data = str(value).encode()
            out += bytes([3, len(name)]) + name + struct.pack("!H", len(data)) + data
    return out


def frame(packet: bytes) -> bytes:
    return struct.pack("!I", len(packet)) + packet


def read_packet(conn) -> bytes | None:
    try:
        header = conn.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            return None
        return conn.recv(struct.unpack("!I", header)[0], socket.MSG_WAITALL)
    except OSError:  # the test closed our end: we are done
        return None


class FakeCharon:
    """Answers each command from `replies`: {command: (events, response) or raw bytes to send}.

    `served`, when given, gets this connection before it answers anything, so a test that reads it
    after its client returned never races the thread that accepted the connection.
    """

    def __init__(self, conn, replies, served=None):
        self.conn, self.replies, self.commands = conn, replies, []
        if served is not None:
            served.append(self)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            self.answer()
        finally:
            self.conn.close()

    def answer(self):
        while (packet := read_packet(self.conn)) is not None:
            kind, size = packet[0], packet[1]
            name = packet[2:2 + size].decode()
            if kind in (EVENT_REGISTER, EVENT_UNREGISTER):
                self.conn.sendall(frame(bytes([EVENT_CONFIRM])))
                continue
            self.commands.append(name)
            reply = self.replies[name]
            if isinstance(reply, bytes):  # a broken or stalling charon
                self.conn.sendall(reply)
                continue
            events, response = reply
            for event_name, event in events:
                self.conn.sendall(frame(bytes([EVENT, len(event_name)]) + event_name.encode()
                                        + encode(event)))
            self.conn.sendall(frame(bytes([CMD_RESPONSE]) + encode(response)))


@pytest.fixture
def pair():
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield client, server
    server.close()


def test_a_request_round_trip_decodes_at_the_parser(pair):
    client, server = pair
    FakeCharon(server, {"version": ([], {"daemon": "charon", "version": "5.9.8"})})
    with strongswan.session("fake", timeout=1, sock=client) as vs:
        answer = strongswan.request(vs, "version")
    assert answer == {"daemon": b"charon", "version": b"5.9.8"}
    assert client.fileno() == -1  # closed on the way out


def test_a_stream_is_consumed_whole(pair):
    client, server = pair
    sa = {"uniqueid": "1", "version": "2", "state": "ESTABLISHED"}
    FakeCharon(server, {"list-sas": ([("list-sa", {"a": sa}), ("list-sa", {"b": sa})], {})})
    with strongswan.session("fake", timeout=1, sock=client) as vs:
        events = strongswan.streamed(vs, "list-sas", "list-sa")
    assert [list(e) for e in events] == [["a"], ["b"]]


def test_charon_stalling_mid_answer_is_a_timeout_not_a_hang(pair):
    client, server = pair
    # the length says 100 bytes, but only 3 come: the package alone would wait forever here
    FakeCharon(server, {"version": struct.pack("!I", 100) + bytes([CMD_RESPONSE, 3, 1])})
    with pytest.raises(DaemonUnavailable, match=r"did not answer within 0.3 s \(VICI socket fake"):
        with strongswan.session("fake", timeout=0.3, sock=client) as vs:
            strongswan.request(vs, "version")


def test_charon_closing_the_connection_is_unavailable(pair):
    client, server = pair
    server.close()
    with pytest.raises(DaemonUnavailable, match="fake"):
        with strongswan.session("fake", timeout=1, sock=client) as vs:
            strongswan.request(vs, "version")


def test_a_refusal_is_command_failed_without_the_package_prefix(pair):
    client, server = pair
    FakeCharon(server, {"unload-conn": ([], {"success": "no",
                                             "errmsg": "unload: connection 'x' not found"})})
    with pytest.raises(CommandFailed) as err:
        with strongswan.session("fake", timeout=1, sock=client) as vs:
            strongswan.request(vs, "unload-conn", {"name": "x"})
    assert str(err.value) == "strongSwan refused unload-conn: unload: connection 'x' not found"


def test_no_socket_says_strongswan_is_not_running(tmp_path):
    path = tmp_path / "charon.vici"
    driver = strongswan.ViciDriver(path, data_dir=tmp_path)
    with pytest.raises(DaemonUnavailable) as err:
        driver.tunnel_states()
    assert str(err.value) == f"strongSwan is not running (no VICI socket at {path})."
    assert driver.supported_algorithms() is None


# --- The driver against the fake, on a real listening socket -------------------------------------

class ListeningCharon:
    """A fake charon listening on `path`, one FakeCharon per connection; set `.replies` before
    calling the driver. `close()` stops it as a charon that exits would (the file stays)."""

    def __init__(self, path, replies=None):
        self.path, self.replies, self.served = path, {} if replies is None else replies, []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            FakeCharon(conn, self.replies, served=self.served)

    def commands(self) -> list[str]:
        return [c for served in self.served for c in served.commands]

    def close(self):
        self.listener.close()


@pytest.fixture
def fake_charon(tmp_path):
    charon = ListeningCharon(tmp_path / "charon.vici")
    charon.replies["get-algorithms"] = ([], FULL_BUILD)
    yield charon
    charon.close()


# What Debian's charon with libstrongswan-standard-plugins reports, in part.
FULL_BUILD = {"encryption": {"AES_CBC": "aes"}, "aead": {"AES_GCM_16": "gcm"},
              "integrity": {"HMAC_SHA2_256_128": "hmac"},
              "dh": {"CURVE_25519": "openssl", "ECP_256": "openssl", "MODP_2048": "gmp"}}

PEER = Peer(name="branch", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
            local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
            psk="do-not-leak-7f3a")


def test_apply_names_the_field_charon_refused(fake_charon, tmp_path):
    fake_charon.replies.update({
        "get-conns": ([], {"conns": []}),
        "load-shared": ([], {"success": "yes"}),
        "load-conn": ([], {"success": "no",
                           "errmsg": "invalid value for: esp_proposals, config discarded"})})
    driver = strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path)
    with pytest.raises(CommandFailed) as err:
        driver.apply(PEER)
    assert err.value.field == "esp_encryption"
    assert "esp_proposals" in str(err.value) and "do-not-leak" not in str(err.value)
    assert [c.commands for c in fake_charon.served] == [["get-algorithms"],
                                                        ["get-conns", "load-shared", "load-conn"]]


def test_apply_records_what_the_ui_loaded(fake_charon, tmp_path):
    fake_charon.replies.update({"get-conns": ([], {"conns": []}),
                                "load-shared": ([], {"success": "yes"}),
                                "load-conn": ([], {"success": "yes"})})
    strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path).apply(PEER)
    assert strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path)._managed == {"branch"}
    assert json.loads((tmp_path / "ipsec-loaded.json").read_text())["loaded"] == ["branch"]


def test_an_impossible_proposal_is_refused_before_charon_is_asked(fake_charon, tmp_path):
    from dataclasses import replace
    driver = strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path)
    with pytest.raises(CommandFailed) as err:
        driver.apply(replace(PEER, ike_version=1, ike_encryption=("aes256gcm16",)))
    assert err.value.field == "ike_encryption" and fake_charon.served == []


def test_tunnel_states_is_one_session(fake_charon, tmp_path):
    sa = {"uniqueid": "1", "version": "2", "state": "ESTABLISHED", "established": "7",
          "child-sas": {"branch-1": {"name": "branch", "state": "INSTALLED",
                                     "bytes-in": "10", "bytes-out": "20"}}}
    fake_charon.replies.update({"list-sas": ([("list-sa", {"branch": sa})], {}),
                                "get-conns": ([], {"conns": ["branch", "other"]})})
    states = strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path).tunnel_states()
    assert {n: (s.state, s.established_for, s.bytes_in, s.bytes_out, s.loaded)
            for n, s in states.items()} == {"branch": ("up", 7, 10, 20, True),
                                            "other": ("down", None, 0, 0, True)}
    assert len(fake_charon.served) == 1


def test_reconcile_unloads_keys_an_older_version_loaded_under_another_id(fake_charon, tmp_path):
    """Before swanctl.conf the key ids were webui-psk-<name>; left loaded, an old key would sit
    beside the new one for the same IDs."""
    fake_charon.replies.update({
        "get-algorithms": ([], FULL_BUILD), "get-conns": ([], {"conns": []}),
        "get-shared": ([], {"keys": ["webui-psk-branch", "ike-webui-branch", "ike-admins-own"]}),
        "unload-shared": ([], {"success": "yes"}),
        "load-shared": ([], {"success": "yes"}), "load-conn": ([], {"success": "yes"})})
    steps = strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path).reconcile([PEER])
    assert all(step.ok for step in steps), steps
    commands = fake_charon.commands()
    assert commands[commands.index("get-shared"):] == ["get-shared", "unload-shared", "load-shared",
                                                       "load-conn", "get-conns"]


def test_restart_without_a_command_says_so(tmp_path):
    steps = strongswan.ViciDriver(tmp_path / "x.vici", data_dir=tmp_path).restart([PEER])
    assert [(s.ok, "WEBUI_IPSEC_RESTART_COMMAND" in s.detail) for s in steps] == [(False, True)]


def test_restart_runs_an_argument_list_and_reports_a_failing_command(tmp_path):
    driver = strongswan.ViciDriver(tmp_path / "x.vici", data_dir=tmp_path,
                                   restart_command=["sh", "-c", "echo broken >&2; exit 3"])
    (step,) = driver.restart([PEER])
    assert (step.ok, step.detail) == (False, "exit status 3: broken")


def test_status_does_not_wait_for_a_reconcile_in_progress(fake_charon, tmp_path):
    """A reconcile of a thousand peers holds the driver's lock for seconds; the status pane must
    not hang a web server thread behind it."""
    fake_charon.replies.update({"get-conns": ([], {"conns": ["branch"]}),
                                "list-sas": ([], {})})
    driver = strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path)
    driver._managed = frozenset({"branch"})
    answered = []
    with driver._lock:  # as reconcile() holds it
        worker = threading.Thread(target=lambda: answered.append(driver.status()))
        worker.start()
        worker.join(timeout=2)
        assert answered, "status() waited for the lock"
    assert [c.name for c in answered[0].connections] == ["branch"]


def test_restart_waits_for_the_new_charon_when_the_command_returns_first(tmp_path):
    """An init script may return while the old charon is still exiting: its socket still answers,
    and peers loaded into it would be lost a moment later. The driver waits for the socket charon
    binds anew when it starts."""
    path = tmp_path / "charon.vici"
    replies = {"version": ([], {"daemon": "charon"}), "get-algorithms": ([], FULL_BUILD),
               "get-conns": ([], {"conns": []}),
               "get-shared": ([], {"keys": []}),
               "load-shared": ([], {"success": "yes"}), "load-conn": ([], {"success": "yes"})}
    old = ListeningCharon(path, replies)
    started = []

    def restart_later():
        time.sleep(0.5)
        old.close()
        path.unlink()
        started.append(ListeningCharon(path, replies))

    driver = strongswan.ViciDriver(path, data_dir=tmp_path, restart_wait=5,
                                   restart_command=["sh", "-c", "exit 0"])
    restarter = threading.Thread(target=restart_later)
    restarter.start()
    steps = driver.restart([PEER])
    restarter.join()  # the new charon answers from its constructor on: `started` may lag it
    assert all(step.ok for step in steps), steps
    assert "load-conn" not in old.commands(), "nothing was loaded into the charon that was leaving"
    assert "load-conn" in started[0].commands()
    started[0].close()


def test_restart_that_does_not_restart_charon_says_so(fake_charon, tmp_path):
    fake_charon.replies.update({"version": ([], {"daemon": "charon"})})
    driver = strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path, restart_wait=0.5,
                                   restart_command=["sh", "-c", "exit 0"])
    steps = driver.restart([PEER])
    assert [s.ok for s in steps] == [True, False]
    assert "old charon's VICI socket is still in place" in steps[1].detail
    assert fake_charon.commands() == []


# --- Every socket failure is DaemonUnavailable, and only one request waits on a hung charon ------

class SilentCharon:
    """Listens on `path` and accepts, but never answers: charon wedged after accept()."""

    def __init__(self, path):
        self.path, self.accepted = path, []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self):
        self.listener.close()
        for conn in self.accepted:
            conn.close()


def test_a_full_backlog_is_unavailable_at_once(tmp_path):
    """charon stopped (SIGSTOP) accepts nothing: once its backlog is full, connect() with a
    timeout fails at once with EAGAIN. That used to escape as a 500."""
    path = tmp_path / "charon.vici"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    waiting = []
    try:
        while True:  # fill the backlog as the polls of a few open tabs would
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            waiting.append(sock)
            sock.connect(str(path))
    except BlockingIOError:
        pass
    try:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="not accepting VICI connections"):
            strongswan.ViciDriver(path, data_dir=tmp_path).tunnel_states()
        assert time.monotonic() - started < 0.5
    finally:
        for sock in waiting:
            sock.close()
        listener.close()


def test_a_socket_that_is_not_charons_is_unavailable(tmp_path):
    path = tmp_path / "charon.vici"
    path.write_text("")  # a plain file where the socket should be: ECONNREFUSED
    with pytest.raises(DaemonUnavailable, match="strongSwan is not running"):
        strongswan.ViciDriver(path, data_dir=tmp_path).tunnel_states()


def test_a_charon_that_accepts_and_never_answers_is_a_timeout(tmp_path):
    charon = SilentCharon(tmp_path / "charon.vici")
    try:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match=r"did not answer within 0.3 s"):
            strongswan.ViciDriver(charon.path, data_dir=tmp_path, timeout=0.3).tunnel_states()
        assert time.monotonic() - started < 1
    finally:
        charon.close()


def test_charon_closing_mid_message_is_unavailable(pair):
    client, server = pair

    def half_an_answer():
        read_packet(server)
        server.sendall(struct.pack("!I", 100) + bytes([CMD_RESPONSE, 3, 1]))
        server.close()

    threading.Thread(target=half_an_answer, daemon=True).start()
    with pytest.raises(DaemonUnavailable, match="broke|closed"):
        with strongswan.session("fake", timeout=1, sock=client) as vs:
            strongswan.request(vs, "version")


def test_a_reset_mid_answer_is_unavailable(pair):
    client, server = pair

    def reset():
        read_packet(server)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()

    threading.Thread(target=reset, daemon=True).start()
    with pytest.raises(DaemonUnavailable):
        with strongswan.session("fake", timeout=1, sock=client) as vs:
            strongswan.request(vs, "version")


def test_only_one_request_waits_on_a_hung_charon(tmp_path):
    """Eight polls at once against a charon that never answers: one waits out the timeout, the
    seven others are told at once that strongSwan is busy, and charon saw one connection."""
    charon = SilentCharon(tmp_path / "charon.vici")
    driver = strongswan.ViciDriver(charon.path, data_dir=tmp_path, timeout=2, busy_wait=0.2)
    outcomes = []

    def poll():
        started = time.monotonic()
        try:
            driver.tunnel_states()
            outcomes.append(("answered", 0.0))
        except DaemonUnavailable as err:
            outcomes.append((str(err), time.monotonic() - started))

    threads = [threading.Thread(target=poll) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)
    finally:
        charon.close()
    busy = [took for text, took in outcomes if text.startswith(strongswan.BUSY)]
    waited = [took for text, took in outcomes if "did not answer within 2 s" in text]
    assert len(busy) == 7 and len(waited) == 1, outcomes
    assert max(busy) < 0.5 and waited[0] >= 1.9
    assert len(charon.accepted) == 1


def test_a_healthy_charon_serves_requests_that_queue_briefly(fake_charon, tmp_path):
    fake_charon.replies.update({"list-sas": ([], {}), "get-conns": ([], {"conns": []})})
    driver = strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path)
    errors = []

    def poll():
        try:
            driver.tunnel_states()
        except DaemonUnavailable as err:
            errors.append(err)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert errors == [] and len(fake_charon.served) == 8
