"""Tampered encrypted backups: a flipped byte, a truncated object, segments reordered, objects
swapped between two backups, a wrong or missing key, an edited manifest made consistent again
(sizes, sha256, totals recomputed), a plain backup put in an encrypted one's place. Each fails
`verify` and `restore` with a typed error and one line, and the restore target is exactly
what it was (nothing is written before the key and the manifest are checked)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bson import Binary
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, EngineError, RestoreOptions, kind_of, run_backup, run_restore
from mongo_backup.engine import verify_backup as verify
from mongo_backup.engine.encryption import HEADER_SIZE, SEGMENT_SIZE, TAG_SIZE, LocalKey
from mongo_backup.engine.errors import (
    EXIT_INTEGRITY,
    EXIT_USAGE,
    EncryptionExpected,
    IntegrityError,
    KeyRequired,
    ManifestTampered,
    WrongKey,
)
from mongo_backup.storage import open_storage
from tests.faults.test_tampered_backups import snapshot
from tests.support.cli_run import run_cli

Client = AsyncMongoClient[Any]
Doc = dict[str, Any]
SOURCE = "enc_" + uuid.uuid4().hex[:8]
ORDERS = f"{SOURCE}/orders.bson.zst.enc"
ORDERS_META = f"{SOURCE}/orders.metadata.json.enc"


@dataclass(frozen=True)
class Backups:
    root: Path
    key_file: Path
    other_key_file: Path

    def key(self) -> LocalKey:
        return LocalKey.from_file(str(self.key_file))


def _key_file(path: Path) -> Path:
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


async def _make(uri: str, root: Path, key: LocalKey) -> None:
    client: Client = AsyncMongoClient(uri)
    try:
        db = client[SOURCE]
        # random payloads: the zstd data object spans several encryption segments
        await db.orders.insert_many([{"_id": i, "pad": Binary(os.urandom(300))} for i in range(1000)])
        await db.orders.create_index("pad")
        await db.items.insert_many([{"_id": i, "n": i} for i in range(50)])
        for name in ("a", "b"):
            storage = open_storage(f"file://{root}/{name}")
            await run_backup(client, storage, BackupOptions(include=[f"{SOURCE}.*"], encryption_key=key))
        await run_backup(client, open_storage(f"file://{root}/plain"), BackupOptions(include=[f"{SOURCE}.*"]))
        await client.drop_database(SOURCE)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def backups(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Backups:
    root = tmp_path_factory.mktemp("encrypted")
    made = Backups(root, _key_file(root / "key"), _key_file(root / "other-key"))
    asyncio.run(_make(mongo_uri, root, made.key()))
    return made


def _load(root: Path) -> Doc:
    doc: Doc = json.loads((root / "manifest.json").read_bytes())
    return doc


def _save(root: Path, doc: Doc) -> None:
    (root / "manifest.json").write_text(json.dumps(doc, indent=2))


def _resign(root: Path, name: str) -> None:
    """Make the manifest agree with the object as it now is (size, sha256, totals), as anyone
    with write access to the bucket could."""
    doc = _load(root)
    data = (root / name).read_bytes()
    for e in doc["collections"]:
        for o in e["objects"]:
            if o["name"] == name:
                doc["totals"]["storedBytes"] += len(data) - o["size"]
                o["size"], o["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    _save(root, doc)


def flipped(root: Path, other: Path) -> str:
    data = bytearray((root / ORDERS).read_bytes())
    data[len(data) // 2] ^= 1
    (root / ORDERS).write_bytes(bytes(data))
    return ORDERS


def flipped_and_resigned(root: Path, other: Path) -> str:
    flipped(root, other)
    _resign(root, ORDERS)
    return "manifest"  # the manifest's MAC no longer matches: said before the object is read


def truncated(root: Path, other: Path) -> str:
    data = (root / ORDERS).read_bytes()
    (root / ORDERS).write_bytes(data[: HEADER_SIZE + 2 * (SEGMENT_SIZE + TAG_SIZE)])
    return ORDERS


def reordered(root: Path, other: Path) -> str:
    data = (root / ORDERS).read_bytes()
    sealed = SEGMENT_SIZE + TAG_SIZE
    header, body = data[:HEADER_SIZE], data[HEADER_SIZE:]
    segments = [body[i : i + sealed] for i in range(0, len(body), sealed)]
    assert len(segments) >= 3
    segments[0], segments[1] = segments[1], segments[0]
    (root / ORDERS).write_bytes(header + b"".join(segments))
    return ORDERS


def swapped(root: Path, other: Path) -> str:
    shutil.copyfile(other / ORDERS, root / ORDERS)
    return ORDERS


def swapped_with_its_manifest_entry(root: Path, other: Path) -> str:
    """Backup b's orders object and manifest entry put into backup a: the object is b's
    exactly as b's manifest describes it, but it does not open under a's data key."""
    shutil.copyfile(other / ORDERS, root / ORDERS)
    doc, theirs = _load(root), _load(other)
    for i, e in enumerate(doc["collections"]):
        if e["name"] == "orders":
            doc["collections"][i] = next(t for t in theirs["collections"] if t["name"] == "orders")
    _save(root, doc)
    return "manifest"


def document_dropped_consistently(root: Path, other: Path) -> str:
    """The case of issue 11: an edited manifest that adds up (one collection gone, totals
    recomputed): only its authentication can tell."""
    doc = _load(root)
    dropped = next(e for e in doc["collections"] if e["name"] == "items")
    doc["collections"].remove(dropped)
    t = doc["totals"]
    t["collections"] -= 1
    t["documents"] -= dropped["documents"]
    t["dataBytes"] -= dropped["dataBytes"]
    t["storedBytes"] -= sum(o["size"] for o in dropped["objects"])
    _save(root, doc)
    return "manifest"


def count_edited(root: Path, other: Path) -> str:
    doc = _load(root)
    e = next(e for e in doc["collections"] if e["name"] == "orders")
    e["documents"] -= 1
    doc["totals"]["documents"] -= 1
    _save(root, doc)
    return "manifest"


def authentication_removed(root: Path, other: Path) -> str:
    doc = _load(root)
    del doc["authentication"]
    _save(root, doc)
    return "authentication"


def replaced_by_a_plain_backup(root: Path, other: Path) -> str:
    """Someone with bucket access puts a plain backup (of their own making) in its place."""
    shutil.rmtree(root)
    shutil.copytree(other.parent / "plain", root)
    return "not encrypted"


@dataclass(frozen=True)
class Case:
    id: str
    tamper: Callable[[Path, Path], str]
    error: type[EngineError]


CASES = [
    Case("flipped-byte", flipped, IntegrityError),
    Case("flipped-byte-manifest-resigned", flipped_and_resigned, ManifestTampered),
    Case("truncated-at-a-segment-boundary", truncated, IntegrityError),
    Case("segments-reordered", reordered, IntegrityError),
    Case("object-swapped-from-another-backup", swapped, IntegrityError),
    Case("object-and-entry-swapped-from-another-backup", swapped_with_its_manifest_entry, ManifestTampered),
    Case("collection-dropped-totals-recomputed", document_dropped_consistently, ManifestTampered),
    Case("document-count-edited", count_edited, ManifestTampered),
    Case("authentication-removed", authentication_removed, ManifestTampered),
    Case("replaced-by-a-plain-backup", replaced_by_a_plain_backup, EncryptionExpected),
]


@pytest.fixture
async def target(mongo: Client) -> str:
    name = "t_" + uuid.uuid4().hex[:10]
    await mongo[name].orders.insert_many([{"_id": i, "old": True} for i in range(7)])
    return name


def _options(target: str, key: LocalKey | None = None) -> RestoreOptions:
    return RestoreOptions(
        ns_from=[f"{SOURCE}.*"], ns_to=[f"{target}.*"], on_conflict="drop", parallel=1, key=key
    )


def _copy(backups: Backups, tmp_path: Path, name: str = "a") -> Path:
    root = tmp_path / "copies" / name
    shutil.copytree(backups.root / name, root)
    return root


def _restore_cli(uri: str, root: Path, target: str, key_file: Path | None) -> list[str]:
    args = [
        "--quiet", "restore", "--uri", uri, "--from", f"file://{root}",
        "--ns-from", f"{SOURCE}.*", "--ns-to", f"{target}.*", "--on-conflict", "drop", "--parallel", "1",
    ]  # fmt: skip
    return [*args, "--key-file", str(key_file)] if key_file else args


def _one_line(stderr: str, named: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], stderr


async def test_an_encrypted_backup_round_trips_and_verifies(
    mongo: Client, backups: Backups, tmp_path: Path, target: str
) -> None:
    root = _copy(backups, tmp_path)
    manifest = _load(root)
    assert manifest["formatVersion"] == 3
    assert manifest["encryption"]["key"]["fingerprint"] == backups.key().fingerprint
    assert {o["name"] for e in manifest["collections"] for o in e["objects"]} >= {ORDERS, ORDERS_META}
    assert all(
        o["transforms"][-1] == "aes-256-gcm-stream" for e in manifest["collections"] for o in e["objects"]
    )
    # nothing of the documents or the metadata is readable in storage
    assert b"pad_1" not in (root / ORDERS_META).read_bytes()
    assert (await verify(open_storage(f"file://{root}"), key=backups.key())).ok
    result = await run_restore(
        mongo,
        open_storage(f"file://{root}"),
        _options(target, backups.key()),
    )
    assert result.verified == result.checked == 2
    assert await mongo[target].orders.count_documents({}) == 1000
    assert [ix["name"] async for ix in await mongo[target].orders.list_indexes()] == ["_id_", "pad_1"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_a_tampered_encrypted_backup_is_refused_and_the_target_is_untouched(
    mongo: Client, mongo_uri: str, backups: Backups, tmp_path: Path, target: str, case: Case
) -> None:
    root = _copy(backups, tmp_path)
    named = case.tamper(root, backups.root / "b")
    storage = open_storage(f"file://{root}")
    before = await snapshot(mongo, target)
    try:
        result = await verify(storage, key=backups.key())
    except EngineError as exc:
        assert isinstance(exc, case.error), repr(exc)
        assert named in str(exc)
    else:
        assert not result.ok and any(named in p for p in result.problems), result.problems
    with pytest.raises(case.error) as raised:
        await run_restore(mongo, storage, _options(target, backups.key()))
    assert kind_of(raised.value).exit_code == EXIT_INTEGRITY
    assert named in str(raised.value)
    assert await snapshot(mongo, target) == before

    done = await asyncio.to_thread(run_cli, _restore_cli(mongo_uri, root, target, backups.key_file))
    assert done.returncode == EXIT_INTEGRITY, done.output
    _one_line(done.stderr, named)
    assert await snapshot(mongo, target) == before


async def test_a_wrong_or_missing_key_is_refused_before_any_target_is_touched(
    mongo: Client, mongo_uri: str, backups: Backups, tmp_path: Path, target: str
) -> None:
    root = _copy(backups, tmp_path)
    storage = open_storage(f"file://{root}")
    before = await snapshot(mongo, target)
    fingerprint = backups.key().fingerprint
    wrong = LocalKey.from_file(str(backups.other_key_file))
    with pytest.raises(WrongKey) as raised:
        await run_restore(mongo, storage, _options(target, wrong))
    assert fingerprint in str(raised.value) and wrong.fingerprint in str(raised.value)
    assert str(root) in str(raised.value)  # names the backup
    with pytest.raises(KeyRequired, match=fingerprint):
        await run_restore(mongo, storage, _options(target))
    with pytest.raises(WrongKey):
        await verify(storage, key=wrong)
    assert await snapshot(mongo, target) == before

    done = await asyncio.to_thread(run_cli, _restore_cli(mongo_uri, root, target, backups.other_key_file))
    assert done.returncode == EXIT_USAGE, done.output
    _one_line(done.stderr, fingerprint)
    done = await asyncio.to_thread(run_cli, _restore_cli(mongo_uri, root, target, None))
    assert done.returncode == EXIT_USAGE, done.output
    _one_line(done.stderr, fingerprint)
    done = await asyncio.to_thread(
        run_cli, ["--quiet", "verify", "--from", f"file://{root}", "--key-file", str(backups.other_key_file)]
    )
    assert done.returncode == EXIT_USAGE, done.output
    assert await snapshot(mongo, target) == before
