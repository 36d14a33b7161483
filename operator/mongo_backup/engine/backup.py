"""Backup: every selected collection streamed as raw BSON into compressed objects, then the
manifest. Nothing is decoded; memory is bounded by a few batches per collection in flight.

One writer per backup name: the run first creates the name's lock (engine/lock.py), records
every object it begins to write, and on failure or cancellation (once every write in flight
has ended) deletes exactly those, the manifest first, then the lock. On success the manifest
goes last and the lock is removed.

The plan is made from `listDatabases` and `listCollections` alone: no collStats or dbStats
(SecantusDB answers those with full scans, slower than the dump itself; collStats is
deprecated on mongod since 6.2), so the first collection is read at once. Document counts
are asked in the background while the dump runs (see `_Counter`): they raise the progress
totals when they arrive and let the collections not yet started go largest first.

Failpoints (engine/failpoints.py):
- `backup.locked`: the lock is held, nothing else written yet;
- `backup.plan` (ns): planning, about to look at collection `ns`;
- `backup.data` (ns, object): a chunk of `ns`'s data object was handed to storage;
- `backup.metadata` (ns, object): `ns`'s indexes are listed, its metadata object is next (the
  metadata is dumped while the data is read);
- `backup.manifest`: every data and metadata object is committed, the manifest is next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from .. import __version__
from ..storage import ObjectExists, Storage
from ..storage.retry import in_thread, settle
from .cancellation import cancelled_with, checkpoint, clean_up
from .compression import get_codec
from .cursor import batch_documents, raw_batches
from .digest import ContentDigest
from .encryption import BackupKeys
from .envelope import seal_new_backup
from .errors import EngineError
from .failpoints import failpoint
from .journal import TEMP_PREFIX
from .lock import BackupLock, lock_backup_root, new_run_id
from .manifest import (
    FORMAT_VERSION,
    LOCK_NAME,
    MANIFEST_NAME,
    BackupManifest,
    CollectionEntry,
    StoredObject,
    manifest_checksum,
)
from .metadata import DATA_SUFFIX, METADATA_SUFFIX, build_metadata, collection_file_stem
from .model import BackupOptions, BackupResult, CollectionResult, ProgressCallback
from .namespaces import SKIPPED_DATABASES, NamespaceFilter, is_system_namespace
from .progress import ProgressTracker
from .source import mongo_errors
from .taskgroups import first_cause
from .transforms import ObjectWriter, Transforms

log = logging.getLogger(__name__)

#: raw batches waiting to be compressed, per collection; with cursor.BATCH_BYTES, the memory bound
QUEUE_DEPTH = 2
#: compressed output is gathered into writes of about this size
WRITE_CHUNK = 4 * 1024 * 1024
#: a batch smaller than this is encoded on the event loop (zstd: ~0.1 ms for 40 KB; gzip at
#: most ~3 ms): a worker-thread hop costs more CPU than that (BENCHMARKS.md, runs O and P:
#: the many-collections set)
INLINE_BYTES = 64 * 1024
#: a failed run gives up removing what it wrote after this long (the lock then stays)
CLEANUP_TIMEOUT = 60.0
#: documents in a collection's first cursor batch. The plan knows no sizes, so the batches
#: that follow are sized from this one (`_fit_batches`); a collection of up to this many
#: documents is read in one round trip (500 small collections: one `find` each)
FIRST_BATCH_DOCUMENTS = 1000

# Counting in the background (`_Counter`). A count (`estimatedDocumentCount`) is answered
# from the collection's metadata on mongod, but SecantusDB scans the collection for it, on the
# one thread that also serves the dump. Measured there (100k ~210-byte documents, 4 runs
# each, alternating): a raw drain alone 1.95 s (median; 1.91-2.16), the same drain with one
# count running beside it 2.90 s (2.58-3.34): a count costs the dump its whole duration
# (~1 s per 100k documents, ~50% of a drain), and 500 collections of 200 documents take
# 1.06 s to count against 2.10 s to drain. So the counter keeps the server busy at most
# COUNT_ALLOWANCE plus COUNT_SHARE of the time the dump has run, and every count carries a
# maxTimeMS of what is left: SecantusDB gives a scan up at that limit (a count of 100k
# documents with maxTimeMS=20 returns ExecutionTimeout after 21-31 ms), and mongod answers
# from metadata well within it (~1 ms: the allowance alone covers the first dozens of
# collections, the share ~1,000 more per minute of run). On a server that scans to count,
# a large collection costs one attempt of at most the allowance, small ones are counted
# while the share lasts, and the others get their totals when they finish.
COUNT_ALLOWANCE = 0.02
COUNT_SHARE = 0.02
#: a count is not started with less than this left: the server would give it up at once
COUNT_MIN_WINDOW = 0.005


@dataclass
class PlannedCollection:
    db: str
    name: str
    type: str  # collection | view | timeseries
    info: dict[str, Any]

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.name}"


@contextmanager
def _driver(what: str) -> Iterator[None]:
    """Around every driver call of a backup: driver errors become EngineErrors, and a
    cancellation the driver dropped is raised after all (engine/cancellation.py)."""
    with mongo_errors(what):
        yield
    checkpoint()


class _Written:
    """The names this run began to write under its locked root, in order: exactly what its
    cleanup deletes. A write refused with ObjectExists met someone else's object: forgotten."""

    def __init__(self) -> None:
        self.names: list[str] = []

    @contextmanager
    def writing(self, name: str) -> Iterator[None]:
        self.names.append(name)
        try:
            yield
        except ObjectExists:
            self.names.remove(name)
            raise


async def server_version(client: AsyncMongoClient[Any]) -> str:
    with _driver("reading the server version"):
        info = await client.admin.command("buildInfo")
    return str(info.get("version", "unknown"))


async def plan_backup(client: AsyncMongoClient[Any], selection: NamespaceFilter) -> list[PlannedCollection]:
    """Every collection to dump, by namespace, views last; from the catalog alone
    (`listDatabases`, `listCollections`): nothing here reads or counts a collection's data."""
    planned: list[PlannedCollection] = []
    with _driver("listing databases"):
        databases = await client.list_database_names()
    for db_name in sorted(databases):
        if db_name in SKIPPED_DATABASES or not selection.may_match_database(db_name):
            continue
        db = client[db_name]
        with _driver(f"listing the collections of database {db_name!r}"):
            infos = await (await db.list_collections()).to_list()
        for found in sorted(infos, key=lambda info: str(info["name"])):
            info = dict(found)
            name = info["name"]
            if is_system_namespace(db_name, name) or not selection.matches(f"{db_name}.{name}"):
                continue
            if name.startswith(TEMP_PREFIX):  # a restore's temporary collection, never user data
                log.debug("skipping the restore temporary %s.%s", db_name, name)
                continue
            await failpoint("backup.plan", ns=f"{db_name}.{name}")
            checkpoint()
            planned.append(PlannedCollection(db_name, name, collection_type(info), info))
    planned.sort(key=lambda p: (p.type == "view", p.namespace))
    return planned


def collection_type(info: dict[str, Any]) -> str:
    kind = str(info.get("type", "collection"))
    if kind == "collection" and "timeseries" in (info.get("options") or {}):
        return "timeseries"  # some servers report time-series collections as plain ones
    return kind


def _documents_in(batch: bytes) -> int:
    count = pos = 0
    while pos + 5 <= len(batch):
        size = int.from_bytes(batch[pos : pos + 4], "little")
        if size < 5:  # not BSON: the digest of this batch reports it
            break
        pos += size
        count += 1
    return count


def _fit_batches(cursor: Any, first: bytes) -> None:
    """Size the getMores that follow the first batch to about cursor.BATCH_BYTES, from the
    first batch's average document: the memory bound, without asking the server for sizes.
    PyMongo's `batch_size()` refuses once a cursor has run, but its getMores read the
    attribute it sets (pymongo 4.x, pinned in constraints.txt; tests/integration/engine/
    test_backup_planning.py watches the getMores' batchSize). Without the attribute the
    cursor keeps FIRST_BATCH_DOCUMENTS."""
    size = batch_documents(_documents_in(first), len(first))
    if size and hasattr(cursor, "_batch_size"):
        cursor._batch_size = size


class _Job:
    """The dump of one collection: its data object and its metadata object."""

    def __init__(
        self,
        client: AsyncMongoClient[Any],
        storage: Storage,
        plan: PlannedCollection,
        chains: _Chains,
        tracker: ProgressTracker,
        written: _Written,
    ) -> None:
        self.client = client
        self.storage = storage
        self.written = written
        self.plan = plan
        self.chains = chains
        self.tracker = tracker
        self.stem = collection_file_stem(plan.db, plan.name)
        #: totals unknown until the counter (or the end of the dump) tells
        self.progress = tracker.add_collection(plan.namespace, 0, 0, known=False)
        #: what the background count said; None: not counted (yet, or given up)
        self.count: int | None = None

    def countable(self) -> bool:
        """A count is a metadata read only for plain collections: a view holds no data, a
        time-series count unpacks buckets."""
        return self.plan.type == "collection"

    async def run(self) -> CollectionEntry:
        objects: list[StoredObject] = []
        digest: ContentDigest | None = None
        # the metadata (the indexes listed, the object written) is dumped while the data is
        # read, not after: with many small collections, a round trip and a commit less in each
        # collection's latency keep the server busy (BENCHMARKS.md run U)
        async with asyncio.TaskGroup() as group:
            metadata = group.create_task(self._dump_metadata())
            dumped = group.create_task(self._dump_data()) if self.plan.type != "view" else None
        if dumped is not None:
            data_object, digest = dumped.result()
            objects.append(data_object)
        objects.append(metadata.result())
        await self.tracker.finish(self.progress)
        return CollectionEntry(
            db=self.plan.db,
            name=self.plan.name,
            type=self.plan.type,
            documents=digest.documents if digest else 0,
            data_bytes=digest.bytes if digest else 0,
            digest=digest.hexdigest() if digest else None,
            objects=objects,
        )

    async def _dump_data(self) -> tuple[StoredObject, ContentDigest]:
        chains = self.chains
        name = self.stem + DATA_SUFFIX + chains.data.suffix
        where = f"{self.plan.namespace} -> {self.storage.url}/{name}"
        digest = ContentDigest()
        # made at the first batch: a collection that its first batch holds whole is compressed
        # on the calling thread, because zstd's worker threads cost more to start than they
        # save on it (BENCHMARKS.md run T: ~0.13 ms of CPU per object)
        stored: ObjectWriter | None = None

        def data_writer(small: bool) -> ObjectWriter:
            nonlocal stored
            if stored is None:
                stored = chains.data.writer(name, chains.level, chains.keys, small=small)
            return stored

        # each item: a batch, and whether the cursor is known to have ended with it
        batches: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue(QUEUE_DEPTH)
        collection = self.client[self.plan.db][self.plan.name]

        async def read_batches() -> None:
            with _driver(f"reading {self.plan.namespace}"):
                cursor = raw_batches(collection, FIRST_BATCH_DOCUMENTS)
                first = True
                async for batch in cursor:
                    checkpoint()
                    last = not cursor.alive
                    if first and not last:  # else the first batch was all there is
                        _fit_batches(cursor, batch)
                    first = False
                    await batches.put((batch, last))
            await batches.put(None)

        def encode(batch: bytes, last: bool) -> bytes:
            # in a worker thread: zstd, AES-GCM and sha256 release the GIL, so the event loop
            # keeps reading; the last batch is finished in the same call (one thread hop fewer
            # per collection, which shows with many small ones)
            digest.update_batch(batch, where)
            encoder = data_writer(small=last)  # the first call decides: was the first batch the last?
            out = encoder.update(batch)
            return out + encoder.finish() if last else out

        async def write_chunk(data: bytes) -> None:
            await writer.write(data)
            await failpoint("backup.data", ns=self.plan.namespace, object=name)

        async def write_objects() -> None:
            pending: list[bytes] = []
            pending_size = 0
            finished = False
            while (item := await batches.get()) is not None:
                batch, finished = item
                before = digest.documents
                if len(batch) < INLINE_BYTES:
                    out = encode(batch, finished)
                else:
                    out = await in_thread(encode, batch, finished)
                if out:
                    pending.append(out)
                    pending_size += len(out)
                if pending_size >= WRITE_CHUNK:
                    await write_chunk(b"".join(pending))
                    pending, pending_size = [], 0
                await self.tracker.advance(self.progress, digest.documents - before, len(batch))
            if not finished:  # the cursor ended with an empty batch (or with none at all)
                pending.append(await in_thread(data_writer(small=True).finish))
            await write_chunk(b"".join(pending))

        with self.written.writing(name):
            async with self.storage.open_write(name) as writer:
                async with asyncio.TaskGroup() as group:
                    group.create_task(read_batches())
                    group.create_task(write_objects())
        assert writer.info is not None and stored is not None
        return chains.stored(name, "data", writer.info.size, stored.sha256, chains.data), digest

    async def _dump_metadata(self) -> StoredObject:
        indexes: list[dict[str, Any]] = []
        if self.plan.type != "view":
            with _driver(f"listing the indexes of {self.plan.namespace}"):
                cursor = await self.client[self.plan.db][self.plan.name].list_indexes()
                indexes = [dict(ix) async for ix in cursor]
        info = dict(self.plan.info)
        info["type"] = self.plan.type
        chains = self.chains
        name = self.stem + METADATA_SUFFIX + chains.metadata.suffix
        await failpoint("backup.metadata", ns=self.plan.namespace, object=name)
        writer = chains.metadata.writer(name, chains.level, chains.keys, small=True)
        raw = writer.whole(build_metadata(info, indexes))
        with self.written.writing(name):
            stored = await self.storage.write_bytes(name, raw)
        return chains.stored(name, "metadata", stored.size, writer.sha256, chains.metadata)


@dataclass(frozen=True)
class _Chains:
    """The transform chains of a backup's objects (engine/transforms.py), and its keys."""

    data: Transforms
    metadata: Transforms
    level: int | None
    keys: BackupKeys | None

    def stored(self, name: str, role: str, size: int, sha256: str, chain: Transforms) -> StoredObject:
        # recorded in plain (version 1) manifests too: readers of version 1 ignore the field
        return StoredObject(name=name, role=role, size=size, sha256=sha256, transforms=list(chain.steps))


class _Counter:
    """Document counts in the background, in plan order (the order the dump starts in), for
    the collections not finished yet: each count raises its collection's progress totals and
    lets the scheduler start larger collections first. The server's time spent counting is
    kept within COUNT_ALLOWANCE + COUNT_SHARE x the time run so far (see those constants). A
    count that fails or is given up leaves that collection without a total until it ends:
    counts are optional, never an error of the backup."""

    def __init__(self, client: AsyncMongoClient[Any], jobs: list[_Job], tracker: ProgressTracker) -> None:
        self.client = client
        self.jobs = [job for job in jobs if job.countable()]
        self.tracker = tracker
        #: counts received so far: the scheduler re-sorts what is pending when this changes
        self.received = 0

    async def run(self) -> None:
        started = time.monotonic()
        spent = 0.0
        for job in self.jobs:
            while not job.progress.finished:
                left = COUNT_ALLOWANCE + COUNT_SHARE * (time.monotonic() - started) - spent
                if left < COUNT_MIN_WINDOW:
                    await asyncio.sleep((COUNT_MIN_WINDOW - left) / COUNT_SHARE)
                    continue
                # wall time, queueing behind the dump's own requests included: on a server
                # that serves one request at a time this overstates the cost, never understates it
                asked = time.monotonic()
                try:
                    collection = self.client[job.plan.db][job.plan.name]
                    count = await collection.estimated_document_count(maxTimeMS=max(1, int(left * 1000)))
                except PyMongoError as exc:
                    log.debug("no document count for %s: %s", job.plan.namespace, exc)
                    count = None
                finally:
                    spent += time.monotonic() - asked
                checkpoint()
                if count is not None:
                    job.count = count
                    self.received += 1
                    await self.tracker.set_totals(job.progress, count)
                break


def _dump_order(job: _Job) -> tuple[bool, bool, int]:
    """Which pending collection starts next: views last; before them, collections without a
    count in plan order (on a server that counts from metadata, that is only what the counter
    has not reached yet; on one that scans to count, what was too large to count within the
    counter's budget), then the counted ones, largest first. Ties keep plan order (the sort
    is stable)."""
    return (job.plan.type == "view", job.count is not None, -(job.count or 0))


async def run_backup(
    client: AsyncMongoClient[Any],
    storage: Storage,
    options: BackupOptions | None = None,
    progress: ProgressCallback | None = None,
) -> BackupResult:
    options = options or BackupOptions()
    codec = get_codec(options.compression)
    codec.compressor(options.level)  # validates the level before anything is written
    if options.parallel < 1:
        raise EngineError(f"parallel must be at least 1 (got {options.parallel})")
    selection = NamespaceFilter(options.include, options.exclude)
    started = datetime.now(UTC)
    owner = options.owner or new_run_id()
    encryption, keys = None, None
    if options.encryption_key is not None:  # the key is used (a KMS asked) before anything is written
        encryption, keys = await in_thread(seal_new_backup, options.encryption_key)
    encrypted = keys is not None
    # mongodump --gzip compresses metadata files too; zstd leaves them plain
    chains = _Chains(
        Transforms(codec, encrypted),
        Transforms(codec if codec.name == "gzip" else get_codec("none"), encrypted),
        options.level,
        keys,
    )
    lock = await lock_backup_root(storage, owner, take_over_own=options.replace_partial)
    written = _Written()
    try:
        await failpoint("backup.locked", location=storage.url)
        version = await server_version(client)
        plan = await plan_backup(client, selection)
        if not plan:
            raise EngineError("nothing to back up: no collection matches the namespace filters")
        tracker = ProgressTracker("backup", progress)
        jobs = [_Job(client, storage, p, chains, tracker, written) for p in plan]
        entries = await _dump_all(client, jobs, tracker, options.parallel)
        manifest = BackupManifest(
            format_version=FORMAT_VERSION,
            encryption=encryption,
            engine_version=__version__,
            server_version=version,
            started_at=started,
            completed_at=datetime.now(UTC),
            compression=codec.name,
            compression_level=options.level if options.level is not None else codec.default_level,
            collections=entries,
            options={
                "include": list(options.include),
                "exclude": list(options.exclude),
                "parallel": options.parallel,
                # who wrote it: the lock's owner, so that a run taken up again after a restart
                # adopts only a backup of its own (docs/FORMAT.md section 3a)
                "owner": owner,
            },
        )
        raw = manifest.to_json(keys, options.signer)
        checkpoint()  # a cancelled run never completes a backup
        await failpoint("backup.manifest", location=storage.url)
        # the manifest goes last: its presence is what marks the backup complete
        with written.writing(MANIFEST_NAME):
            await storage.write_bytes(MANIFEST_NAME, raw)
    except BaseException as exc:
        left = await _discard_partial(storage, lock, written)
        if isinstance(exc, BaseExceptionGroup):
            raise cancelled_with(first_cause(exc), left) from None
        if isinstance(exc, asyncio.CancelledError):
            raise cancelled_with(exc, left) from None
        raise
    await _release_after_success(lock)
    await tracker.emit()
    return BackupResult(
        location=storage.url,
        checksum=manifest_checksum(raw),
        started_at=started,
        completed_at=manifest.completed_at,
        server_version=version,
        documents=manifest.documents,
        data_bytes=manifest.data_bytes,
        stored_bytes=manifest.stored_bytes,
        collections=[
            CollectionResult(e.namespace, e.type, e.documents, e.data_bytes, e.stored_bytes, e.digest)
            for e in entries
        ],
        key_fingerprint=encryption.key.fingerprint if encryption is not None else None,
        key_source=encryption.key.source if encryption is not None else None,
        signer_fingerprint=options.signer.fingerprint if options.signer is not None else None,
    )


async def _dump_all(
    client: AsyncMongoClient[Any], jobs: list[_Job], tracker: ProgressTracker, parallel: int
) -> list[CollectionEntry]:
    """`parallel` workers take the next collection by `_dump_order` until none is left, while
    the counter counts beside them; the entries come back in plan order."""
    pending = list(jobs)  # plan order: already in _dump_order while nothing is counted
    done: dict[str, CollectionEntry] = {}
    counter = _Counter(client, jobs, tracker)
    sorted_at = 0  # counts received when `pending` was last sorted

    async def worker() -> None:
        nonlocal sorted_at
        while pending:
            if sorted_at != counter.received:
                sorted_at = counter.received
                pending.sort(key=_dump_order)
            job = pending.pop(0)
            done[job.plan.namespace] = await job.run()

    counting = asyncio.ensure_future(counter.run())
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(parallel, len(jobs))):
                group.create_task(worker())
    finally:
        # the counts are of no use once the dump has ended, whichever way it ended
        counting.cancel()
        await settle([counting])
        if not counting.cancelled() and counting.exception() is not None:
            log.warning("counting documents failed: %s", counting.exception())
    return [done[job.plan.namespace] for job in jobs]


async def _release_after_success(lock: BackupLock) -> None:
    """The manifest is written: the backup is complete, and its run has succeeded. Removing
    the lock is the last step; a cancellation that arrives meanwhile is too late to stop the
    run, and a lock left by a failure here blocks nothing (the manifest comes first)."""
    release = asyncio.ensure_future(asyncio.wait_for(lock.release(), CLEANUP_TIMEOUT))
    try:
        await settle([release])
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    error = release.exception() if not release.cancelled() else None
    if error is not None:
        log.warning("could not remove the lock of the complete backup at %s: %s", lock.storage.url, error)


async def _discard_partial(storage: Storage, lock: BackupLock, written: _Written) -> str:
    """After a failure: every write has ended (the task groups waited for their tasks, each
    writer's abort for its uploads in flight), so delete exactly what this run began to write,
    the manifest first, then the lock. Best effort, bounded: whatever cannot be deleted stays
    under the lock, which names its run to whoever comes next. Never a prefix: the names
    another run may own are not ours to guess. Returns what it left, in words."""

    left = (
        f"the {len(written.names)} objects it had written were deleted, and its lock"
        if written.names
        else "it had written nothing but its lock, which was removed"
    )

    async def discard() -> None:
        nonlocal left
        if not await lock.still_mine():
            log.warning("the lock of %s is no longer this run's: nothing deleted", storage.url)
            left = "nothing was deleted: the backup's lock is no longer this run's"
            return
        for name in reversed(written.names):
            await storage.delete(name)
        await storage.delete(LOCK_NAME)

    if not await clean_up(discard(), f"the partial backup at {storage.url}", CLEANUP_TIMEOUT):
        left = (
            f"what it had written could not all be deleted now: it stays under its lock at "
            f"{storage.url}, and the next run of this backup, or its deletion, removes it"
        )
    return left
