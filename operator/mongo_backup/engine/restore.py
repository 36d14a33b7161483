"""Restore, all or nothing: every collection is streamed into a temporary collection, indexed
and read back; only when all of them are, they are swapped in together (each replaced target
kept aside until the commit), under the journal of engine/journal.py. A failure or a kill
before the commit leaves every target as it was; time-series collections and views, which
cannot be staged, are written directly after the commit, and the plan says so first."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError

from ..storage import Storage
from ..storage.retry import settle
from .cancellation import cancelled_with, clean_up
from .catalog import Catalog, SourceCollection, load_catalog
from .cursor import batch_documents, read_digest
from .digest import ContentDigest, digest_algorithm
from .errors import EngineError, IntegrityError, RestoreConflict
from .failpoints import failpoint
from .integrity import DataObjectReader, read_metadata_object
from .journal import KEPT_SUFFIX, TEMP_PREFIX, RestoreJournal, Swap, temp_name
from .metadata import collection_options, index_specs, metadata_notes
from .model import (
    CollectionProgress,
    ProgressCallback,
    RestoredCollection,
    RestoreOptions,
    RestoreResult,
    RestoreTimings,
)
from .namespaces import JOURNAL_DATABASE, NamespaceFilter, NamespaceRenamer, split_namespace
from .progress import ProgressTracker
from .source import mongo_errors
from .taskgroups import first_cause

log = logging.getLogger(__name__)

__all__ = ["TEMP_PREFIX", "run_restore", "temp_name"]
T = TypeVar("T")
#: how long a failed run may take to undo what it wrote (renames back, drops)
CLEANUP_SECONDS = 300.0
#: documents handed to one insert_many, and decoded-but-not-inserted batches per collection
INSERT_BATCH_BYTES = 4 * 1024 * 1024
QUEUE_DEPTH = 2
#: compressed input is decompressed in slices this big, so a highly compressible object never
#: expands into one huge buffer
DECODE_SLICE = 256 * 1024


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


async def run_restore(
    client: AsyncMongoClient[Any],
    storage: Storage,
    options: RestoreOptions | None = None,
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    """Plan, stage every collection (data, indexes, read-back check), swap them all in, commit;
    then write what cannot be staged (time-series, views). Before the commit, any failure
    leaves every target as it was (engine/journal.py)."""
    options = options or RestoreOptions()
    if options.parallel < 1 or options.insert_workers < 1:
        raise EngineError("parallel and insert_workers must be at least 1")
    started = datetime.now(UTC)
    timings = RestoreTimings()
    planning = time.monotonic()
    # an encrypted backup's key and manifest are checked here, before any target is touched
    catalog = await load_catalog(
        storage, options.source_format, key=options.key, public_key=options.public_key
    )
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
    await failpoint("restore.plan")
    databases = {t.db for t in targets}
    journal = RestoreJournal(client, run_id, secrets.token_hex(3))
    await journal.settle_dead_runs(databases)
    todo = [t for t in targets if t.namespace not in done]

    tracker = ProgressTracker("restore", progress)
    restorer = _Restorer(client, storage, catalog, options, journal.run_id, journal.attempt, tracker, timings)
    restorer.notes += catalog.notes
    restorer.notes += [note for t in targets for note in metadata_notes(t.metadata, t.source.namespace)]
    results = [_skipped(t) for t in targets if t.namespace in done]
    await journal.begin(databases)
    try:
        async with journal.alive():
            await journal.claim(t.namespace for t in todo)
            existing = await _existing_targets(client, todo)
            if options.resume:
                # A resumed run: a target may have been swapped in just before the last attempt
                # died, without the caller hearing of it. If it holds exactly the backup's data, it is done.
                for target in todo:
                    if existing.get(target.namespace) and await _holds_backup_data(client, target):
                        done.add(target.namespace)
                        del existing[target.namespace]
                        results.append(_skipped(target))
                todo = [t for t in todo if t.namespace not in done]
            if options.on_conflict == "fail":
                _refuse_conflicts(existing)
            restorer.existing = existing
            timings.plan += time.monotonic() - planning
            results += await restorer.restore_all(todo, journal)
    except BaseException as exc:
        what = await _undo(journal, databases, restorer.wrote)
        if isinstance(exc, BaseExceptionGroup):
            exc = first_cause(exc)
        raise _with_outcome(exc, what) from None
    with timings.measure("cleanup"):
        await clean_up(
            _leave(journal, databases), f"the temporary collections of restore {run_id}", CLEANUP_SECONDS
        )
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
        # what settling dead runs did (also while claiming the targets) comes first
        notes=journal.notes + restorer.notes,
        timings=timings,
        key_fingerprint=options.key.fingerprint if catalog.keys is not None and options.key else None,
        signer_fingerprint=options.public_key.fingerprint if options.public_key is not None else None,
    )


def _skipped(target: _Target) -> RestoredCollection:
    """A target restored by an earlier attempt of this run."""
    source = target.source
    return RestoredCollection(
        source.namespace, target.namespace, target.type, source.documents or 0, "skipped", None
    )


async def _leave(journal: RestoreJournal, databases: set[str]) -> None:
    # the temporaries first, the journal entry last: while it exists, nobody takes them for orphans
    await journal.drop_temporaries(databases)
    await journal.finish()


async def _undo(journal: RestoreJournal, databases: set[str], wrote: bool) -> str | None:
    """Undo a failed or cancelled run after its in-flight work has stopped; what it did, in words."""
    state, swaps = journal.state, [s.namespace for s in journal.swaps]
    failure: BaseException | None = None

    async def undo() -> None:
        nonlocal failure
        try:
            await journal.undo()
            await _leave(journal, databases)
        except Exception as exc:  # said in the run's own error line, not in a second one
            failure = exc
            log.debug("undoing restore run %s failed: %s", journal.run_id, exc)

    if (
        not await clean_up(undo(), f"what restore run {journal.run_id} wrote", CLEANUP_SECONDS)
        and failure is None
    ):
        failure = TimeoutError(f"undoing took more than {CLEANUP_SECONDS}s")
    if failure is not None:
        later = f"the next restore into {', '.join(sorted(databases))} will"
        where = f"(run {journal.run_id} in {JOURNAL_DATABASE}.restore_runs)"
        if journal.state == "rolledback" or state in (None, "staging"):
            return f"no target was changed; {later} drop the temporary collections left {where}"
        if state == "committed":
            return f"the restore was committed; {later} drop the replaced collections kept aside {where}"
        return f"the swaps could not be rolled back now: {later} roll them back {where}"
    if state == "committed":
        shown = ", ".join(swaps[:5]) + (", ..." if len(swaps) > 5 else "")
        return f"{_count(swaps)} ({shown}) had been swapped in and committed: they stay restored"
    if state == "swapping":
        return f"the swaps ({_count(swaps)}) were rolled back: every target is as it was"
    return "no target was changed" if wrote else None


def _count(namespaces: Sequence[str]) -> str:
    return f"{len(namespaces)} {'collection' if len(namespaces) == 1 else 'collections'}"


def _with_outcome(exc: BaseException, outcome: str | None) -> BaseException:
    """`exc`, its message extended by what happened to the targets (same type: callers look
    at types, never at text)."""
    if outcome is None:
        return exc
    if isinstance(exc, asyncio.CancelledError):
        return cancelled_with(exc, outcome)
    if not isinstance(exc, EngineError) or type(exc).__init__ is not Exception.__init__:
        return exc
    extended = type(exc)(f"{exc}; {outcome}")
    extended.__cause__ = exc.__cause__
    return extended


async def _plan(
    storage: Storage, catalog: Catalog, selection: NamespaceFilter, renamer: NamespaceRenamer
) -> list[_Target]:
    targets: list[_Target] = []
    for source in catalog.collections:
        if not selection.matches(source.namespace):
            continue
        metadata: dict[str, Any] = {}
        if source.metadata is not None:
            metadata, _ = await read_metadata_object(storage, source.metadata, catalog.keys)
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
        digest_algorithm(source.digest),
    )
    return found.documents == source.documents and found.hexdigest() == source.digest


class _Restorer:
    def __init__(
        self,
        client: AsyncMongoClient[Any],
        storage: Storage,
        catalog: Catalog,
        options: RestoreOptions,
        run_id: str,
        attempt: str,
        tracker: ProgressTracker,
        timings: RestoreTimings,
    ) -> None:
        self.client = client
        self.timings = timings
        self.storage = storage
        self.catalog = catalog
        self.options = options
        self.run_id = run_id
        self.attempt = attempt
        self.tracker = tracker
        #: targets that exist now (namespace -> whether they hold data)
        self.existing: dict[str, bool] = {}
        #: a temporary collection was created: the run has something to undo
        self.wrote = False
        self.notes: list[str] = []

    async def restore_all(self, todo: list[_Target], journal: RestoreJournal) -> list[RestoredCollection]:
        staged = [t for t in todo if t.type == "collection"]
        timeseries = [t for t in todo if t.type == "timeseries"]
        views = [t for t in todo if t.type == "view"]
        for target in timeseries + views:  # said before anything is written
            # a time-series collection is outside the all-or-nothing swap: worth a warning; a
            # view holds no data, so there is nothing to lose
            log.log(
                logging.WARNING if target.type == "timeseries" else logging.INFO, "%s", _direct_note(target)
            )
            self.notes.append(_direct_note(target))
        staged.sort(key=lambda t: -(t.source.data.size if t.source.data else 0))
        limit = asyncio.Semaphore(self.options.parallel)

        async def stage(target: _Target) -> RestoredCollection:
            async with limit:
                return await self.stage_collection(target)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(stage(t)) for t in staged]
        results = [t.result() for t in tasks]
        await failpoint("restore.staged")
        swaps = [
            Swap(
                t.db,
                t.name,
                self.temp_of(t),
                self.temp_of(t) + KEPT_SUFFIX if t.namespace in self.existing else None,
            )
            for t in staged
        ]
        with self.timings.measure("swap"):
            if swaps:
                await journal.swap_all(swaps)
            await journal.commit()
        await failpoint("restore.committed")
        with self.timings.measure("drop_replaced"):
            await journal.drop_kept()
        for target in staged:
            await self._check_options_kept(target)
        self.tracker.state.restored += [t.namespace for t in staged]
        await self.tracker.emit()
        # after the commit: what cannot be staged is written directly (views last: they may
        # read the collections restored above)
        with self.timings.measure("direct"):
            for target in timeseries:
                results.append(await self._restore_in_place(target))
            for target in views:
                results.append(await self.restore_view(target))
        return results

    def temp_of(self, target: _Target) -> str:
        return temp_name(self.run_id, self.attempt, target.namespace)

    async def stage_collection(self, target: _Target) -> RestoredCollection:
        """Data, indexes and the read-back check, into the target's temporary collection."""
        source = target.source
        entry = self.tracker.add_collection(target.namespace, source.documents or 0, source.data_bytes or 0)
        db = self.client[target.db]
        temp = self.temp_of(target)
        self.wrote = True
        with (
            self.timings.measure("create"),
            mongo_errors(f"creating a temporary collection for {target.namespace}"),
        ):
            await db.command({"create": temp, **collection_options(target.metadata)})
        with self.timings.measure("insert"):
            digest = await self._load_data(target, db[temp], entry)
        await failpoint("restore.indexes", ns=target.namespace)
        with self.timings.measure("indexes"), mongo_errors(f"building the indexes of {target.namespace}"):
            await self._create_indexes(target, temp)
        verified = None
        if self.options.verify:
            with self.timings.measure("verify"):
                verified = await self._verify(target, db[temp], digest)
        await self.tracker.finish(entry)
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

    async def _restore_in_place(self, target: _Target) -> RestoredCollection:
        """Time-series collections cannot be renamed: they are written directly."""
        source = target.source
        entry = self.tracker.add_collection(target.namespace, source.documents or 0, source.data_bytes or 0)
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
            await clean_up(_drop(db, target.name), f"the half-written {target.namespace}", CLEANUP_SECONDS)
            raise
        verified = None
        if self.options.verify:
            # the server rebuilds measurements from buckets, so field order may change: count only
            count = await db[target.name].count_documents({})
            verified = count == digest.documents
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
        await self.tracker.emit()
        return RestoredCollection(target.source.namespace, target.namespace, "view", 0, "direct", None)

    async def _load_data(self, target: _Target, collection: Any, entry: CollectionProgress) -> ContentDigest:
        source = target.source
        if source.data is None:
            return ContentDigest(digest_algorithm(source.digest))
        reader = DataObjectReader(self.storage.url, source, self.catalog.keys)
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
            # the object's last bytes (an encrypted object's last segment), then the checks:
            # before the workers stop, so a mismatch fails the whole load
            last: list[bytes] = []
            before = reader.digest.bytes
            await asyncio.to_thread(reader.finish, last)
            pending += [RawBSONDocument(d) for d in last]
            size += reader.digest.bytes - before
            if pending:
                await batches.put((pending, size))
            for _ in range(self.options.insert_workers):
                await batches.put(None)

        async def insert_batches() -> None:
            while (batch := await batches.get()) is not None:
                docs, size = batch
                with mongo_errors(f"writing {target.namespace}"):
                    try:
                        await _to_its_end(
                            collection.insert_many(docs, ordered=False, bypass_document_validation=True)
                        )
                    except BulkWriteError as exc:
                        first = (exc.details.get("writeErrors") or [{}])[0]
                        raise EngineError(
                            f"restoring {target.namespace}: {len(exc.details.get('writeErrors', []))} documents "
                            f"were refused, first: {first.get('errmsg', exc)}"
                        ) from None
                await self.tracker.advance(entry, len(docs), size)
                await failpoint("restore.data", ns=target.namespace)

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
            collection,
            target.namespace,
            batch_documents(streamed.documents, streamed.bytes),
            streamed.algorithm,
        )
        expected = target.source.digest or streamed.hexdigest()
        if readback.hexdigest() != expected or readback.documents != streamed.documents:
            raise IntegrityError(
                f"restored {target.namespace} differs from the backup "
                f"({readback.documents} documents read back, {streamed.documents} in the backup)"
            )
        return True


def _direct_note(target: _Target) -> str:
    if target.type == "view":
        return f"view {target.namespace} is created directly, after the collections (a view holds no data to stage)"
    return (
        f"{target.namespace} is a time-series collection, which MongoDB cannot rename: it is written "
        "directly, after the staged collections are swapped in, and is not part of their all-or-nothing swap"
    )


async def _drop(db: Any, name: str) -> None:
    await db.drop_collection(name)


async def _to_its_end(write: Awaitable[T]) -> T:
    """Await a write; when cancelled, first wait until the write has ended: a command already
    sent still lands, and cleanup must come after it, not before."""
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await settle([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what is reported
        raise
