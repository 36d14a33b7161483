"""The order-independent content digest of a collection, and BSON stream framing.

Digest: for every document, BLAKE2b with a 16-byte output over the document's exact BSON
bytes, read as an unsigned little-endian integer; the digest is the sum of these integers
modulo 2**128, written as 32 lowercase hex digits (big-endian), prefixed `b2sum128:`.
Addition commutes, so the digest does not depend on document order; unlike XOR, a document
present twice does not cancel out.
"""

from __future__ import annotations

import struct
from hashlib import blake2b

from .errors import IntegrityError

DIGEST_PREFIX = "b2sum128:"
_MOD = 1 << 128
_MIN_DOC = 5  # int32 length + terminating NUL
MAX_BSON_DOCUMENT = 16 * 1024 * 1024 + 16 * 1024  # the server's limit plus headroom
_SIZE = struct.Struct("<i")
_EMPTY_HASH = blake2b(digest_size=16)


class ContentDigest:
    __slots__ = ("_total", "bytes", "documents")

    def __init__(self) -> None:
        self._total = 0
        self.documents = 0
        self.bytes = 0

    def update_batch(self, batch: bytes | memoryview, where: str) -> None:
        """Add every document of a buffer that holds whole BSON documents back to back."""
        self.documents_of(batch, where, None)

    def documents_of(self, batch: bytes | memoryview, where: str, out: list[bytes] | None) -> None:
        """`update_batch`, also appending each document to `out` (when given) as its own bytes,
        so a caller that needs the documents does not walk the buffer a second time."""
        # the per-document loop is the engine's hottest Python code: locals, struct and a
        # copied BLAKE2b state (cheaper than the keyword-parsing constructor) matter here
        end = len(batch)
        pos = 0
        total = 0
        count = 0
        unpack = _SIZE.unpack_from
        from_bytes = int.from_bytes
        new_hash = _EMPTY_HASH.copy
        append = out.append if out is not None else None
        while pos < end:
            if end - pos < _MIN_DOC:
                raise IntegrityError(f"{where}: truncated BSON document at byte {self.bytes + pos}")
            (size,) = unpack(batch, pos)
            nxt = pos + size
            if size < _MIN_DOC or nxt > end or batch[nxt - 1] != 0:
                raise IntegrityError(f"{where}: malformed BSON document at byte {self.bytes + pos}")
            doc = batch[pos:nxt]
            h = new_hash()
            h.update(doc)
            total += from_bytes(h.digest(), "little")
            if append is not None:
                append(bytes(doc))
            pos = nxt
            count += 1
        self._total += total
        self.documents += count
        self.bytes += end

    def hexdigest(self) -> str:
        return DIGEST_PREFIX + format(self._total % _MOD, "032x")


class BsonFramer:
    """Cuts a byte stream into whole BSON documents, whatever the chunk boundaries.

    `feed` returns a buffer of complete documents (possibly empty) and keeps the tail;
    `finish` raises if the stream ended inside a document."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._pending = bytearray()
        self._offset = 0  # stream offset of _pending[0]

    def feed(self, chunk: bytes) -> bytes:
        if self._pending:
            self._pending += chunk
            buf: bytes | bytearray = self._pending
        else:
            buf = chunk
        end = len(buf)
        pos = 0
        unpack = _SIZE.unpack_from
        while end - pos >= 4:
            (size,) = unpack(buf, pos)
            if size < _MIN_DOC or size > MAX_BSON_DOCUMENT:
                raise IntegrityError(
                    f"{self._where}: malformed BSON stream at byte {self._offset + pos} (document size {size})"
                )
            if pos + size > end:
                break
            pos += size
        whole = bytes(buf[:pos])
        self._pending = bytearray(buf[pos:])
        self._offset += pos
        return whole

    def finish(self) -> None:
        if self._pending:
            raise IntegrityError(
                f"{self._where}: truncated: the stream ends inside a document at byte {self._offset}"
            )
