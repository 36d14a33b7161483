"""Verify a stored backup without any database: every object's size and sha256, BSON framing,
document counts and content digests against the manifest."""

from __future__ import annotations

import asyncio
import hashlib

from ..storage import ObjectNotFound, Storage
from .catalog import SourceCollection, load_catalog
from .digest import BsonFramer, ContentDigest
from .model import BackupNotFound, IntegrityError, ProgressCallback, VerifyResult
from .progress import ProgressTracker


async def verify_backup(storage: Storage, progress: ProgressCallback | None = None) -> VerifyResult:
    catalog = await load_catalog(storage)
    if catalog.manifest is None or catalog.checksum is None:
        raise BackupNotFound(
            f"{storage.url} has no manifest.json: it is a mongodump directory or an incomplete backup, "
            "and holds nothing to verify against"
        )
    tracker = ProgressTracker("verify", progress)
    problems: list[str] = []
    objects = documents = data_bytes = stored_bytes = 0
    for source in catalog.collections:
        entry = tracker.add_collection(source.namespace, source.documents or 0, source.data_bytes or 0)
        for obj in (source.metadata, source.data):
            if obj is None:
                continue
            objects += 1
            try:
                found = await _check_object(
                    storage, source, obj.name, obj.name == (source.data and source.data.name)
                )
            except IntegrityError as exc:
                problems.append(str(exc))
                continue
            except ObjectNotFound:
                problems.append(f"{storage.url}/{obj.name}: missing")
                continue
            stored_bytes += obj.size
            if found is not None:
                documents += found.documents
                data_bytes += found.bytes
                await tracker.advance(entry, found.documents, found.bytes)
        await tracker.finish(entry)
    return VerifyResult(
        location=storage.url,
        checksum=catalog.checksum,
        objects=objects,
        documents=documents,
        data_bytes=data_bytes,
        stored_bytes=stored_bytes,
        problems=problems,
    )


async def _check_object(
    storage: Storage, source: SourceCollection, name: str, is_data: bool
) -> ContentDigest | None:
    expected = source.data if is_data else source.metadata
    assert expected is not None
    where = f"{storage.url}/{name}"
    sha = hashlib.sha256()
    size = 0
    digest = ContentDigest()
    decompressor = expected.codec.decompressor(where) if is_data else None
    framer = BsonFramer(where)

    def consume(chunk: bytes) -> None:
        sha.update(chunk)
        if decompressor is not None:
            digest.update_batch(framer.feed(decompressor.decompress(chunk)), where)

    async for chunk in storage.read(name):
        size += len(chunk)
        await asyncio.to_thread(consume, chunk)
    if size != expected.size:
        raise IntegrityError(f"{where}: {size} bytes stored, the manifest says {expected.size}")
    if sha.hexdigest() != expected.sha256:
        raise IntegrityError(f"{where}: sha256 does not match the manifest (corrupt object)")
    if decompressor is None:
        return None
    decompressor.finish()
    framer.finish()
    if source.documents is not None and digest.documents != source.documents:
        raise IntegrityError(f"{where}: {digest.documents} documents, the manifest says {source.documents}")
    if source.digest is not None and digest.hexdigest() != source.digest:
        raise IntegrityError(f"{where}: content digest does not match the manifest")
    return digest
