"""The fast VICI decoder gives what the vici package's own decoder gives, and refuses what it refuses."""
import pytest
from vici.exception import DeserializationException
from vici.protocol import FiniteStream, Message

from webui.drivers.vici_wire import decode, event_message

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
