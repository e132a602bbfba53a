"""Decoding VICI messages, fast: the status poll's hot path.

A VICI message (strongSwan's `src/libcharon/plugins/vici/README.md`) is a run of elements, each a
type byte: SECTION_START name, SECTION_END, KEY_VALUE name value, LIST_START name, LIST_ITEM value
..., LIST_END. Names are 1-byte-length UTF-8, values 2-byte-length (big-endian) raw bytes.

`decode` gives exactly what `vici.protocol.Message.deserialize` gives (sections as dicts, values
as bytes, lists of bytes; a unit test holds the two equal) but walks the bytes by index instead of
through a BytesIO with a struct call per field. On a `list-sas` of 1000 SAs that is the difference
between the poll being dominated by decoding and not (numbers in docs/PERFORMANCE.md).
"""
from __future__ import annotations

from vici.exception import DeserializationException

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
