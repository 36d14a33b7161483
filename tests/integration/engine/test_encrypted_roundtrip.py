"""Encrypted backups against a real server: every BSON type byte for byte with each
compression, and `mongo-backup decrypt` into a plain mongodump directory that restores."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from bson import Binary
from pymongo import AsyncMongoClient

from mongo_backup.engine import RestoreOptions, run_restore, verify_backup
from mongo_backup.engine.encryption import LocalKey
from mongo_backup.storage import Storage, open_storage
from tests.support.cli_run import run_cli

from .conftest import raw_documents
from .test_roundtrip import backup_to, every_bson_type

Client = AsyncMongoClient[Any]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup.key"
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    return path


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
async def test_every_bson_type_round_trips_encrypted(
    mongo: Client, store: Storage, dbname: str, compression: str, key_file: Path
) -> None:
    key = LocalKey.from_file(str(key_file))
    await mongo[dbname].types.insert_many([every_bson_type(i) for i in range(300)])
    await mongo[dbname].big.insert_one({"_id": 1, "blob": Binary(os.urandom(3 * 1024 * 1024))})
    await mongo[dbname].create_collection("empty")

    backup = await backup_to(
        mongo, store, "b", compression=compression, include=[f"{dbname}.*"], encryption_key=key
    )
    assert (await verify_backup(backup, key=key)).ok
    result = await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"], key=key)
    )
    for coll in ("types", "big", "empty"):
        assert await raw_documents(mongo, f"{dbname}_r.{coll}") == await raw_documents(
            mongo, f"{dbname}.{coll}"
        )
    assert result.checked == result.verified == 3 and not result.mismatches


async def test_decrypt_writes_a_mongodump_directory_that_restores(
    mongo: Client, mongo_uri: str, backup_root: Path, dbname: str, key_file: Path, tmp_path: Path
) -> None:
    await mongo[dbname].types.insert_many([every_bson_type(i) for i in range(50)])
    await mongo[dbname].types.create_index("string")
    url = f"file://{backup_root}/enc"
    backup = ["--quiet", "backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{dbname}.*"]
    done = await asyncio.to_thread(run_cli, [*backup, "--encrypt-key-file", str(key_file)])
    assert done.returncode == 0, done.output
    fingerprint = LocalKey.from_file(str(key_file)).fingerprint
    assert fingerprint in done.stdout or done.stdout == ""

    plain = tmp_path / "plain"
    done = await asyncio.to_thread(
        run_cli, ["decrypt", "--from", url, "--to", str(plain), "--key-file", str(key_file)]
    )
    assert done.returncode == 0, done.output
    assert sorted(p.name for p in (plain / dbname).iterdir()) == ["types.bson", "types.metadata.json"]
    # exactly the server's documents, back to back: what mongodump writes and mongorestore reads
    assert b"".join(await raw_documents(mongo, f"{dbname}.types")) == b"".join(
        sorted(_split((plain / dbname / "types.bson").read_bytes()))
    )
    result = await run_restore(
        mongo,
        open_storage(f"file://{plain}"),
        RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_d.*"], source_format="mongodump"),
    )
    assert result.documents == 50
    assert await raw_documents(mongo, f"{dbname}_d.types") == await raw_documents(mongo, f"{dbname}.types")

    listed = await asyncio.to_thread(run_cli, ["ls", f"file://{backup_root}"])
    assert f"encrypted with key {fingerprint}" in listed.stdout, listed.output

    again = await asyncio.to_thread(
        run_cli, ["--quiet", "decrypt", "--from", url, "--to", str(plain), "--key-file", str(key_file)]
    )
    assert again.returncode == 2 and "not empty" in again.stderr


def _split(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        out.append(data[pos : pos + size])
        pos += size
    return out


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
async def test_a_version_1_backup_as_older_versions_wrote_it_still_restores(
    mongo: Client, store: Storage, backup_root: Path, dbname: str, compression: str
) -> None:
    """Older writers recorded no `transforms`: the steps come from the names' suffixes."""
    await mongo[dbname].types.insert_many([every_bson_type(i) for i in range(50)])
    backup = await backup_to(mongo, store, "v1", compression=compression, include=[f"{dbname}.*"])
    path = backup_root / "v1" / "manifest.json"
    manifest = json.loads(path.read_bytes())
    for entry in manifest["collections"]:
        for obj in entry["objects"]:
            del obj["transforms"]
    path.write_text(json.dumps(manifest, indent=2))
    assert (await verify_backup(backup)).ok
    await run_restore(mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_v1.*"]))
    assert await raw_documents(mongo, f"{dbname}_v1.types") == await raw_documents(mongo, f"{dbname}.types")
