"""Corrupt objects, killed processes: nothing is lost and nothing half-done passes for done."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import (
    BackupOptions,
    IntegrityError,
    RestoreOptions,
    run_backup,
    run_restore,
    verify_backup,
)
from mongo_backup.storage import Storage, open_storage

from .conftest import raw_documents

Client = AsyncMongoClient[Any]


async def _backup(mongo: Client, store: Storage, dbname: str, docs: int = 3000, **options: Any) -> Storage:
    await mongo[dbname].orders.insert_many([{"i": i, "pad": "p" * 100} for i in range(docs)])
    backup = store.child("b")
    await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"], **options))
    return backup


def _data_file(root: Path, dbname: str, suffix: str = ".bson.zst") -> Path:
    return root / "b" / dbname / f"orders{suffix}"


@pytest.mark.parametrize("damage", ["flip", "truncate"])
@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
async def test_damaged_object_fails_verify_and_restore_naming_it(
    mongo: Client, store: Storage, backup_root: Path, dbname: str, damage: str, compression: str
) -> None:
    backup = await _backup(mongo, store, dbname, compression=compression)
    suffix = {"zstd": ".bson.zst", "gzip": ".bson.gz", "none": ".bson"}[compression]
    path = _data_file(backup_root, dbname, suffix)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[-7:]
    path.write_bytes(bytes(data))
    object_name = f"{dbname}/orders{suffix}"

    result = await verify_backup(backup)
    assert not result.ok
    assert any(object_name in problem for problem in result.problems)

    # the target holds other data, and the restore may replace it: the damage must stop it first
    target = f"{dbname}_t"
    await mongo[target].orders.insert_many([{"old": i} for i in range(7)])
    before = await raw_documents(mongo, f"{target}.orders")
    with pytest.raises(IntegrityError, match=object_name):
        await run_restore(
            mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{target}.*"], on_conflict="drop")
        )
    assert await raw_documents(mongo, f"{target}.orders") == before
    assert await mongo[target].list_collection_names() == ["orders"]  # no temporary left behind


async def test_missing_object_is_reported(
    mongo: Client, store: Storage, backup_root: Path, dbname: str
) -> None:
    backup = await _backup(mongo, store, dbname, docs=10)
    _data_file(backup_root, dbname).unlink()
    result = await verify_backup(backup)
    assert any("missing" in p and "orders.bson.zst" in p for p in result.problems)


def _cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mongo_backup.cli", "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def _wait_for(predicate: Any) -> None:
    async with asyncio.timeout(60):
        while not await predicate():  # noqa: ASYNC110 - polling another process's effects
            await asyncio.sleep(0.05)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mongo_backup.cli", *args], capture_output=True, text=True)


async def test_restore_killed_midway_leaves_the_target_as_it_was(
    mongo: Client, mongo_uri: str, store: Storage, backup_root: Path, dbname: str
) -> None:
    await _backup(mongo, store, dbname, docs=40_000)
    target = f"{dbname}_t"
    await mongo[target].orders.insert_many([{"old": i} for i in range(11)])
    before = await raw_documents(mongo, f"{target}.orders")

    proc = _cli(
        "restore", "--uri", mongo_uri, "--from", f"file://{backup_root}/b",
        "--ns-from", f"{dbname}.*", "--ns-to", f"{target}.*", "--on-conflict", "drop", "--insert-workers", "1",
    )  # fmt: skip

    async def temp_has_data() -> bool:
        names = await mongo[target].list_collection_names()
        temps = [n for n in names if n.startswith("__mbtmp_")]
        return bool(temps) and await mongo[target][temps[0]].estimated_document_count() > 0

    await _wait_for(temp_has_data)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert await raw_documents(mongo, f"{target}.orders") == before


async def test_backup_killed_midway_leaves_no_manifest(
    mongo: Client, mongo_uri: str, backup_root: Path, dbname: str
) -> None:
    for coll in ("orders", "invoices"):  # one is finished and the other in flight when the kill comes
        await mongo[dbname][coll].insert_many([{"i": i, "pad": os.urandom(200)} for i in range(40_000)])
    url = f"file://{backup_root}/killed"
    proc = _cli("backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{dbname}.*", "--parallel", "1")

    async def data_started() -> bool:
        folder = backup_root / "killed" / dbname
        return folder.exists() and any(p.name.endswith(".metadata.json") for p in folder.iterdir())

    await _wait_for(data_started)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (backup_root / "killed" / "manifest.json").exists()

    listing = await asyncio.to_thread(_run_cli, "ls", str(backup_root))
    assert "killed" in listing.stdout and "INCOMPLETE" in listing.stdout
    verify = await asyncio.to_thread(_run_cli, "verify", "--from", url)
    assert verify.returncode != 0
    # a new backup under the same name refuses: the killed run still holds the name's lock
    again = await asyncio.to_thread(_run_cli, "backup", "--uri", mongo_uri, "--to", url)
    assert again.returncode == 1 and "is in use" in again.stderr
    # ... until the user, as the message says, deletes the dead run's folder
    await asyncio.to_thread(shutil.rmtree, backup_root / "killed")
    storage = open_storage(url)
    result = await run_backup(mongo, storage, BackupOptions(include=[f"{dbname}.*"]))
    assert result.documents == 80_000
    assert (await verify_backup(storage)).ok


async def test_failed_backup_removes_what_it_wrote(mongo: Client, store: Storage, dbname: str) -> None:
    await mongo[dbname].orders.insert_many([{"i": i} for i in range(100)])
    backup = store.child("b")

    def explode(progress: Any) -> None:
        if progress.documents_done:
            raise RuntimeError("storage went away")

    with pytest.raises(RuntimeError, match="storage went away"):
        await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"]), explode)
    assert [info.name async for info in backup.list()] == []
