"""Restore: each collection is streamed into a temporary collection, checked, indexed, then
renamed over its target. Until that rename, the target is untouched."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, OperationFailure

from ..storage import Storage
from .catalog import Catalog, SourceCollection, load_catalog
from .cursor import batch_documents, read_digest
from .digest import ContentDigest
from .errors import EngineError, IntegrityError, RestoreConflict
from .integrity import DataObjectReader, check_stored
from .metadata import collection_options, index_specs, metadata_notes, parse_metadata
from .model import (
    CollectionProgress,
    ProgressCallback,
    RestoredCollection,
    RestoreOptions,
    RestoreResult,
)
from .namespaces import NamespaceFilter, NamespaceRenamer, split_namespace
from .progress import ProgressTracker
from .source import mongo_errors
from .taskgroups import first_cause

log = logging.getLogger(__name__)

TEMP_PREFIX = "__mbtmp_"
#: documents handed to one insert_many, and decoded-but-not-inserted batches per collection
INSERT_BATCH_BYTES = 4 * 1024 * 1024
QUEUE_DEPTH = 2
#: compressed input is decompressed in slices this big, so a highly compressible object never
#: expands into one huge buffer
DECODE_SLICE = 256 * 1024
_NAMESPACE_EXISTS = 48


@dataclass
class _Target:
    source: SourceCollection
    db: str
    name: str
    type: str
    metadata: dict[str, Any]

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.name}"


def temp_name(run_id: str, attempt: str, target: str) -> str:
    """Per run and per attempt: a lost attempt's last inserts, still in flight when it died,
    land in its own temporary collection, never in the one a new attempt fills."""
    return f"{TEMP_PREFIX}{run_id}_{attempt}_{hashlib.sha1(target.encode()).hexdigest()[:12]}"


async def run_restore(
    client: AsyncMongoClient[Any],
    storage: Storage,
    options: RestoreOptions | None = None,
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    options = options or RestoreOptions()
    if options.parallel < 1 or options.insert_workers < 1:
        raise EngineError("parallel and insert_workers must be at least 1")
    started = datetime.now(UTC)
    catalog = await load_catalog(storage, options.source_format)
    selection = NamespaceFilter(options.include, options.exclude)
    renamer = NamespaceRenamer(options.ns_from, options.ns_to)
    run_id = options.run_id or secrets.token_hex(4)
    if not run_id.isalnum():
        raise EngineError(f"run_id {run_id!r} must be letters and digits")
    done = set(options.already_restored)

    targets = await _plan(storage, catalog, selection, renamer)
    if not targets:
        raise EngineError(
            f"nothing to restore from {catalog.location}: no collection matches the namespace filters"
        )
    databases = {t.db for t in targets}
    await _drop_temporaries(client, databases, run_id)
    todo = [t for t in targets if t.namespace not in done]
    existing = await _existing_targets(client, todo)
    if options.resume:
        # A resumed run: a target may have been swapped in just before the last attempt died,
        # without the caller hearing of it. If it holds exactly the backup's data, it is done.
        for target in todo:
            if existing.get(target.namespace) and await _holds_backup_data(client, target):
                done.add(target.namespace)
                del existing[target.namespace]
        todo = [t for t in todo if t.namespace not in done]
    if options.on_conflict == "fail":
        _refuse_conflicts(existing)

    tracker = ProgressTracker("restore", progress)
    restorer = _Restorer(client, storage, catalog, options, run_id, tracker, existing)
    restorer.notes += catalog.notes
    restorer.notes += [note for t in targets for note in metadata_notes(t.metadata, t.source.namespace)]
    results: list[RestoredCollection] = [
        RestoredCollection(t.source.namespace, t.namespace, t.type, t.source.documents or 0, "skipped", None)
        for t in targets
        if t.namespace in done
    ]
    collections = [t for t in todo if t.type != "view"]
    collections.sort(key=lambda t: -(t.source.data.size if t.source.data else 0))
    views = [t for t in todo if t.type == "view"]
    limit = asyncio.Semaphore(options.parallel)

    async def restore_one(target: _Target) -> RestoredCollection:
        async with limit:
            return await restorer.restore_collection(target)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(restore_one(t)) for t in collections]
        results += [t.result() for t in tasks]
        for view in views:  # views last: they may read the collections restored above
            results.append(await restorer.restore_view(view))
    except BaseException as exc:
        await _drop_temporaries(client, databases, run_id, shielded=True)
        if isinstance(exc, BaseExceptionGroup):
            raise first_cause(exc) from None
        raise
    # again at the end: what an earlier, lost attempt still had in flight may have arrived since
    await _drop_temporaries(client, databases, run_id, shielded=True)
    await tracker.emit()
    checked = [r for r in results if r.verified is not None]
    return RestoreResult(
        source=catalog.location,
        backup_checksum=catalog.checksum,
        started_at=started,
        completed_at=datetime.now(UTC),
        documents=sum(r.documents for r in results if r.method != "skipped"),
        data_bytes=tracker.state.bytes_done,
        collections=results,
        verified=sum(1 for r in checked if r.verified),
        checked=len(checked),
        mismatches=[r.target for r in checked if not r.verified],
        notes=restorer.notes,
    )


async def _plan(
    storage: Storage, catalog: Catalog, selection: NamespaceFilter, renamer: NamespaceRenamer
) -> list[_Target]:
    targets: list[_Target] = []
    for source in catalog.collections:
        if not selection.matches(source.namespace):
            continue
        metadata: dict[str, Any] = {}
        if source.metadata is not None:
            raw = await storage.read_bytes(source.metadata.name)
            where = f"{storage.url}/{source.metadata.name}"
            check_stored(where, source.metadata, len(raw), hashlib.sha256(raw).hexdigest())
            codec = source.metadata.codec
            if codec.suffix:
                decompressor = codec.decompressor(f"{storage.url}/{source.metadata.name}")
                raw = decompressor.decompress(raw)
                decompressor.finish()
            metadata = parse_metadata(raw, f"{storage.url}/{source.metadata.name}")
        kind = source.type
        if catalog.manifest is None:  # mongodump directory: the metadata says what it is
            options = metadata.get("options") or {}
            kind = str(metadata.get("type") or ("view" if "viewOn" in options else "collection"))
            if "timeseries" in options or source.buckets:
                kind = "timeseries"
        db, name = split_namespace(renamer.rename(source.namespace))
        targets.append(_Target(source, db, name, kind, metadata))
    seen: dict[str, str] = {}
    for t in targets:
        if t.namespace in seen:
            raise EngineError(
                f"renames map both {seen[t.namespace]} and {t.source.namespace} to {t.namespace}"
            )
        seen[t.namespace] = t.source.namespace
    return targets


async def _existing_targets(client: AsyncMongoClient[Any], targets: Sequence[_Target]) -> dict[str, bool]:
    """Which targets exist now (namespace -> whether they hold data)."""
    existing: dict[str, bool] = {}
    names_by_db: dict[str, dict[str, str]] = {}
    for t in targets:
        if t.db not in names_by_db:
            with mongo_errors(f"listing the collections of database {t.db!r}"):
                infos = await (await client[t.db].list_collections()).to_list()
            names_by_db[t.db] = {i["name"]: str(i.get("type", "collection")) for i in infos}
        kind = names_by_db[t.db].get(t.name)
        if kind is None:
            continue
        if kind == "view":
            existing[t.namespace] = True
        else:
            with mongo_errors(f"reading {t.namespace}"):
                existing[t.namespace] = await client[t.db][t.name].find_one({}, {"_id": 1}) is not None
    return existing


def _refuse_conflicts(existing: dict[str, bool]) -> None:
    """Policy `fail`: any target that holds data stops the restore here, before anything is written."""
    conflicts = sorted(ns for ns, has_data in existing.items() if has_data)
    if conflicts:
        shown = ", ".join(conflicts[:10]) + (
            f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        )
        raise RestoreConflict(
            f"target {'collection' if len(conflicts) == 1 else 'collections'} {shown} "
            f"{'already exists and is' if len(conflicts) == 1 else 'already exist and are'} not empty; "
            "nothing was written (use on-conflict drop to replace them, or rename the target)"
        )


async def _holds_backup_data(client: AsyncMongoClient[Any], target: _Target) -> bool:
    source = target.source
    if target.type != "collection" or source.digest is None:
        return False
    found = await read_digest(
        client[target.db][target.name],
        target.namespace,
        batch_documents(source.documents or 0, source.data_bytes or 0),
    )
    return found.documents == source.documents and found.hexdigest() == source.digest


async def _drop_temporaries(
    client: AsyncMongoClient[Any], databases: set[str], run_id: str, *, shielded: bool = False
) -> None:
    async def drop() -> None:
        prefix = f"{TEMP_PREFIX}{run_id}_"
        for db in sorted(databases):
            names = await client[db].list_collection_names(filter={"name": {"$regex": f"^{prefix}"}})
            for name in names:
                log.info("dropping temporary collection %s.%s", db, name)
                await client[db].drop_collection(name)

    if not shielded:
        with mongo_errors("removing temporary collections"):
            await drop()
        return
    try:  # cleanup after a failure must not hide the failure
        await asyncio.shield(asyncio.wait_for(drop(), 60))
    except BaseException as exc:
        log.warning("could not drop the temporary collections of restore %s: %s", run_id, exc)


class _Restorer:
    def __init__(
        self,
        client: AsyncMongoClient[Any],
        storage: Storage,
        catalog: Catalog,
        options: RestoreOptions,
        run_id: str,
        tracker: ProgressTracker,
        existing: dict[str, bool],
    ) -> None:
        self.client = client
        self.storage = storage
        self.catalog = catalog
        self.options = options
        self.run_id = run_id
        self.attempt = secrets.token_hex(3)
        self.tracker = tracker
        self.existing = existing
        self.notes: list[str] = []

    async def restore_collection(self, target: _Target) -> RestoredCollection:
        source = target.source
        entry = self.tracker.add_collection(target.namespace, source.documents or 0, source.data_bytes or 0)
        if target.type == "timeseries":
            return await self._restore_in_place(target, entry)
        db = self.client[target.db]
        temp = temp_name(self.run_id, self.attempt, target.namespace)
        with mongo_errors(f"creating a temporary collection for {target.namespace}"):
            await db.command({"create": temp, **collection_options(target.metadata)})
        digest = await self._load_data(target, db[temp], entry)
        with mongo_errors(f"building the indexes of {target.namespace}"):
            await self._create_indexes(target, temp)
        verified = await self._verify(target, db[temp], digest) if self.options.verify else None
        drop_target = self.options.on_conflict == "drop" or target.namespace in self.existing
        with mongo_errors(f"renaming the restored data over {target.namespace}"):
            try:
                await self.client.admin.command(
                    {
                        "renameCollection": f"{target.db}.{temp}",
                        "to": target.namespace,
                        "dropTarget": drop_target,
                    }
                )
            except OperationFailure as exc:
                if exc.code == _NAMESPACE_EXISTS:
                    raise RestoreConflict(
                        f"{target.namespace} was created while the restore ran; it was left as it is"
                    ) from None
                raise
        await self._check_options_kept(target)
        await self.tracker.finish(entry, restored_as=target.namespace)
        return RestoredCollection(
            source.namespace, target.namespace, target.type, digest.documents, "swapped", verified
        )

    async def _check_options_kept(self, target: _Target) -> None:
        """Say so when the server did not keep the collection's options across the rename
        (mongod does; some compatible servers do not)."""
        wanted = collection_options(target.metadata)
        if not wanted:
            return
        with mongo_errors(f"reading the options of {target.namespace}"):
            infos = await (
                await self.client[target.db].list_collections(filter={"name": target.name})
            ).to_list()
        found = dict(infos[0].get("options") or {}) if infos else {}
        lost = sorted(k for k in wanted if k not in found)
        if lost:
            self.notes.append(
                f"{target.namespace}: the server dropped the collection options {', '.join(lost)} "
                "when the restored data was renamed into place"
            )

    async def _restore_in_place(self, target: _Target, entry: CollectionProgress) -> RestoredCollection:
        """Time-series collections cannot be renamed: they are written directly."""
        db = self.client[target.db]
        with mongo_errors(f"creating {target.namespace}"):
            if target.namespace in self.existing:
                await db.drop_collection(target.name)
            await db.command({"create": target.name, **collection_options(target.metadata)})
        coll_name = f"system.buckets.{target.name}" if target.source.buckets else target.name
        try:
            digest = await self._load_data(target, db[coll_name], entry)
            with mongo_errors(f"building the indexes of {target.namespace}"):
                await self._create_indexes(target, target.name)
        except BaseException:
            # it did not exist before (or policy drop removed it): remove the half-written one
            await asyncio.shield(db.drop_collection(target.name))
            raise
        verified = None
        if self.options.verify:
            # the server rebuilds measurements from buckets, so field order may change: count only
            count = await db[target.name].count_documents({})
            verified = count == digest.documents
        self.notes.append(
            f"{target.namespace} is a time-series collection, which MongoDB cannot rename: "
            "it was restored in place, not through a temporary collection"
        )
        await self.tracker.finish(entry, restored_as=target.namespace)
        return RestoredCollection(
            target.source.namespace, target.namespace, target.type, digest.documents, "direct", verified
        )

    async def restore_view(self, target: _Target) -> RestoredCollection:
        options = target.metadata.get("options") or {}
        if "viewOn" not in options:
            raise IntegrityError(f"view {target.source.namespace}: its metadata has no viewOn")
        db = self.client[target.db]
        with mongo_errors(f"creating view {target.namespace}"):
            if target.namespace in self.existing:
                await db.drop_collection(target.name)
            await db.command({"create": target.name, **collection_options(target.metadata)})
        self.notes.append(f"view {target.namespace} was created directly (views hold no data to swap in)")
        await self.tracker.emit()
        return RestoredCollection(target.source.namespace, target.namespace, "view", 0, "direct", None)

    async def _load_data(self, target: _Target, collection: Any, entry: CollectionProgress) -> ContentDigest:
        source = target.source
        if source.data is None:
            return ContentDigest()
        reader = DataObjectReader(f"{self.storage.url}/{source.data.name}", source.data)
        # each item: the documents of one insert_many, and their BSON bytes
        batches: asyncio.Queue[tuple[list[RawBSONDocument], int] | None] = asyncio.Queue(QUEUE_DEPTH)

        def decode(piece: bytes) -> tuple[list[RawBSONDocument], int]:
            # in a worker thread; the digest's walk over the documents also cuts them apart
            docs: list[bytes] = []
            size = reader.feed(piece, docs)
            return [RawBSONDocument(d) for d in docs], size

        async def read_object() -> None:
            pending: list[RawBSONDocument] = []
            size = 0
            assert source.data is not None
            async for chunk in self.storage.read(source.data.name, chunk_size=DECODE_SLICE * 4):
                for start in range(0, len(chunk), DECODE_SLICE):
                    docs, docs_size = await asyncio.to_thread(decode, chunk[start : start + DECODE_SLICE])
                    pending += docs
                    size += docs_size
                    if size >= INSERT_BATCH_BYTES:
                        await batches.put((pending, size))
                        pending, size = [], 0
            if pending:
                await batches.put((pending, size))
            reader.finish(source)  # before the workers stop: a mismatch fails the whole load
            for _ in range(self.options.insert_workers):
                await batches.put(None)

        async def insert_batches() -> None:
            while (batch := await batches.get()) is not None:
                docs, size = batch
                with mongo_errors(f"writing {target.namespace}"):
                    try:
                        await collection.insert_many(docs, ordered=False, bypass_document_validation=True)
                    except BulkWriteError as exc:
                        first = (exc.details.get("writeErrors") or [{}])[0]
                        raise EngineError(
                            f"restoring {target.namespace}: {len(exc.details.get('writeErrors', []))} documents "
                            f"were refused, first: {first.get('errmsg', exc)}"
                        ) from None
                await self.tracker.advance(entry, len(docs), size)

        async with asyncio.TaskGroup() as group:
            group.create_task(read_object())
            for _ in range(self.options.insert_workers):
                group.create_task(insert_batches())
        return reader.digest

    async def _create_indexes(self, target: _Target, collection: str) -> None:
        clustered = (target.metadata.get("options") or {}).get("clusteredIndex")
        specs = []
        for spec in index_specs(target.metadata):
            if spec.get("name") == "_id_" or (clustered and spec.get("clustered")):
                continue
            specs.append(spec)
        if specs:
            await self.client[target.db].command({"createIndexes": collection, "indexes": specs})

    async def _verify(self, target: _Target, collection: Any, streamed: ContentDigest) -> bool:
        """Read back what was written and compare it with the backup, before the swap."""
        readback = await read_digest(
            collection, target.namespace, batch_documents(streamed.documents, streamed.bytes)
        )
        expected = target.source.digest or streamed.hexdigest()
        if readback.hexdigest() != expected or readback.documents != streamed.documents:
            raise IntegrityError(
                f"restored {target.namespace} differs from the backup "
                f"({readback.documents} documents read back, {streamed.documents} in the backup)"
            )
        return True
