"""Restoring what users bring: plain `mongodump --out` directories, gzipped or not, with or
without metadata files, when the user says the source is one (`source_format="mongodump"`,
CLI --from-mongodump): they have no manifest, so they cannot be verified. The directories are
laid out exactly as mongodump writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bson
import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import (
    BackupNotFound,
    BackupOptions,
    IncompleteBackup,
    InvalidInput,
    RestoreOptions,
    run_backup,
    run_restore,
    verify_backup,
)
from mongo_backup.storage import open_storage
from tests.support.mongodump import write_mongodump_dir

from .conftest import raw_documents

Client = AsyncMongoClient[Any]


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("metadata", [True, False])
async def test_restore_a_mongodump_directory(
    mongo: Client, tmp_path: Path, dbname: str, gz: bool, metadata: bool
) -> None:
    docs = [{"_id": i, "sku": i, "name": f"item {i}"} for i in range(500)]
    write_mongodump_dir(tmp_path / "dump", dbname, docs, gz=gz, metadata=metadata)
    result = await run_restore(
        mongo, open_storage(f"file://{tmp_path}/dump"), RestoreOptions(source_format="mongodump")
    )
    assert result.backup_checksum is None
    assert any("mongodump directory" in n and "could not be verified" in n for n in result.notes)
    assert await raw_documents(mongo, f"{dbname}.items") == sorted(bson.encode(d) for d in docs)
    indexes = [ix["name"] async for ix in await mongo[dbname].items.list_indexes()]
    if metadata:
        assert indexes == ["_id_", "sku_1"]
        assert await mongo[dbname].big_items.count_documents({}) == 494
    else:
        assert indexes == ["_id_"]
    assert result.verified == result.checked == 1


async def test_a_mongodump_directory_is_restored_only_on_request(
    mongo: Client, tmp_path: Path, dbname: str
) -> None:
    write_mongodump_dir(tmp_path / "dump", dbname, [{"_id": 1}], gz=False, metadata=True)
    with pytest.raises(IncompleteBackup, match=r"no manifest\.json.*mongodump directory.*--from-mongodump"):
        await run_restore(mongo, open_storage(f"file://{tmp_path}/dump"), RestoreOptions())
    assert await mongo[dbname].list_collection_names() == []


async def test_verify_needs_a_manifest(tmp_path: Path, dbname: str) -> None:
    write_mongodump_dir(tmp_path / "dump", dbname, [{"_id": 1}], gz=False, metadata=True)
    with pytest.raises(IncompleteBackup, match=r"no manifest\.json.*cannot be verified"):
        await verify_backup(open_storage(f"file://{tmp_path}/dump"))


async def test_a_backup_of_ours_is_not_read_as_a_mongodump_directory(
    mongo: Client, tmp_path: Path, dbname: str
) -> None:
    await mongo[dbname].c.insert_one({"a": 1})
    storage = open_storage(f"file://{tmp_path}/ours")
    await run_backup(mongo, storage, BackupOptions(include=[f"{dbname}.*"]))
    options = RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"], source_format="mongodump")
    with pytest.raises(InvalidInput, match=r"holds a mongo-backup backup.*without --from-mongodump"):
        await run_restore(mongo, storage, options)
    assert await mongo[f"{dbname}_r"].list_collection_names() == []


@pytest.mark.parametrize("source_format", ["mongo-backup", "mongodump"])
async def test_an_empty_folder_is_not_a_backup(mongo: Client, tmp_path: Path, source_format: Any) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(BackupNotFound, match="no backup at"):
        await run_restore(
            mongo, open_storage(f"file://{tmp_path}/nothing"), RestoreOptions(source_format=source_format)
        )
