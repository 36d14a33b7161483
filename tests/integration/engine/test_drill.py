"""Restore drills (engine/drill.py): a backup is restored into scratch databases, verified
against its manifest and dropped again; a damaged backup fails its drill without leaving
anything behind, and a drill never writes over data that is not its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, IntegrityError, InvalidInput, RestoreConflict, run_backup
from mongo_backup.engine.drill import DrillOptions, run_drill
from mongo_backup.storage import Storage

Client = AsyncMongoClient[Any]


async def _backup(mongo: Client, store: Storage, dbname: str) -> Storage:
    await mongo[dbname]["a"].insert_many([{"_id": i, "v": "a" * 50} for i in range(500)])
    await mongo[dbname]["b"].insert_many([{"_id": i, "w": i} for i in range(120)])
    await mongo[dbname]["b"].create_index("w", unique=True)
    backup = store.child("nightly")
    await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"]))
    return backup


async def _names(mongo: Client, db: str) -> list[str]:
    return sorted(await mongo[db].list_collection_names())


async def test_a_good_backup_passes_its_drill_and_leaves_no_scratch_data(
    mongo: Client, store: Storage, dbname: str
) -> None:
    backup = await _backup(mongo, store, dbname)
    result = await run_drill(mongo, backup, DrillOptions(prefix="drill_"))
    assert (result.collections, result.verified, result.documents) == (2, 2, 620)
    assert sorted(result.scratch) == [f"drill_{dbname}.a", f"drill_{dbname}.b"]
    assert result.left == []
    assert await _names(mongo, f"drill_{dbname}") == []
    assert await _names(mongo, dbname) == ["a", "b"]  # the source is only read
    assert result.checksum is not None and result.duration > 0


async def test_a_damaged_backup_fails_its_drill_before_writing_anything(
    mongo: Client, store: Storage, dbname: str, backup_root: Path
) -> None:
    backup = await _backup(mongo, store, dbname)
    data = next((backup_root / "nightly" / dbname).glob("a.bson*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=r"a\.bson"):
        await run_drill(mongo, backup)
    assert await _names(mongo, f"drill_{dbname}") == []


async def test_a_drill_never_writes_over_a_scratch_collection_in_use(
    mongo: Client, store: Storage, dbname: str
) -> None:
    backup = await _backup(mongo, store, dbname)
    await mongo[f"drill_{dbname}"]["b"].insert_one({"_id": "someone's"})
    with pytest.raises(RestoreConflict):
        await run_drill(mongo, backup)
    assert await _names(mongo, f"drill_{dbname}") == ["b"]
    assert await mongo[f"drill_{dbname}"]["b"].find_one() == {"_id": "someone's"}


@pytest.mark.parametrize("prefix", ["", "a.b", "x" * 33, "drill$", "a b"])
def test_a_prefix_that_cannot_start_a_database_name_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidInput, match="drill prefix"):
        DrillOptions(prefix=prefix)
