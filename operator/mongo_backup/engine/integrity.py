"""Checking stored objects against what the manifest says of them, while they stream."""

from __future__ import annotations

import hashlib

from .catalog import SourceCollection, SourceObject
from .digest import BsonFramer, ContentDigest
from .errors import IntegrityError


def check_stored(where: str, expected: SourceObject, size: int, sha256: str) -> None:
    """Size and sha256 of the stored bytes (unknown for a mongodump directory: not checked)."""
    if expected.sha256 is None:
        return
    if size != expected.size:
        raise IntegrityError(f"{where}: {size} bytes stored, the manifest says {expected.size}")
    if sha256 != expected.sha256:
        raise IntegrityError(f"{where}: sha256 does not match the manifest (corrupt object)")


class DataObjectReader:
    """Turns the stored chunks of a data object into whole BSON documents, keeping the
    sha256 of the stored bytes, the document count and the content digest on the way."""

    def __init__(self, where: str, stored: SourceObject) -> None:
        self.where = where
        self.stored = stored
        self.digest = ContentDigest()
        self._sha = hashlib.sha256()
        self._size = 0
        self._decompressor = stored.codec.decompressor(where)
        self._framer = BsonFramer(where)

    def feed(self, chunk: bytes, out: list[bytes] | None = None) -> int:
        """Consume stored bytes; append each whole document to `out` when given. Returns the
        BSON bytes of the documents completed by this chunk. CPU-bound: call it in a thread."""
        self._sha.update(chunk)
        self._size += len(chunk)
        whole = self._framer.feed(self._decompressor.decompress(chunk))
        self.digest.documents_of(whole, self.where, out)
        return len(whole)

    def finish(self, source: SourceCollection) -> ContentDigest:
        """Raise IntegrityError unless the object ended cleanly and matches the manifest."""
        self._decompressor.finish()
        self._framer.finish()
        check_stored(self.where, self.stored, self._size, self._sha.hexdigest())
        if source.documents is not None and self.digest.documents != source.documents:
            raise IntegrityError(
                f"{self.where}: {self.digest.documents} documents, the manifest says {source.documents}"
            )
        if source.data_bytes is not None and self.digest.bytes != source.data_bytes:
            raise IntegrityError(
                f"{self.where}: {self.digest.bytes} bytes of BSON, the manifest says {source.data_bytes}"
            )
        if source.digest is not None and self.digest.hexdigest() != source.digest:
            raise IntegrityError(f"{self.where}: content digest does not match the manifest")
        return self.digest
