"""The VICI wire: every byte between this UI and charon's socket passes here.

VICI (strongSwan's `src/libcharon/plugins/vici/README.md`) frames each packet with a 4-byte
big-endian length; a packet is a type byte, for named packets a 1-byte-length name, then a message.
A message is a run of elements, each a type byte: SECTION_START name, SECTION_END, KEY_VALUE name
value, LIST_START name, LIST_ITEM value ..., LIST_END. Names are 1-byte-length UTF-8, values
2-byte-length (big-endian) raw bytes.

This module owns the framing (`Transport`), the conversation (`Session`: a request and its answer,
a streamed request and its events, event registration), the one decoder every answer goes through,
the sessions the driver opens (`session`, with its errors translated), and short forms of them
(`call`, `stream`). Building messages from peers and reading answers into dataclasses (and
`vici_messages.text`, a value as text) is `vici_messages`'s job; what to ask charon and when is the driver's (`strongswan.py`).

`decode` gives exactly what `vici.protocol.Message.deserialize` gives (sections as dicts, values
as bytes, lists of bytes; a unit test holds the two equal) but walks the bytes by index instead of
through a BytesIO with a struct call per field, so decoding does not dominate the status poll's
`list-sas` (figures in docs/PERFORMANCE.md). Encoding is the package's `Message.serialize`.
"""
from __future__ import annotations

import contextlib
import socket
import struct
import time
from pathlib import Path
from typing import Iterator

from vici.exception import DeserializationException, SessionException
from vici.protocol import Message

from webui.drivers import CommandFailed, DaemonUnavailable
from webui.drivers import vici_messages as vm

DEFAULT_TIMEOUT = 5.0

# Packet types.
CMD_REQUEST, CMD_RESPONSE, CMD_UNKNOWN, EVENT_REGISTER, EVENT_UNREGISTER, EVENT_CONFIRM, \
    EVENT_UNKNOWN, EVENT = range(8)
_HEADER = struct.Struct("!I")


class Transport:
    """Whole packets over a connected socket, each read within one timeout.

    The timeout covers the whole packet, not each recv: a charon that trickles a byte at a time
    cannot hold a web server thread longer. When it expires mid-packet, what was read is kept and
    the next `receive` goes on with the same packet, so the stream never loses its framing (the
    package's own transport avoids this by waiting without a timeout once a packet has started,
    which lets a stalled charon hang the caller).

    It reads what the socket has, up to READ bytes at a time, and keeps what follows the packet
    for the next `receive`: a listing of a hundred SAs, or a burst of log events, is a few reads
    rather than two per packet. `buffered` says whether a whole packet is waiting here already
    (a select() on the socket cannot know).
    """

    READ = 65536

    def __init__(self, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT):
        self.socket = sock
        self.timeout = timeout
        self._buffer = bytearray()  # read from the socket; from _start on, not handed out yet
        self._start = 0
        self._timeout_set: float | None = None

    def send(self, packet: bytes) -> None:
        self._settimeout(self.timeout)
        self.socket.sendall(_HEADER.pack(len(packet)) + packet)

    def _settimeout(self, timeout: float) -> None:
        if timeout != self._timeout_set:  # each call is a system call: only when it changes
            self.socket.settimeout(timeout)
            self._timeout_set = timeout

    def buffered(self) -> bool:
        """Whether the next `receive` has its whole packet here without reading the socket."""
        return len(self._buffer) - self._start >= _packet_size(self._buffer, self._start)

    def receive(self) -> bytes:
        """The next packet (without its length); socket.timeout when it has not all come in
        time, ConnectionResetError when charon closed the connection."""
        data = self._buffer
        if self._start and len(data) - self._start < _packet_size(data, self._start):
            del data[:self._start]  # what was handed out goes before reading more
            self._start = 0
        start = self._start
        if len(data) - start < (wanted := _packet_size(data, start)):
            deadline = time.monotonic() + self.timeout
            while len(data) - start < (wanted := _packet_size(data, start)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                self._settimeout(left)
                chunk = self.socket.recv(max(self.READ, wanted - (len(data) - start)))
                if not chunk:
                    raise ConnectionResetError("charon closed the VICI connection")
                data += chunk
        self._start = start + wanted
        packet = bytes(data[start + _HEADER.size:start + wanted])
        if self._start == len(data):
            data.clear()
            self._start = 0
        return packet


def _packet_size(data: bytearray, start: int = 0) -> int:
    """How many bytes the packet that starts at `start` in `data` has, with its length: first
    the length itself, then, once that is in, the whole packet."""
    if len(data) - start < _HEADER.size:
        return _HEADER.size
    return _HEADER.size + _HEADER.unpack_from(data, start)[0]


def _named(kind: int, name: str, message: dict | None = None) -> bytes:
    encoded = name.encode()
    packet = bytes([kind, len(encoded)]) + encoded
    return packet + Message.serialize(message) if message is not None else packet


class Session:
    """One conversation with charon on a connected socket."""

    def __init__(self, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT):
        self.transport = Transport(sock, timeout)

    def request(self, command: str, message: dict | None = None) -> dict:
        """A command and its answer, decoded; charon's refusal -> CommandFailed."""
        self.transport.send(_named(CMD_REQUEST, command, message))
        return _answer(command, self.transport.receive())

    def events(self, command: str, event: str, message: dict | None = None) -> Iterator[dict]:
        """A streamed command: its events, each decoded as it arrives, nothing held but the one in
        hand (a list-sas of a thousand SAs is never in memory whole). Consume it whole, inside
        the session."""
        request = _named(CMD_REQUEST, command, message)
        self.register(event)
        self.transport.send(request)
        while (packet := self.transport.receive())[:1] == bytes([EVENT]):
            yield event_message(packet)
        self.unregister(event)
        _answer(command, packet)

    def register(self, event: str) -> None:
        self._confirm(EVENT_REGISTER, event)

    def unregister(self, event: str) -> None:
        self._confirm(EVENT_UNREGISTER, event)

    def _confirm(self, kind: int, event: str) -> None:
        self.transport.send(_named(kind, event))
        if self.transport.receive()[:1] != bytes([EVENT_CONFIRM]):
            raise SessionException(f"charon did not confirm the {event!r} event")


def _answer(command: str, packet: bytes) -> dict:
    if packet[:1] != bytes([CMD_RESPONSE]):
        raise SessionException(f"unexpected VICI packet type {packet[:1]!r}")
    answer = decode(packet[1:])
    if answer.get("success", b"yes") != b"yes":
        errmsg = vm.text(answer.get("errmsg"))
        raise CommandFailed(f"strongSwan refused {command}: {errmsg}", reason=errmsg)
    return answer


# --- Sessions as the driver opens them -----------------------------------------------------------


def not_running(path: str | Path) -> DaemonUnavailable:
    return DaemonUnavailable(f"strongSwan is not running (no VICI socket at {path}).")


@contextlib.contextmanager
def session(path: str | Path, timeout: float = DEFAULT_TIMEOUT,
            sock: socket.socket | None = None) -> Iterator[Session]:
    """A Session on a fresh socket (or `sock`, already connected), every transport failure a
    DaemonUnavailable that says what happened; the socket is closed on exit."""
    connected = sock is not None
    sock = sock or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if not connected:
            _connect(sock, path, timeout)
        try:
            yield Session(sock, timeout)
        except socket.timeout:
            raise DaemonUnavailable(f"strongSwan did not answer within {timeout:g} s "
                                    f"(VICI socket {path}).") from None
        except (ConnectionError, DeserializationException, SessionException) as err:
            raise DaemonUnavailable(f"The connection to strongSwan broke ({path}): {err}") from None
        except OSError as err:
            # Any other socket error in the middle of a conversation is charon going away.
            raise DaemonUnavailable(f"The connection to strongSwan broke ({path}): "
                                    f"{err.strerror or err}") from None
    finally:
        sock.close()


def _connect(sock: socket.socket, path, timeout: float) -> None:
    """Connect, every failure a DaemonUnavailable that says what the administrator can do."""
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        raise not_running(path) from None
    except BlockingIOError:
        # With a timeout the socket is non-blocking underneath: a Unix socket whose listen backlog
        # is full (charon stopped accepting: hung, or stopped with SIGSTOP) fails at once, EAGAIN.
        raise DaemonUnavailable(f"strongSwan is not accepting VICI connections ({path}): it is "
                                f"hung or overloaded.") from None
    except socket.timeout:
        raise DaemonUnavailable(f"strongSwan did not accept a VICI connection within "
                                f"{timeout:g} s ({path}).") from None
    except PermissionError:
        raise DaemonUnavailable(f"This UI may not use strongSwan's VICI socket {path} (permission "
                                f"denied: see the README on the vici group).") from None
    except OSError as err:
        raise DaemonUnavailable(f"strongSwan's VICI socket {path} cannot be reached: "
                                f"{err.strerror or err}") from None


def request(vs: Session, command: str, message: dict | None = None,
            field: str | None = None) -> dict:
    """One command on an open session; a refusal names `field`, the peer field it was about."""
    try:
        return vs.request(command, message)
    except CommandFailed as err:
        raise CommandFailed(str(err), field=field, reason=err.reason) from None


def events(vs: Session, command: str, event: str, message: dict | None = None) -> Iterator[dict]:
    return vs.events(command, event, message)


def streamed(vs: Session, command: str, event: str, message: dict | None = None) -> list[dict]:
    """One streamed command on an open session, its events collected."""
    return list(vs.events(command, event, message))


def call(path, command: str, message: dict | None = None, timeout: float = DEFAULT_TIMEOUT,
         field: str | None = None) -> dict:
    """One command on its own session."""
    with session(path, timeout) as vs:
        return request(vs, command, message, field)


def stream(path, command: str, event: str, message: dict | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
    """One streamed command on its own session."""
    with session(path, timeout) as vs:
        return streamed(vs, command, event, message)


# --- The decoder ---------------------------------------------------------------------------------

SECTION_START, SECTION_END, KEY_VALUE, LIST_START, LIST_ITEM, LIST_END = 1, 2, 3, 4, 5, 6


def event_message(packet: bytes) -> dict:
    """An EVENT packet (type byte, 1-byte-length event name, message) -> its decoded message."""
    if len(packet) < 2 or len(packet) < 2 + packet[1]:
        raise DeserializationException("malformed VICI event packet")
    return decode(packet[2 + packet[1]:])


def decode(data: bytes) -> dict:
    """One message -> nested dicts; a malformed one raises DeserializationException."""
    try:
        return _decode(data)
    except (IndexError, UnicodeDecodeError) as err:
        raise DeserializationException(f"malformed VICI message: {err}") from None


def _decode(data: bytes) -> dict:
    top = section = {}
    stack: list[dict] = []
    i, end = 0, len(data)
    while i < end:
        kind = data[i]
        if kind == SECTION_END:
            if not stack:
                raise DeserializationException(f"unexpected end of section at {i}")
            section = stack.pop()
            i += 1
            continue
        if kind not in (SECTION_START, KEY_VALUE, LIST_START):
            raise DeserializationException(f"unknown element type {kind} at {i}")
        start = i + 2
        i = start + data[i + 1]
        name = data[start:i].decode()
        if kind == KEY_VALUE:
            start = i + 2
            i = start + (data[i] << 8 | data[i + 1])
            section[name] = data[start:i]
        elif kind == SECTION_START:
            child: dict = {}
            section[name] = child
            stack.append(section)
            section = child
        else:  # LIST_START
            items = []
            while data[i] == LIST_ITEM:
                start = i + 3
                i = start + (data[i + 1] << 8 | data[i + 2])
                items.append(data[start:i])
            if data[i] != LIST_END:
                raise DeserializationException(f"expected the end of list {name!r} at {i}")
            i += 1
            section[name] = items
    if i != end:  # a length ran past the end: the slice was short
        raise DeserializationException("message truncated")
    if stack:
        raise DeserializationException("expected the end of a section")
    return top
