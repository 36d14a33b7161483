"""A restore taken up again after its runner died (the operator's restart path)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, RestoreConflict, RestoreOptions, run_backup, run_restore
from mongo_backup.storage import Storage

Client = AsyncMongoClient[Any]


async def _backup(mongo: Client, store: Storage, dbname: str) -> Storage:
    for coll in ("a", "b"):
        await mongo[dbname][coll].insert_many([{"c": coll, "i": i} for i in range(300)])
    backup = store.child("b")
    await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"]))
    return backup


def _into(dbname: str, **extra: Any) -> RestoreOptions:
    return RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_t.*"], run_id="run1", **extra)


async def test_resume_skips_what_was_recorded_and_restores_the_rest(
    mongo: Client, store: Storage, dbname: str
) -> None:
    backup = await _backup(mongo, store, dbname)
    await run_restore(mongo, backup, _into(dbname, include=[f"{dbname}.a"]))  # the first attempt got this far
    result = await run_restore(mongo, backup, _into(dbname, already_restored=[f"{dbname}_t.a"]))
    assert {c.target: c.method for c in result.collections} == {
        f"{dbname}_t.a": "skipped",
        f"{dbname}_t.b": "swapped",
    }
    assert await mongo[f"{dbname}_t"].b.count_documents({}) == 300


async def test_resume_adopts_a_target_swapped_in_but_never_recorded(
    mongo: Client, store: Storage, dbname: str
) -> None:
    backup = await _backup(mongo, store, dbname)
    await run_restore(mongo, backup, _into(dbname, include=[f"{dbname}.a"]))
    # the runner died before recording `a`: the new attempt finds it holding exactly the backup's data
    result = await run_restore(mongo, backup, _into(dbname, resume=True))
    assert {c.target: c.method for c in result.collections}[f"{dbname}_t.a"] == "skipped"
    # a first attempt never adopts: identical data already there is a conflict like any other
    with pytest.raises(RestoreConflict):
        await run_restore(mongo, backup, _into(dbname))


async def test_resume_still_refuses_a_target_that_differs(mongo: Client, store: Storage, dbname: str) -> None:
    backup = await _backup(mongo, store, dbname)
    await run_restore(mongo, backup, _into(dbname, include=[f"{dbname}.a"]))
    await mongo[f"{dbname}_t"].a.insert_one({"written": "by someone else"})
    with pytest.raises(RestoreConflict, match=f"{dbname}_t.a"):
        await run_restore(mongo, backup, _into(dbname, resume=True))


async def test_leftovers_of_a_lost_attempt_are_dropped(mongo: Client, store: Storage, dbname: str) -> None:
    backup = await _backup(mongo, store, dbname)
    # what a dead attempt left: a temporary collection, still receiving its last insert
    await mongo[f"{dbname}_t"]["__mbtmp_run1_dead00_0123456789ab"].insert_many(
        [{"late": i} for i in range(5)]
    )
    result = await run_restore(mongo, backup, _into(dbname))
    assert result.verified == 2
    assert sorted(await mongo[f"{dbname}_t"].list_collection_names()) == ["a", "b"]
