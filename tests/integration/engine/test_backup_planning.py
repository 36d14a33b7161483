"""The backup's planning asks the server for its catalog only (issue 10): no collStats or
dbStats, whose cost on some servers is a full scan; counts come in the background, bounded,
and raise the progress totals while the dump runs; the totals end at what was backed up."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, run_backup
from mongo_backup.engine import backup as backup_module
from mongo_backup.engine.cursor import BATCH_BYTES
from mongo_backup.engine.failpoints import armed
from mongo_backup.engine.model import Progress
from mongo_backup.engine.progress import ProgressTracker
from mongo_backup.storage import Storage
from tests.support.mongo import Commands

Client = AsyncMongoClient[Any]

#: fixed-size, incompressible documents: batch sizes are exact, and 2,500 of them make a data
#: object of two chunks (the engine writes 4 MiB at a time)
PAYLOAD = 2000
#: what may come before the first find: the catalog (a collection's indexes are listed beside
#: its data), the server version and the counts
CATALOG_COMMANDS = {"buildInfo", "listDatabases", "listCollections", "listIndexes", "count"}
#: never during a backup: full scans on SecantusDB, deprecated (collStats) on mongod
SCANNING_COMMANDS = {"collStats", "dbStats", "dataSize"}


@dataclass
class Snapshots:
    """The figures of every progress snapshot (the engine hands the same object each time)."""

    seen: list[tuple[int, int, int, int]] = field(default_factory=list)
    collections: list[dict[str, tuple[int, int, bool]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, p: Progress) -> None:
        self.seen.append((p.documents_done, p.documents_total, p.bytes_done, p.bytes_total))
        self.collections.append(
            {ns: (c.documents_done, c.documents_total, c.finished) for ns, c in p.collections.items()}
        )
        self.changed.set()

    async def wait_for(self, condition: Any, what: str, limit: float = 60.0) -> None:
        async def poll() -> None:
            while not (self.collections and condition(self.collections[-1])):
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(poll(), limit)
        except TimeoutError:
            pytest.fail(f"never saw {what}; last snapshot: {self.collections[-1:]}")


@pytest.fixture
async def watched(mongo_uri: str) -> Any:
    commands = Commands()
    client: Client = AsyncMongoClient(mongo_uri, event_listeners=[commands])
    try:
        yield client, commands
    finally:
        await client.close()


async def load(mongo: Client, db: str, sizes: dict[str, int]) -> None:
    for name, count in sizes.items():
        docs = [{"_id": i, "p": os.urandom(PAYLOAD)} for i in range(count)]
        if docs:
            await mongo[db][name].insert_many(docs)
        else:
            await mongo[db].create_collection(name)


@pytest.fixture
def generous_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A counting budget no count of these small collections can exceed, however loaded the
    machine: these tests are about what the counts do, not about the budget."""
    monkeypatch.setattr(backup_module, "COUNT_ALLOWANCE", 60.0)


async def test_a_backup_asks_for_no_collection_statistics(
    mongo: Client, watched: tuple[Client, Commands], store: Storage, dbname: str
) -> None:
    """Promise: planning reads the catalog only: nothing but the catalog, the server version
    and (bounded) counts is asked before the first collection is read, and no collStats or
    dbStats at all; the progress totals end at exactly what was backed up."""
    await load(mongo, dbname, {"big": 3000, "small": 20, "empty": 0})
    await mongo[dbname].create_collection("recent", viewOn="big", pipeline=[{"$match": {"_id": {"$gt": 10}}}])
    client, commands = watched
    snapshots = Snapshots()

    result = await run_backup(client, store, BackupOptions(include=[f"{dbname}.*"]), snapshots)

    names = commands.names()
    assert not SCANNING_COMMANDS & set(names), names
    assert not [body for body in commands.of("aggregate") if "$collStats" in str(body.get("pipeline"))]
    first_find = names.index("find")
    assert set(names[:first_find]) <= CATALOG_COMMANDS, names[:first_find]
    for count in commands.of("count"):
        assert 0 < count["maxTimeMS"] <= 60_000, count  # bounded: the server gives a scan up
    assert result.documents == 3020
    done, total, bytes_done, bytes_total = snapshots.seen[-1]
    assert (done, total) == (result.documents, result.documents)
    assert (bytes_done, bytes_total) == (result.data_bytes, result.data_bytes)
    final = snapshots.collections[-1]
    assert final[f"{dbname}.big"] == (3000, 3000, True)
    assert final[f"{dbname}.small"] == (20, 20, True)
    assert final[f"{dbname}.empty"] == (0, 0, True)


async def test_a_count_raises_the_totals_of_a_collection_that_is_streaming(
    mongo: Client, store: Storage, dbname: str, generous_counting: None
) -> None:
    """Promise: a collection starts streaming with no total; its count, when it arrives,
    becomes its document total (and, with the average document seen, its byte total) while
    it is still being dumped."""
    await load(mongo, dbname, {"docs": 2500})
    ns = f"{dbname}.docs"
    snapshots = Snapshots()
    held: list[tuple[int, int, bool]] = []

    async def hold_until_counted(context: dict[str, Any]) -> None:
        if context["ns"] != ns or held:
            return
        await snapshots.wait_for(lambda c: c[ns][1] > 0, "a total for the streaming collection")
        held.append(snapshots.collections[-1][ns])

    # uncompressed: the data object then goes out in 4 MiB chunks, the first one mid-collection
    options = BackupOptions(include=[f"{dbname}.*"], compression="none")
    with armed("backup.data", hold_until_counted):
        result = await run_backup(mongo, store, options, snapshots)

    documents_done, documents_total, finished = held[0]
    assert documents_total == 2500 and not finished
    assert documents_done < 2500  # the first chunk of data: the rest is still to come
    assert snapshots.seen[-1][:2] == (result.documents, result.documents) == (2500, 2500)


async def test_collections_not_started_yet_go_largest_first_once_counted(
    mongo: Client, watched: tuple[Client, Commands], store: Storage, dbname: str, generous_counting: None
) -> None:
    """Promise: without sizes the dump starts in namespace order; collections that are still
    waiting when their counts arrive are taken largest first."""
    await load(mongo, dbname, {"a_first": 10, "b_small": 30, "c_large": 400, "d_medium": 100})
    client, commands = watched
    snapshots = Snapshots()
    counted = {f"{dbname}.{name}" for name in ("b_small", "c_large", "d_medium")}

    async def hold_the_first_until_all_counted(context: dict[str, Any]) -> None:
        if context["ns"] == f"{dbname}.a_first":
            await snapshots.wait_for(
                lambda c: all(c[ns][1] > 0 for ns in counted), "counts for every waiting collection"
            )

    options = BackupOptions(include=[f"{dbname}.*"], parallel=1)
    with armed("backup.data", hold_the_first_until_all_counted):
        await run_backup(client, store, options, snapshots)

    order = [body["find"] for body in commands.of("find")]
    assert order == ["a_first", "c_large", "d_medium", "b_small"]


async def test_batches_after_the_first_are_sized_from_it(
    mongo: Client, watched: tuple[Client, Commands], store: Storage, dbname: str
) -> None:
    """Promise: with no sizes from the server, the cursor's first batch is a fixed number of
    documents and the getMores that follow ask for about cursor.BATCH_BYTES of them, sized
    from the first batch's documents: memory stays bounded whatever the documents' size."""
    await load(mongo, dbname, {"docs": 5000})
    client, commands = watched

    result = await run_backup(client, store, BackupOptions(include=[f"{dbname}.*"]))

    size = result.data_bytes // result.documents  # every document has the same size
    (find,) = commands.of("find", "docs")
    assert find["batchSize"] == backup_module.FIRST_BATCH_DOCUMENTS
    more = commands.of("getMore", "docs")
    assert more, "5000 documents in one batch of 1000?"
    assert {body["batchSize"] for body in more} == {BATCH_BYTES // size}


async def test_progress_totals_follow_counts_and_end_at_what_was_seen() -> None:
    """Promise (the tracker alone): a count sets a collection's totals, never below what is
    done, with a byte total from the average document seen; a finished collection keeps what
    was really seen, and a late count changes nothing; the run's totals are the sum."""
    tracker = ProgressTracker("backup", None)
    a = tracker.add_collection("db.a", 0, 0)
    b = tracker.add_collection("db.b", 0, 0)

    await tracker.set_totals(a, 100)  # before any document: the byte total is not known yet
    assert (a.documents_total, a.bytes_total) == (100, 0)
    await tracker.advance(a, 10, 1000)
    assert (a.documents_total, a.bytes_total) == (100, 10_000)
    await tracker.advance(b, 50, 500)
    await tracker.set_totals(b, 20)  # a stale count: never below what is done
    assert (b.documents_total, b.bytes_total) == (50, 500)
    await tracker.advance(a, 100, 20_000)  # more than counted: the total follows
    assert (a.documents_total, a.bytes_total) == (110, 21_000)
    assert (tracker.state.documents_total, tracker.state.bytes_total) == (160, 21_500)

    await tracker.finish(a)
    await tracker.set_totals(a, 5000)  # late: a finished collection keeps what was seen
    await tracker.finish(b)
    assert (a.documents_total, a.bytes_total, b.documents_total, b.bytes_total) == (110, 21_000, 50, 500)
    state = tracker.state
    assert (state.documents_done, state.documents_total, state.bytes_done, state.bytes_total) == (
        160,
        160,
        21_500,
        21_500,
    )


async def test_percent_and_eta_wait_until_every_collection_size_is_known() -> None:
    """Promise: while a collection is not counted yet, or counted with no document seen to
    size it, the totals are partial: no percent and no ETA (they would run ahead); once every
    unfinished collection is sized, both appear. A restore knows its totals from the start."""
    tracker = ProgressTracker("backup", None)
    a = tracker.add_collection("db.a", 0, 0, known=False)
    b = tracker.add_collection("db.b", 0, 0, known=False)
    await tracker.advance(a, 10, 1000)
    state = tracker.state
    assert (state.totals_known, state.percent, state.eta) == (False, None, None)
    await tracker.set_totals(a, 100)
    await tracker.set_totals(b, 50)  # counted, but no document of b seen: no byte size yet
    assert state.totals_known is False and state.percent is None
    await tracker.advance(b, 5, 100)
    state.elapsed = 1.0
    assert state.totals_known is True
    assert state.percent == pytest.approx(100 * 1100 / (10_000 + 1000))
    assert state.eta is not None
    await tracker.finish(a)
    await tracker.finish(b)
    assert (state.totals_known, state.percent) == (True, 100.0)

    restore = ProgressTracker("restore", None)
    restore.add_collection("db.a", 100, 10_000)
    assert restore.state.totals_known is True and restore.state.percent == 0.0
