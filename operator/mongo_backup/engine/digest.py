"""The order-independent content digest of a collection, and BSON stream framing.

Digest: every document's hash over its exact BSON bytes, read as an unsigned integer; the
digest is the sum of these integers modulo 2**128, written as 32 lowercase hex digits
(big-endian) after a prefix that names the hash (docs/FORMAT.md section 4):
- `xxh3sum128:`, written since format version 3: XXH3-128, the integer high64 * 2**64 + low64
  (xxhash's `intdigest`);
- `b2sum128:`, in versions 1 and 2: BLAKE2b with a 16-byte output, read little-endian.
Addition commutes, so the digest does not depend on document order; unlike XOR, a document
present twice does not cancel out. The digest finds documents lost, added or changed by
accident (a bug, a server fault); deliberate tampering is the stored objects' sha256 and the
manifest's authentication and signature to find. XXH3 replaced BLAKE2b because the per-document
hash was most of a backup's client CPU (BENCHMARKS.md, issue 10).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from hashlib import blake2b
from typing import Literal

import xxhash

from .errors import IntegrityError

try:  # the walk in C (engine/_bson_walk.c); the same walk in Python below where not built
    from ._bson_walk import scan as _scan_in_c
except ImportError:  # pragma: no cover - a build without a C compiler
    _scan_in_c = None  # type: ignore[assignment]

DigestAlgorithm = Literal["xxh3sum128:", "b2sum128:"]
XXH3: DigestAlgorithm = "xxh3sum128:"
BLAKE2B: DigestAlgorithm = "b2sum128:"
#: what a backup writes now
DIGEST_ALGORITHM = XXH3
#: True when the C walk is in use (a test makes sure CI runs it)
NATIVE = _scan_in_c is not None

_MOD = 1 << 128
_MIN_DOC = 5  # int32 length + terminating NUL
MAX_BSON_DOCUMENT = 16 * 1024 * 1024 + 16 * 1024  # the server's limit plus headroom
_SIZE = struct.Struct("<i")
_EMPTY_BLAKE2B = blake2b(digest_size=16)

Batch = bytes | bytearray | memoryview
#: a walk over a batch: (sum of the documents' hashes, documents, where it stopped)
Walk = Callable[[Batch, "list[bytes] | None"], tuple[int, int, int]]


def digest_algorithm(digest: str | None) -> DigestAlgorithm:
    """The algorithm a recorded digest names (the current one when there is none to match)."""
    if digest is not None and digest.startswith(BLAKE2B):
        return BLAKE2B
    return XXH3


def _walk_in_python(hash_of: Callable[[bytes], int]) -> Walk:
    def walk(batch: Batch, out: list[bytes] | None) -> tuple[int, int, int]:
        end = len(batch)
        pos = total = count = 0
        unpack = _SIZE.unpack_from
        while end - pos >= _MIN_DOC:
            (size,) = unpack(batch, pos)
            nxt = pos + size
            if size < _MIN_DOC or nxt > end or batch[nxt - 1] != 0:
                break
            doc = bytes(batch[pos:nxt])
            total += hash_of(doc)
            if out is not None:
                out.append(doc)
            pos = nxt
            count += 1
        return total, count, pos

    return walk


def _blake2b_128(doc: bytes) -> int:
    h = _EMPTY_BLAKE2B.copy()  # cheaper than the keyword-parsing constructor
    h.update(doc)
    return int.from_bytes(h.digest(), "little")


def _walk_xxh3_in_c(batch: Batch, out: list[bytes] | None) -> tuple[int, int, int]:
    assert _scan_in_c is not None
    high, low, count, end = _scan_in_c(batch, out)
    return (high << 64) | low, count, end


_WALKS: dict[DigestAlgorithm, Walk] = {
    XXH3: _walk_xxh3_in_c if NATIVE else _walk_in_python(xxhash.xxh3_128_intdigest),
    BLAKE2B: _walk_in_python(_blake2b_128),
}


class ContentDigest:
    __slots__ = ("_total", "_walk", "algorithm", "bytes", "documents")

    def __init__(self, algorithm: DigestAlgorithm = DIGEST_ALGORITHM) -> None:
        self.algorithm = algorithm
        self._walk = _WALKS[algorithm]
        self._total = 0
        self.documents = 0
        self.bytes = 0

    def update_batch(self, batch: Batch, where: str) -> None:
        """Add every document of a buffer that holds whole BSON documents back to back."""
        self.documents_of(batch, where, None)

    def documents_of(self, batch: Batch, where: str, out: list[bytes] | None, *, tail: bool = False) -> int:
        """`update_batch`, also appending each document to `out` (when given) as its own bytes,
        so a caller that needs the documents does not walk the buffer a second time. With
        `tail`, the batch may end inside a document (the rest of a stream follows): returns
        where the whole documents end."""
        total, count, stopped = self._walk(batch, out)
        end = len(batch)
        if stopped != end:
            rest = end - stopped
            size = _SIZE.unpack_from(batch, stopped)[0] if rest >= 4 else None
            at = self.bytes + stopped
            if size is not None and not _MIN_DOC <= size <= MAX_BSON_DOCUMENT:
                raise IntegrityError(f"{where}: malformed BSON document at byte {at} (document size {size})")
            if size is not None and size <= rest:  # whole, yet the walk stopped: no terminator
                raise IntegrityError(f"{where}: malformed BSON document at byte {at}")
            if not tail:
                raise IntegrityError(f"{where}: truncated BSON document at byte {at}")
        self._total += total
        self.documents += count
        self.bytes += stopped
        return stopped

    def hexdigest(self) -> str:
        return self.algorithm + format(self._total % _MOD, "032x")


class DocumentStream:
    """Cuts a byte stream into whole BSON documents, whatever the chunk boundaries, and adds
    them to a digest: one walk over the documents does both (the C walk where built).

    `feed` returns the bytes of the documents it completed and keeps the tail; `finish`
    raises if the stream ended inside a document."""

    def __init__(self, where: str, digest: ContentDigest) -> None:
        self._where = where
        self.digest = digest
        self._pending = b""

    def feed(self, chunk: bytes, out: list[bytes] | None = None) -> int:
        buf = self._pending + chunk if self._pending else chunk
        whole = self.digest.documents_of(buf, self._where, out, tail=True)
        self._pending = buf[whole:]
        return whole

    def finish(self) -> None:
        if self._pending:
            raise IntegrityError(
                f"{self._where}: truncated: the stream ends inside a document at byte {self.digest.bytes}"
            )
