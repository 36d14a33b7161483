"""Checking stored objects against what the manifest says of them, while they stream through
the transform chain (engine/transforms.py)."""

from __future__ import annotations

from typing import Any

from ..storage import Storage
from .catalog import SourceCollection, SourceObject
from .digest import ContentDigest, DocumentStream, digest_algorithm
from .encryption import BackupKeys
from .errors import IntegrityError
from .metadata import parse_metadata
from .transforms import check_whole


class DataObjectReader:
    """Turns the stored chunks of a data object into whole BSON documents, keeping the
    sha256 of the stored bytes, the document count and the content digest on the way."""

    def __init__(self, storage_url: str, source: SourceCollection, keys: BackupKeys | None) -> None:
        assert source.data is not None
        stored = source.data
        where = f"{storage_url}/{stored.name}"
        self.where = where
        self.source = source
        self.stored = stored
        # the hash the manifest's digest names: a backup of an older format version is read too
        self.digest = ContentDigest(digest_algorithm(source.digest))
        self._reader = stored.transforms.reader(stored.name, where, keys)
        self._documents = DocumentStream(where, self.digest)

    def feed(self, chunk: bytes, out: list[bytes] | None = None) -> int:
        """Consume stored bytes; append each whole document to `out` when given. Returns the
        BSON bytes of the documents completed by this chunk. CPU-bound: call it in a thread."""
        return self._documents.feed(self._reader.update(chunk), out)

    def finish(self, out: list[bytes] | None = None) -> ContentDigest:
        """Raise IntegrityError unless the object ended cleanly and matches the manifest; the
        documents of the object's last bytes go to `out`."""
        source = self.source
        self._documents.feed(self._reader.finish(), out)
        self._documents.finish()
        check_whole(self.where, self._reader, self.stored.size, self.stored.sha256)
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


async def read_metadata_object(
    storage: Storage, stored: SourceObject, keys: BackupKeys | None
) -> tuple[dict[str, Any], bytes]:
    """A metadata object, checked against the manifest, through its transform chain, parsed:
    the document and its plain bytes."""
    where = f"{storage.url}/{stored.name}"
    raw = await storage.read_bytes(stored.name)
    reader = stored.transforms.reader(stored.name, where, keys)
    plain = reader.whole(raw)
    check_whole(where, reader, stored.size, stored.sha256)
    return parse_metadata(plain, where), plain
