"""Backups written by an older version of the format still verify and restore.

Format version 1 (a plain backup with BLAKE2b content digests) is what every backup written
before version 3 looks like. The test makes one from a backup of today by writing the
manifest an older tool would have written: its digests computed from FORMAT.md's text with
hashlib's BLAKE2b, not with the engine's code."""

from __future__ import annotations

import json
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pytest
import zstandard
from pymongo import AsyncMongoClient

from mongo_backup.engine import (
    BackupOptions,
    IntegrityError,
    RestoreOptions,
    run_backup,
    run_restore,
    verify_backup,
)
from mongo_backup.storage import Storage
from tests.support.mongo import split_documents

from .conftest import raw_documents

Client = AsyncMongoClient[Any]


def _blake2b_digest(docs: list[bytes]) -> str:
    total = sum(int.from_bytes(blake2b(d, digest_size=16).digest(), "little") for d in docs)
    return "b2sum128:" + format(total % (1 << 128), "032x")


def as_version_1(root: Path, *, drop_from_digest: int = 0) -> None:
    """Rewrite the manifest as version 1 would have; `drop_from_digest` leaves that many
    documents out of the first collection's digest (a digest that does not match)."""
    manifest = json.loads((root / "manifest.json").read_bytes())
    for entry in manifest["collections"]:
        data = next(o for o in entry["objects"] if o["role"] == "data")
        docs = split_documents(
            zstandard.ZstdDecompressor().decompressobj().decompress((root / data["name"]).read_bytes())
        )
        entry["digest"] = _blake2b_digest(docs[drop_from_digest:])
        drop_from_digest = 0
    manifest["formatVersion"] = 1
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.fixture
async def version_1(mongo: Client, store: Storage, backup_root: Path, dbname: str) -> tuple[Storage, Path]:
    await mongo[dbname].orders.insert_many(
        [{"_id": i, "item": f"sku-{i % 37}", "qty": i % 5} for i in range(1500)]
    )
    await mongo[dbname].notes.insert_many([{"text": "é" * i} for i in range(40)])
    backup = store.child("old")
    await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"]))
    return backup, backup_root / "old"


async def test_a_version_1_backup_verifies_and_restores_with_its_blake2b_digests(
    mongo: Client, version_1: tuple[Storage, Path], dbname: str
) -> None:
    backup, root = version_1
    as_version_1(root)
    report = await verify_backup(backup)
    assert report.ok, report
    result = await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"])
    )
    assert result.verified == 2 and not result.mismatches and result.documents == 1540
    for coll in ("orders", "notes"):
        assert await raw_documents(mongo, f"{dbname}_r.{coll}") == await raw_documents(
            mongo, f"{dbname}.{coll}"
        )


async def test_a_version_1_digest_that_does_not_match_is_found(
    mongo: Client, version_1: tuple[Storage, Path], dbname: str
) -> None:
    backup, root = version_1
    as_version_1(root, drop_from_digest=1)
    report = await verify_backup(backup)
    assert not report.ok
    assert any("content digest does not match the manifest" in p for p in report.problems), report
    with pytest.raises(IntegrityError, match="content digest does not match the manifest"):
        await run_restore(mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"]))
    assert f"{dbname}_r" not in await mongo.list_database_names()
