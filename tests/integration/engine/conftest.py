from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_backup.storage import Storage, open_storage
from tests.support.mongo import split_documents


async def raw_documents(client: AsyncMongoClient[Any], ns: str) -> list[bytes]:
    """Every document of a collection as the server's exact BSON bytes, sorted."""
    db, _, coll = ns.partition(".")
    return sorted(
        [doc async for batch in client[db][coll].find_raw_batches() for doc in split_documents(batch)]
    )


async def collection_shapes(client: AsyncMongoClient[Any], db: str) -> dict[str, dict[str, Any]]:
    """What list_collections and listIndexes say of a database, without per-instance fields."""
    shapes: dict[str, dict[str, Any]] = {}
    async for info in await client[db].list_collections():
        name = info["name"]
        indexes: list[dict[str, Any]] = []
        if info.get("type") != "view":
            async for ix in await client[db][name].list_indexes():
                indexes.append({k: v for k, v in ix.items() if k != "ns"})
        shapes[name] = {
            "type": info.get("type"),
            "options": info.get("options"),
            "indexes": sorted(indexes, key=lambda ix: str(ix["name"])),
        }
    return shapes


async def is_secantus(client: AsyncMongoClient[Any]) -> bool:
    return "secantusVersion" in await client.admin.command("buildInfo")


@pytest.fixture
def store(backup_root: Path) -> Storage:
    return open_storage(f"file://{backup_root}")
