"""Verify a stored backup without any database: the manifest against the format (strict
schema, totals that add up), every object's size and sha256, each metadata object's content,
BSON framing, document counts and content digests against the manifest."""

from __future__ import annotations

import asyncio

from ..storage import ObjectNotFound, Storage
from .catalog import SourceCollection, load_catalog
from .encryption import BackupKeys, KeyEncryptionKey
from .errors import IntegrityError
from .integrity import DataObjectReader, read_metadata_object
from .model import ProgressCallback, VerifyResult
from .names import shown
from .progress import ProgressTracker
from .signing import SignatureChecker


async def verify_backup(
    storage: Storage,
    progress: ProgressCallback | None = None,
    key: KeyEncryptionKey | None = None,
    public_key: SignatureChecker | None = None,
) -> VerifyResult:
    """`key`: an encrypted backup's key-encryption key (its contents cannot be checked
    without); `public_key`: the manifest must carry a valid signature by it."""
    # no manifest: IncompleteBackup or BackupNotFound; a manifest that does not fit:
    # ManifestInvalid; an encrypted one: KeyRequired, WrongKey or ManifestTampered
    catalog = await load_catalog(storage, check_objects=False, key=key, public_key=public_key)
    assert catalog.checksum is not None  # a catalog of our format always has its manifest
    tracker = ProgressTracker("verify", progress)
    problems: list[str] = []
    objects = documents = data_bytes = stored_bytes = 0
    for source in catalog.collections:
        entry = tracker.add_collection(source.namespace, source.documents or 0, source.data_bytes or 0)
        for obj, check in ((source.metadata, _check_metadata), (source.data, _check_data)):
            if obj is None:
                continue
            objects += 1
            try:
                found = await check(storage, source, catalog.keys)
            except IntegrityError as exc:
                problems.append(str(exc))
                continue
            except ObjectNotFound:
                problems.append(f"{storage.url}/{obj.name}: missing")
                continue
            stored_bytes += obj.size
            documents += found[0]
            data_bytes += found[1]
            await tracker.advance(entry, *found)
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


async def _check_metadata(
    storage: Storage, source: SourceCollection, keys: BackupKeys | None
) -> tuple[int, int]:
    assert source.metadata is not None
    where = f"{storage.url}/{source.metadata.name}"
    metadata, _ = await read_metadata_object(storage, source.metadata, keys)
    for field, expected in (("collectionName", source.name), ("type", source.type)):
        if field in metadata and metadata[field] != expected:
            raise IntegrityError(
                f"{where}: metadata {field} is {shown(metadata[field])}, the manifest says {shown(expected)}"
            )
    return 0, 0


async def _check_data(storage: Storage, source: SourceCollection, keys: BackupKeys | None) -> tuple[int, int]:
    """Documents and BSON bytes of a data object that matches the manifest."""
    assert source.data is not None
    reader = DataObjectReader(storage.url, source, keys)
    async for chunk in storage.read(source.data.name):
        await asyncio.to_thread(reader.feed, chunk)
    digest = reader.finish()
    return digest.documents, digest.bytes
