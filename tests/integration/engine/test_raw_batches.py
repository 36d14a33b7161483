"""The backup's cursor (engine/cursor.py) reads what the driver's find_raw_batches reads, byte
for byte, through the driver's own find/getMore/killCursors, with its replies unpacked by
engine/batch_reply.py."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from mongo_backup.engine.cursor import RawBatchCursor, raw_batches
from tests.support.mongo import Commands

Client = AsyncMongoClient[Any]


class CountedCursor(RawBatchCursor):
    unpacked = 0

    def _unpack_response(self, *args: Any, **kwargs: Any) -> list[Any]:
        CountedCursor.unpacked += 1
        return super()._unpack_response(*args, **kwargs)


async def _fill(mongo: Client, dbname: str) -> None:
    docs = [{"_id": i, "s": "é" * (i % 50), "n": i * 0.5, "a": [i, {"b": None}]} for i in range(250)]
    await mongo[dbname]["c"].insert_many(docs)
    await mongo[dbname].create_collection("empty")


async def test_the_cursor_reads_what_find_raw_batches_reads(mongo: Client, dbname: str) -> None:
    await _fill(mongo, dbname)
    # 250 documents in batches of 40: a find and six getMores; the empty collection: no batch
    for name, batches in (("c", 7), ("empty", 0)):
        collection = mongo[dbname][name]
        theirs = [batch async for batch in collection.find_raw_batches(batch_size=40)]
        ours = [batch async for batch in raw_batches(collection, 40)]
        assert ours == theirs and len(ours) == batches


async def test_the_driver_hands_every_reply_to_our_unpacking(mongo_uri: str, dbname: str) -> None:
    """If a pymongo upgrade stopped calling `_unpack_response`, the cursor would still read
    correctly but through the slow path: this fails first."""
    commands = Commands()
    client: Client = AsyncMongoClient(mongo_uri, event_listeners=[commands])
    try:
        await _fill(client, dbname)
        CountedCursor.unpacked = 0
        batches = [batch async for batch in CountedCursor(client[dbname]["c"], batch_size=100)]
        assert [len(b) > 0 for b in batches] == [True, True, True]
        assert len(commands.of("find", "c")) + len(commands.of("getMore", "c")) == CountedCursor.unpacked == 3
    finally:
        await client.close()


async def test_a_cursor_left_early_is_killed_on_the_server(mongo_uri: str, dbname: str) -> None:
    commands = Commands()
    client: Client = AsyncMongoClient(mongo_uri, event_listeners=[commands])
    try:
        await _fill(client, dbname)
        cursor = raw_batches(client[dbname]["c"], 50)
        first = await cursor.next()
        assert first
        await cursor.close()
        (kill,) = commands.of("killCursors")
        assert kill["killCursors"] == "c" and kill["cursors"] and kill["cursors"][0] != 0
    finally:
        await client.close()
