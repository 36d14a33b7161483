"""Backup and restore against a real server: data byte for byte, and everything around it."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, GEOSPHERE, AsyncMongoClient, IndexModel

from mongo_backup.engine import (
    BackupOptions,
    RestoreConflict,
    RestoreOptions,
    run_backup,
    run_restore,
    verify_backup,
)
from mongo_backup.engine.manifest import BackupManifest
from mongo_backup.storage import Storage

from .conftest import collection_shapes, is_secantus, raw_documents

Client = AsyncMongoClient[Any]


def every_bson_type(i: int) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "double": 1.5 + i,
        "nan": float("nan"),
        "neg_zero": -0.0,
        "string": f"héllo wörld ✓ {i}",
        "empty": "",
        "doc": {"nested": {"deeper": [1, {"x": None}]}},
        "array": [1, "two", 3.0, [4], {"five": 5}],
        "binary": Binary(b"\x00\x01\xff" * 10),
        "uuid": Binary(uuid.UUID(int=i).bytes, 4),
        "md5": Binary(b"0" * 16, 5),
        "user_binary": Binary(b"custom", 128),
        "bool": i % 2 == 0,
        "date": dt.datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=dt.UTC),
        "old_date": dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        "null": None,
        "regex": Regex("^ab+c$", "imx"),
        "code": Code("function() { return 1; }"),
        "int32": 2**31 - 1,
        "int64": Int64(2**62),
        "timestamp": Timestamp(1_700_000_000, i + 1),
        "decimal": Decimal128("1234567890.123456789012345678901234"),
        "min": MinKey(),
        "max": MaxKey(),
        "key.with$odd": 1,
        "ключ": "unicode key",
    }


async def backup_to(client: Client, store: Storage, name: str, **options: Any) -> Storage:
    target = store.child(name)
    await run_backup(client, target, BackupOptions(**options))
    return target


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
async def test_every_bson_type_round_trips_byte_for_byte(
    mongo: Client, store: Storage, dbname: str, compression: str
) -> None:
    await mongo[dbname].types.insert_many([every_bson_type(i) for i in range(300)])
    await mongo[dbname].big.insert_one({"_id": 1, "blob": Binary(b"z" * (15 * 1024 * 1024))})
    await mongo[dbname].empty.insert_one({})
    await mongo[dbname].empty.delete_many({})

    backup = await backup_to(mongo, store, "b", compression=compression, include=[f"{dbname}.*"])
    result = await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"])
    )

    for coll in ("types", "big", "empty"):
        assert await raw_documents(mongo, f"{dbname}_r.{coll}") == await raw_documents(
            mongo, f"{dbname}.{coll}"
        )
    assert result.checked == result.verified == 3 and not result.mismatches
    assert result.documents == 301


async def test_backup_layout_and_manifest(mongo: Client, store: Storage, dbname: str) -> None:
    await mongo[dbname].orders.insert_many([{"n": i} for i in range(1000)])
    await mongo[dbname]["we/ird%name"].insert_one({"n": 1})
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    names = [info.name async for info in backup.list()]
    assert names == sorted(
        [
            "manifest.json",
            f"{dbname}/orders.bson.zst",
            f"{dbname}/orders.metadata.json",
            f"{dbname}/we%2Fird%25name.bson.zst",
            f"{dbname}/we%2Fird%25name.metadata.json",
        ]
    )
    manifest = BackupManifest.from_json(await backup.read_bytes("manifest.json"), "m")
    orders = next(c for c in manifest.collections if c.name == "orders")
    assert orders.documents == 1000 and orders.digest and orders.digest.startswith("xxh3sum128:")
    assert {o.role for o in orders.objects} == {"data", "metadata"}
    # each object's transform steps, in write order
    assert {o.role: o.transforms for o in orders.objects} == {"data": ["zstd"], "metadata": []}
    assert manifest.format_version == 3 and manifest.encryption is None
    assert manifest.documents == 1001 and manifest.compression == "zstd"
    assert (await verify_backup(backup)).ok


async def test_gzip_backup_uses_mongodump_names(mongo: Client, store: Storage, dbname: str) -> None:
    await mongo[dbname].c.insert_one({"a": 1})
    backup = await backup_to(mongo, store, "b", compression="gzip", include=[f"{dbname}.*"])
    names = {info.name async for info in backup.list()}
    assert names == {"manifest.json", f"{dbname}/c.bson.gz", f"{dbname}/c.metadata.json.gz"}


async def test_indexes_views_and_time_series_come_back(mongo: Client, store: Storage, dbname: str) -> None:
    db = mongo[dbname]
    await db.people.insert_many(
        [
            {"email": f"p{i}@x", "age": i, "loc": {"type": "Point", "coordinates": [i % 90, i % 45]}}
            for i in range(200)
        ]
    )
    await db.people.create_indexes(
        [
            IndexModel([("email", ASCENDING)], unique=True),
            IndexModel([("age", ASCENDING)], partialFilterExpression={"age": {"$gt": 50}}, name="adults"),
            IndexModel([("age", ASCENDING), ("email", -1)], name="compound"),
            IndexModel([("loc", GEOSPHERE)]),
            IndexModel([("email", ASCENDING)], collation={"locale": "fr", "strength": 2}, name="email_fr"),
        ]
    )
    await db.sessions.insert_one({"at": dt.datetime.now(dt.UTC)})
    await db.sessions.create_index("at", expireAfterSeconds=3600)
    await db.create_collection("metrics", timeseries={"timeField": "t", "metaField": "host"})
    await db.metrics.insert_many(
        [{"t": dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "host": i % 3, "v": i} for i in range(50)]
    )
    await db.create_collection("adults", viewOn="people", pipeline=[{"$match": {"age": {"$gt": 50}}}])

    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    result = await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"])
    )

    before, after = await collection_shapes(mongo, dbname), await collection_shapes(mongo, f"{dbname}_r")
    assert sorted(after) == sorted(before)
    for name in ("people", "sessions", "metrics"):
        assert after[name]["indexes"] == before[name]["indexes"], name
    assert after["adults"] == before["adults"]
    assert after["metrics"]["options"] == before["metrics"]["options"]
    methods = {c.target: c.method for c in result.collections}
    assert methods[f"{dbname}_r.metrics"] == "direct" and methods[f"{dbname}_r.adults"] == "direct"
    assert methods[f"{dbname}_r.people"] == "swapped"
    assert any("time-series" in note for note in result.notes)
    assert (
        await db.metrics.count_documents({}) == await mongo[f"{dbname}_r"].metrics.count_documents({}) == 50
    )


@pytest.mark.emulator_gap
async def test_collection_options_survive(mongo: Client, store: Storage, dbname: str) -> None:
    db = mongo[dbname]
    await db.create_collection("log", capped=True, size=1 << 20, max=1000)
    await db.create_collection(
        "strict", validator={"$jsonSchema": {"required": ["name"]}}, validationAction="error"
    )
    await db.create_collection("french", collation={"locale": "fr", "strength": 1})
    await db.log.insert_one({"m": 1})
    await db.strict.insert_one({"name": "a"})
    await db.french.insert_one({"w": "é"})
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    result = await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"])
    )
    before, after = await collection_shapes(mongo, dbname), await collection_shapes(mongo, f"{dbname}_r")
    if await is_secantus(mongo) and after["log"]["options"] != before["log"]["options"]:
        # the engine reports it instead of hiding it
        assert any("dropped the collection options" in n for n in result.notes)
        pytest.xfail("SecantusDB 0.7.0b3's renameCollection drops collection options; mongod keeps them")
    for name in ("log", "strict", "french"):
        assert after[name]["options"] == before[name]["options"], name


async def test_filters_and_renames(mongo: Client, store: Storage, dbname: str) -> None:
    for coll in ("a", "b", "skip"):
        await mongo[dbname][coll].insert_many([{"c": coll, "i": i} for i in range(10)])
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"], exclude=[f"{dbname}.skip"])
    listed = {
        c.namespace
        for c in BackupManifest.from_json(await backup.read_bytes("manifest.json"), "m").collections
    }
    assert listed == {f"{dbname}.a", f"{dbname}.b"}

    result = await run_restore(
        mongo,
        backup,
        RestoreOptions(include=[f"{dbname}.a"], ns_from=[f"{dbname}.a"], ns_to=[f"{dbname}_other.renamed"]),
    )
    assert [c.target for c in result.collections] == [f"{dbname}_other.renamed"]
    assert await mongo[f"{dbname}_other"].list_collection_names() == ["renamed"]
    assert await mongo[f"{dbname}_other"].renamed.count_documents({"c": "a"}) == 10


async def test_conflict_fail_writes_nothing_and_names_the_collection(
    mongo: Client, store: Storage, dbname: str
) -> None:
    await mongo[dbname].a.insert_many([{"i": i} for i in range(5)])
    await mongo[dbname].b.insert_many([{"i": i} for i in range(5)])
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    target = f"{dbname}_t"
    await mongo[target].b.insert_one({"keep": "me"})
    with pytest.raises(RestoreConflict, match=re.escape(f"{target}.b already exists and is not empty")):
        await run_restore(mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{target}.*"]))
    # nothing written: not even the collection that had no conflict
    assert await mongo[target].list_collection_names() == ["b"]
    assert [d["keep"] async for d in mongo[target].b.find()] == ["me"]


async def test_conflict_drop_replaces(mongo: Client, store: Storage, dbname: str) -> None:
    await mongo[dbname].a.insert_many([{"i": i} for i in range(5)])
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    await mongo[dbname].a.insert_one({"i": "added after the backup"})
    result = await run_restore(mongo, backup, RestoreOptions(on_conflict="drop"))
    assert result.verified == 1
    assert await mongo[dbname].a.count_documents({}) == 5


async def test_restore_into_an_empty_existing_collection_is_not_a_conflict(
    mongo: Client, store: Storage, dbname: str
) -> None:
    await mongo[dbname].a.insert_many([{"i": i} for i in range(5)])
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    await mongo[f"{dbname}_t"].create_collection("a")
    await run_restore(mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_t.*"]))
    assert await mongo[f"{dbname}_t"].a.count_documents({}) == 5


async def test_a_complete_backup_is_never_overwritten(mongo: Client, store: Storage, dbname: str) -> None:
    await mongo[dbname].a.insert_one({"i": 1})
    await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    with pytest.raises(Exception, match="already holds a complete backup"):
        await backup_to(mongo, store, "b", include=[f"{dbname}.*"])


async def test_restore_leaves_no_temporary_collections(mongo: Client, store: Storage, dbname: str) -> None:
    await mongo[dbname].a.insert_many([{"i": i} for i in range(50)])
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    await run_restore(mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_t.*"]))
    assert await mongo[f"{dbname}_t"].list_collection_names() == ["a"]


async def test_raw_bytes_are_untouched_by_driver_decoding(mongo: Client, store: Storage, dbname: str) -> None:
    # field order, duplicate-looking numeric types and int32/int64/double distinctions all survive
    raw = bson.encode({"_id": 1, "b": 1, "a": Int64(1), "c": 1.0})
    await mongo[dbname].get_collection("o").insert_one(RawBSONDocument(raw))
    backup = await backup_to(mongo, store, "b", include=[f"{dbname}.*"])
    await run_restore(mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_t.*"]))
    assert await raw_documents(mongo, f"{dbname}_t.o") == [raw]
