"""The VICI wire: the fast decoder gives what the vici package's own decoder gives, and refuses what it
refuses; the transport reads whole packets within one timeout and never loses its framing."""
import socket
import struct
import threading
import time

import pytest
from vici.exception import DeserializationException
from vici.protocol import FiniteStream, Message

from webui.drivers.vici_wire import CMD_RESPONSE, Transport, decode, event_message

MESSAGES = [
    {},
    {"success": "yes"},
    {"empty": "", "list": [], "section": {}},
    {"branch": {"uniqueid": "7", "state": "ESTABLISHED", "remote-id": "<img src=x>",
                "child-sas": {"branch-3": {"name": "branch", "local-ts": ["10.0.0.0/24", "fd00::/64"],
                                           "bytes-in": "123456"}},
                "tasks-active": ["IKE_AUTH"]}},
    {"long": "x" * 65535, "unicode-näme": "ünïcode".encode()},
    {"a": {"b": {"c": {"d": "deep"}}}, "after": "the nesting"},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_decode_equals_the_package(message):
    data = Message.serialize(message)
    assert decode(data) == Message.deserialize(FiniteStream(data))


def test_values_stay_bytes_and_sections_dicts():
    decoded = decode(Message.serialize(MESSAGES[3]))
    child = decoded["branch"]["child-sas"]["branch-3"]
    assert child["local-ts"] == [b"10.0.0.0/24", b"fd00::/64"] and child["bytes-in"] == b"123456"


@pytest.mark.parametrize("data", [
    b"\x02",  # the end of a section that never started
    b"\x01\x01a",  # a section that never ends
    b"\x03\x03key\x00\x05ab",  # a value shorter than its length
    b"\x03\x05ke",  # a name shorter than its length
    b"\x04\x01l\x05\x00\x01a\x03",  # a list ended by something else
    b"\x04\x01l\x05\x00\x01a",  # a list that never ends
    b"\x09\x01x",  # no such element type
    b"\x03\x02\xff\xfe\x00\x00",  # a name that is not UTF-8
])
def test_malformed_is_refused(data):
    with pytest.raises(DeserializationException):
        decode(data)


def test_event_message_skips_the_event_name():
    packet = bytes([7, 7]) + b"list-sa" + Message.serialize({"x": "1"})
    assert event_message(packet) == {"x": b"1"}
    for short in (b"\x07", b"\x07\x07list"):
        with pytest.raises(DeserializationException):
            event_message(short)


def framed(message: dict) -> tuple[bytes, bytes]:
    packet = bytes([CMD_RESPONSE]) + Message.serialize(message)
    return packet, struct.pack("!I", len(packet)) + packet


@pytest.fixture
def pair():
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield client, server
    client.close()
    server.close()


def test_a_read_timing_out_mid_packet_does_not_desynchronise_the_stream(pair):
    client, server = pair
    transport = Transport(client, timeout=0.2)
    first, first_bytes = framed({"first": "answer", "padding": "x" * 100})
    second, second_bytes = framed({"second": "answer"})
    server.sendall(first_bytes[:2])  # half of the length
    with pytest.raises(socket.timeout):
        transport.receive()
    server.sendall(first_bytes[2:30])  # the rest of the length and part of the packet
    with pytest.raises(socket.timeout):
        transport.receive()
    server.sendall(first_bytes[30:] + second_bytes)
    assert transport.receive() == first
    assert transport.receive() == second
    assert decode(second[1:]) == {"second": b"answer"}


def test_the_timeout_covers_the_whole_packet_not_each_read(pair):
    """A charon trickling a byte every 50 ms never outlasts one recv timeout, but does the
    packet's: the read gives up after the timeout, not after the whole trickle."""
    client, server = pair
    _, data = framed({"slow": "y" * 60})
    stop = threading.Event()

    def trickle():
        for i in range(len(data)):
            if stop.wait(0.05):
                return
            server.sendall(data[i:i + 1])

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(socket.timeout):
            Transport(client, timeout=0.4).receive()
        assert time.monotonic() - started < 1.5
    finally:
        stop.set()
        thread.join()


class CountingSocket:
    """A socket whose reads are counted."""

    def __init__(self, sock):
        self.sock, self.reads = sock, 0

    def recv(self, size):
        self.reads += 1
        return self.sock.recv(size)

    def settimeout(self, timeout):
        self.sock.settimeout(timeout)

    def sendall(self, data):
        self.sock.sendall(data)


def test_packets_that_came_in_one_go_are_read_in_one_go_and_handed_out_one_by_one(pair):
    """A listing of a hundred SAs, or a burst of log lines, is a few reads, not two per packet;
    and `buffered` says a whole packet is waiting where a select() on the socket cannot see it."""
    client, server = pair
    counted = CountingSocket(client)
    transport = Transport(counted, timeout=1.0)
    packets = [framed({"n": str(i), "pad": "x" * (i * 7)}) for i in range(100)]
    server.sendall(b"".join(data for _, data in packets))
    assert [transport.receive() for _ in packets] == [packet for packet, _ in packets]
    assert counted.reads <= 3, counted.reads
    assert not transport.buffered()
    first, first_bytes = framed({"last": "one"})
    server.sendall(first_bytes + first_bytes[:5])  # one packet and the start of the next
    assert transport.receive() == first and not transport.buffered()
    server.sendall(first_bytes[5:])
    assert transport.receive() == first
