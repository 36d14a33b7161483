"""Reading a collection as raw BSON batches of a bounded size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncRawBatchCursor

from .batch_reply import unpack_batch_reply
from .digest import ContentDigest, DigestAlgorithm
from .source import mongo_errors

#: the size asked of each cursor batch (the server's own cap is 16 MiB, which the driver holds
#: several times over while it unpacks one): small enough to keep memory flat, large enough
#: that round trips do not show
BATCH_BYTES = 4 * 1024 * 1024


class RawBatchCursor(AsyncRawBatchCursor[Any]):
    """`find_raw_batches`' cursor (server selection and pinning, sessions, getMore, killCursors
    all stay the driver's), with its replies unpacked by engine/batch_reply.py, which does not
    make a Python object of every document. `_unpack_response` is the driver's own hook for
    this (its raw-batch cursors override it too); pymongo is pinned in constraints.txt, and
    tests/integration/engine/test_raw_batches.py fails if the driver stops calling it."""

    def _unpack_response(
        self,
        response: Any,
        cursor_id: int | None,
        codec_options: Any,
        user_fields: Mapping[str, Any] | None = None,
        legacy_response: bool = False,
    ) -> list[Any]:
        payload = getattr(response, "payload_document", None)
        if legacy_response or payload is None:  # an OP_REPLY: servers older than 3.6
            return super()._unpack_response(response, cursor_id, codec_options, user_fields, legacy_response)
        return [unpack_batch_reply(payload)]


def raw_batches(collection: AsyncCollection[Any], batch_size: int) -> RawBatchCursor:
    """Every document of `collection`, as batches of whole BSON documents back to back."""
    return RawBatchCursor(collection, batch_size=batch_size)


def batch_documents(documents: int, data_bytes: int) -> int:
    """Documents per cursor batch for about BATCH_BYTES; 0 (the server's default) when the
    collection's size is not known."""
    if not documents or not data_bytes:
        return 0
    return max(100, BATCH_BYTES // max(1, data_bytes // documents))


async def read_digest(
    collection: Any, where: str, batch_size: int, algorithm: DigestAlgorithm
) -> ContentDigest:
    """Count and digest what a collection holds now (with the hash of the digest it is
    compared with)."""
    found = ContentDigest(algorithm)
    with mongo_errors(f"reading {where}"):
        async for batch in raw_batches(collection, batch_size):
            found.update_batch(batch, where)
    return found
