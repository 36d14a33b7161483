"""engine/batch_reply.py unpacks find/getMore replies to what PyMongo's own raw-batch cursor
hands on, without a Python object per document: the driver's unpacking is the oracle here,
on replies holding every BSON type, and on mangled bytes the answer is a ProtocolError."""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from pymongo.errors import ProtocolError
from pymongo.message import _OpMsg

from mongo_backup.engine import batch_reply
from mongo_backup.engine.batch_reply import array_documents, unpack_batch_reply

_CURSOR_FIELDS = {"cursor": {"firstBatch": 1, "nextBatch": 1}}


def _by_the_driver(payload: bytes) -> dict[str, Any]:
    """What pymongo 4.x's AsyncRawBatchCursor._unpack_response makes of an OP_MSG reply."""
    reply = _OpMsg(0, payload).raw_response(None, user_fields=_CURSOR_FIELDS)[0]
    bson._convert_raw_document_lists_to_streams(reply)  # type: ignore[attr-defined]
    return dict(reply)


def _comparable(reply: Mapping[str, Any]) -> dict[str, Any]:
    """The batch as bytes, every other field decoded: the driver keeps those as RawBSON."""
    out = bson.decode(bson.encode({k: v for k, v in reply.items() if k != "cursor"}))
    if "cursor" in reply:
        cursor = reply["cursor"]
        batch = {k: [bytes(b) for b in cursor[k]] for k in ("firstBatch", "nextBatch") if k in cursor}
        rest = bson.decode(bson.encode({k: v for k, v in cursor.items() if k not in batch}))
        out["cursor"] = rest | batch
    return out


def _element(kind: int, name: bytes, value: bytes) -> bytes:
    return bytes([kind]) + name + b"\0" + value


def _document(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return struct.pack("<i", len(body) + 5) + body + b"\0"


#: the element types bson.encode no longer writes (deprecated), written by hand
_DEPRECATED = [
    _element(0x06, b"undefined", b""),
    _element(0x0C, b"dbpointer", struct.pack("<i", 5) + b"a.bc\0" + bytes(12)),
    _element(0x0E, b"symbol", struct.pack("<i", 4) + b"sym\0"),
]

_EVERY_TYPE: dict[str, Any] = {
    "double": 1.5,
    "string": "é",
    "doc": {"a": [1, {"b": None}]},
    "binary": Binary(b"\x00\x01", 4),
    "oid": ObjectId(),
    "bool": True,
    "date": datetime(2026, 1, 2, tzinfo=UTC),
    "null": None,
    "regex": Regex("^a.*b$", "im"),
    "code": Code("function () {}"),
    "scoped": Code("x", {"x": 1}),
    "int32": 7,
    "ts": Timestamp(1700000000, 3),
    "int64": Int64(2**40),
    "decimal": Decimal128("1.25"),
    "min": MinKey(),
    "max": MaxKey(),
}


def _documents(n: int) -> list[dict[str, Any]]:
    return [{"_id": i, **_EVERY_TYPE, "pad": "x" * (i % 13)} for i in range(n)]


def _reply(batch_name: str, documents: list[dict[str, Any]], cursor_id: int = 42) -> bytes:
    reply = bson.encode(
        {
            "cursor": {
                batch_name: documents,
                "id": Int64(cursor_id),
                "ns": "db.c",
                "postBatchResumeToken": {"$recordId": Int64(9)},
                "extra": _EVERY_TYPE,
            },
            "ok": 1.0,
            "$clusterTime": {"clusterTime": Timestamp(1, 2), "signature": {"hash": b"\0" * 20, "keyId": 0}},
            "operationTime": Timestamp(1, 2),
            "top": _EVERY_TYPE,
        }
    )
    # the deprecated types, appended to the reply's top level (bson cannot write them)
    return _document(reply[4:-1], *_DEPRECATED)


@pytest.mark.parametrize("batch_name", ["firstBatch", "nextBatch"])
@pytest.mark.parametrize("count", [0, 1, 30])
def test_a_reply_unpacks_as_the_driver_unpacks_it(batch_name: str, count: int) -> None:
    payload = _reply(batch_name, _documents(count))
    ours = unpack_batch_reply(payload)
    assert _comparable(ours) == _comparable(_by_the_driver(payload))
    batch = ours["cursor"][batch_name]
    assert batch == ([b"".join(bson.encode(d) for d in _documents(count))] if count else [])
    assert ours["cursor"]["id"] == 42 and ours["cursor"]["ns"] == "db.c"
    assert unpack_batch_reply(memoryview(payload)) == ours


def test_an_error_reply_is_decoded_whole() -> None:
    reply = {"ok": 0.0, "errmsg": "no such cmd", "code": 59, "codeName": "CommandNotFound"}
    assert unpack_batch_reply(bson.encode(reply)) == reply


def test_a_batch_of_something_else_than_documents_is_refused() -> None:
    payload = bson.encode({"cursor": {"firstBatch": [1, 2], "id": Int64(0), "ns": "db.c"}, "ok": 1.0})
    with pytest.raises(ProtocolError, match=r"the firstBatch element at byte \d+ is not a whole document"):
        unpack_batch_reply(payload)


def _mangle(rng: random.Random, payload: bytes) -> tuple[str, bytes]:
    buf = bytearray(payload)
    how = rng.choice(["cut", "byte", "length", "tail"])
    if how == "cut":
        del buf[rng.randrange(len(buf)) :]
    elif how == "byte":  # any byte changed: a type, a length, a terminator, or only a value
        buf[rng.randrange(len(buf))] ^= rng.randrange(1, 256)
    elif how == "length":  # a length anywhere made absurd
        at = rng.randrange(len(buf) - 4)
        buf[at : at + 4] = rng.choice([2**31 - 1, -1, 0, 4]).to_bytes(4, "little", signed=True)
    else:
        buf += rng.randbytes(rng.randint(1, 8))
    return how, bytes(buf)


def test_mangled_replies_are_refused_as_protocol_errors_never_as_crashes() -> None:
    rng = random.Random(11)
    payload = _reply("nextBatch", _documents(5))
    for _ in range(3000):
        how, mangled = _mangle(rng, payload)
        try:
            unpack_batch_reply(mangled)
        except ProtocolError as exc:
            assert str(exc).startswith("malformed reply: ")
        else:  # a changed byte may be inside a value: a different reply, still well formed
            assert how in ("byte", "length"), f"a reply {how} was taken as whole"


def _array_of(documents: list[bytes]) -> bytes:
    return _document(*(_element(0x03, str(i).encode(), d) for i, d in enumerate(documents)))


def _outcome(convert: Any, array: bytes) -> tuple[str, Any]:
    try:
        return "documents", convert(array)
    except ValueError as exc:
        return "refused at", exc.args[0]


def test_the_c_copy_and_the_python_copy_agree_on_any_array() -> None:
    """The Python loop is what a build without a compiler runs: the same documents, and the
    same offset named when the array is malformed."""
    rng = random.Random(12)
    in_python = batch_reply._array_documents_in_python
    for _ in range(3000):
        documents = [bson.encode(d) for d in _documents(rng.randint(0, 4))]
        array = _array_of(documents)
        if rng.random() < 0.8 and len(array) > 5:
            array = _mangle(rng, array)[1]
        expected = _outcome(in_python, array)
        assert _outcome(array_documents, array) == expected, array
        if array == _array_of(documents):
            assert expected == ("documents", b"".join(documents))
    assert array_documents(memoryview(_array_of([b"\x05\0\0\0\0"]))) == b"\x05\0\0\0\0"


def test_the_c_copy_is_built() -> None:
    assert batch_reply._array_documents_in_c is not None, "engine/_bson_walk.c was not built"


def test_the_names_in_errors_say_where() -> None:
    # the offset in the message points at the array element that is not a document
    payload = bson.encode({"cursor": {"nextBatch": [{"a": 1}, "x"], "id": Int64(0)}, "ok": 1.0})
    with pytest.raises(ProtocolError) as raised:
        unpack_batch_reply(payload)
    at = int(re.search(r"at byte (\d+)", str(raised.value)).group(1))  # type: ignore[union-attr]
    assert payload[at] == 0x02 and payload[at + 1 : at + 3] == b"1\0"
