"""A full engine backup -> restore through every storage backend: the bytes a user restores
are the bytes they backed up, whatever the store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import Binary, Decimal128, Int64, ObjectId
from pymongo import ASCENDING, AsyncMongoClient, IndexModel

from mongo_backup.engine import (
    BackupOptions,
    RestoreOptions,
    list_backups,
    run_backup,
    run_restore,
    verify_backup,
)
from mongo_backup.storage import Storage
from tests.integration.engine.conftest import raw_documents
from tests.support.emulators import Backend

Client = AsyncMongoClient[Any]


async def test_backup_and_restore_through_the_backend(
    mongo: Client, backend: Backend, prefix: str, store: Storage, dbname: str
) -> None:
    docs = [
        {
            "_id": ObjectId(),
            "n": i,
            "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
            "price": Decimal128(f"{i}.25"),
            "big": Int64(2**40 + i),
            "payload": Binary(bytes([i % 256]) * 300),
        }
        for i in range(2000)
    ]
    await mongo[dbname].orders.insert_many(docs)
    await mongo[dbname].orders.create_indexes([IndexModel([("n", ASCENDING)], name="n_1", unique=True)])
    await mongo[dbname].users.insert_many([{"_id": i, "name": f"user {i}"} for i in range(50)])

    # The CLI's shape: open_storage(url).child(backup_name).
    backup = store.child("nightly-1")
    result = await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"]))
    assert result.documents == 2050
    assert result.location == backup.url
    assert backup.url == f"{backend.root_url}/{prefix}/nightly-1"

    listings = await list_backups(store)
    assert [(b.name, b.complete) for b in listings] == [("nightly-1", True)]
    verified = await verify_backup(backup)
    assert verified.ok, verified.problems

    restored = await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"])
    )
    assert restored.documents == 2050
    for coll in ("orders", "users"):
        assert await raw_documents(mongo, f"{dbname}_r.{coll}") == await raw_documents(
            mongo, f"{dbname}.{coll}"
        )
    index_names = [ix["name"] async for ix in await mongo[f"{dbname}_r"].orders.list_indexes()]
    assert "n_1" in index_names
    await mongo.drop_database(dbname)
    await mongo.drop_database(f"{dbname}_r")
