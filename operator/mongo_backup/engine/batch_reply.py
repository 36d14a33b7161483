"""A find or getMore reply, with its batch cut out of the reply's bytes as the documents back
to back that a backup stores, without one Python object per document.

Why not the driver's own: PyMongo's raw-batch cursor (4.x, up to 4.20 at least) first inflates
the reply's `cursor` sub-document with plain RawBSONDocument options, which makes every
document of the batch a RawBSONDocument, and then throws them away and converts the raw array
again (`_OpMsg.raw_response`; upstream's PYTHON-2722 is still open). Here only the reply's
few top-level and `cursor` elements are walked in Python, and the array is copied by
engine/_bson_walk.c: a drain of a million small documents takes 0.26 s of client CPU instead
of 2.60 s (BENCHMARKS.md run S).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import bson
from bson.errors import InvalidBSON
from pymongo.errors import ProtocolError

try:  # the copy in C (engine/_bson_walk.c); the same loop in Python below where not built
    from ._bson_walk import array_documents as _array_documents_in_c
except ImportError:  # pragma: no cover - a build without a C compiler
    _array_documents_in_c = None  # type: ignore[assignment]

_INT32 = struct.Struct("<i")
_EMBEDDED_DOCUMENT = 0x03
_ARRAY = 0x04
#: the batch's name in a find reply and in a getMore reply
BATCH_FIELDS = (b"firstBatch", b"nextBatch")

# BSON element types (bsonspec.org): a value of fixed size, or one that starts with an int32
# giving its length (plus a constant: a string's length does not count the int32 itself,
# binary data also has a subtype byte)
_FIXED_SIZE = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8,
               0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}  # fmt: skip
_LENGTH_PREFIXED = {0x02: 4, 0x03: 0, 0x04: 0, 0x05: 5, 0x0D: 4, 0x0E: 4, 0x0F: 0}
_REGEX = 0x0B  # two C strings
_DB_POINTER = 0x0C  # a string and a 12-byte ObjectId


def _c_string_end(data: memoryview, pos: int, end: int) -> int:
    while pos < end and data[pos]:
        pos += 1
    if pos >= end:
        raise ProtocolError(f"malformed reply: an unterminated name at byte {pos}")
    return pos + 1


def _value_end(data: memoryview, kind: int, pos: int, end: int) -> int:
    size = _FIXED_SIZE.get(kind)
    if size is not None:
        return pos + size
    extra = _LENGTH_PREFIXED.get(kind)
    if extra is not None:
        if end - pos < 4:
            return end + 1
        length: int = _INT32.unpack_from(data, pos)[0]
        return pos + extra + length
    if kind == _REGEX:
        return _c_string_end(data, _c_string_end(data, pos, end), end)
    if kind == _DB_POINTER:
        return _value_end(data, 0x02, pos, end) + 12
    raise ProtocolError(f"malformed reply: unknown BSON type 0x{kind:02x} at byte {pos - 1}")


def _elements(data: memoryview, document: int, end: int) -> Iterator[tuple[bytes, int, int, int, int]]:
    """(name, type, element start, value start, value end) of each element of the document
    at `document`, which ends at `end`."""
    if end - document < 5 or data[end - 1] != 0:
        raise ProtocolError(f"malformed reply: the document at byte {document} is not terminated")
    pos, last = document + 4, end - 1
    while pos < last:
        kind = data[pos]
        value = _c_string_end(data, pos + 1, last)
        value_end = _value_end(data, kind, value, last)
        if not value <= value_end <= last:
            raise ProtocolError(f"malformed reply: the element at byte {pos} runs past its document")
        yield bytes(data[pos + 1 : value - 1]), kind, pos, value, value_end
        pos = value_end


def _decode_elements(data: memoryview, spans: list[tuple[int, int]]) -> dict[str, Any]:
    body = b"".join(data[start:end] for start, end in spans)
    try:
        return bson.decode(_INT32.pack(len(body) + 5) + body + b"\0")
    except InvalidBSON as exc:
        raise ProtocolError(f"malformed reply: {exc}") from None


def array_documents(array: bytes | bytearray | memoryview) -> bytes:
    """The documents of a BSON array of documents (its whole bytes), back to back;
    ValueError(offset), the offset an int, when the array or an element there is malformed."""
    if _array_documents_in_c is not None:
        return _array_documents_in_c(array)
    return _array_documents_in_python(array)


def _array_documents_in_python(array: bytes | bytearray | memoryview) -> bytes:
    data = memoryview(array)
    end = len(data) - 1
    if len(data) < 5 or _INT32.unpack_from(data, 0)[0] != len(data) or data[end] != 0:
        raise ValueError(0)
    documents: list[memoryview] = []
    pos = 4
    while pos < end:
        element = pos
        if data[pos] != _EMBEDDED_DOCUMENT:
            raise ValueError(element)
        pos += 1
        while pos < end and data[pos]:
            pos += 1
        pos += 1
        if end - pos < 5:
            raise ValueError(element)
        size = _INT32.unpack_from(data, pos)[0]
        if size < 5 or size > end - pos or data[pos + size - 1] != 0:
            raise ValueError(element)
        documents.append(data[pos : pos + size])
        pos += size
    return b"".join(documents)


def unpack_batch_reply(payload: bytes | memoryview) -> dict[str, Any]:
    """The reply as PyMongo's raw-batch cursor hands it on: every field decoded as in any command
    reply, except the batch, which is a list of one bytes object holding its documents back to
    back (or an empty list). ProtocolError when the bytes are not a well-formed reply."""
    data = memoryview(payload)
    if len(data) < 5 or _INT32.unpack_from(data, 0)[0] != len(data) or data[-1] != 0:
        raise ProtocolError("malformed reply: its length does not match its bytes")
    others: list[tuple[int, int]] = []
    cursor: tuple[int, int] | None = None
    for name, kind, start, value, end in _elements(data, 0, len(data)):
        if name == b"cursor" and kind == _EMBEDDED_DOCUMENT:
            cursor = (value, end)
        else:
            others.append((start, end))
    reply = _decode_elements(data, others)
    if cursor is None:  # an error reply
        return reply
    fields: list[tuple[int, int]] = []
    batches: dict[str, list[bytes]] = {}
    for name, kind, start, value, end in _elements(data, *cursor):
        if name in BATCH_FIELDS and kind == _ARRAY:
            try:
                documents = array_documents(data[value:end])
            except ValueError as exc:
                raise ProtocolError(
                    f"malformed reply: the {name.decode()} element at byte {value + exc.args[0]} "
                    "is not a whole document"
                ) from None
            batches[name.decode()] = [documents] if documents else []
        else:
            fields.append((start, end))
    reply["cursor"] = _decode_elements(data, fields) | batches
    return reply
