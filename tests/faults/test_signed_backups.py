"""Signed backups: the case of issue 11 on a plain backup. Someone with bucket access drops a
document from a data object and recomputes everything the manifest says of it (count, BSON
bytes, digest, size, sha256, totals): the backup is self-consistent again and `verify`
without a key accepts it, but `verify --public-key` and a restore that requires the
signature refuse it, before the target is touched."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import xxhash
import zstandard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, RestoreOptions, run_backup, run_restore, verify_backup
from mongo_backup.engine.errors import EXIT_INTEGRITY, ManifestTampered
from mongo_backup.engine.signing import SignatureChecker, Signer
from mongo_backup.storage import open_storage
from tests.faults.test_tampered_backups import snapshot
from tests.support.cli_run import run_cli
from tests.support.mongo import split_documents

Client = AsyncMongoClient[Any]
SOURCE = "signed_" + uuid.uuid4().hex[:8]
ORDERS = f"{SOURCE}/orders.bson.zst"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> tuple[Path, Path, Path]:
    """A signed plain backup, the private key (PEM) and the public key (PEM)."""
    root = tmp_path_factory.mktemp("signed")
    private = Ed25519PrivateKey.generate()
    (root / "sign.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (root / "pub.pem").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    async def make() -> None:
        client: Client = AsyncMongoClient(mongo_uri)
        try:
            await client[SOURCE].orders.insert_many([{"_id": i, "v": "x" * 50} for i in range(200)])
            signer = Signer.from_file(str(root / "sign.pem"))
            options = BackupOptions(include=[f"{SOURCE}.*"], signer=signer)
            await run_backup(client, open_storage(f"file://{root}/b"), options)
            await client.drop_database(SOURCE)
        finally:
            await client.close()

    asyncio.run(make())
    return root / "b", root / "sign.pem", root / "pub.pem"


def _digest(docs: list[bytes]) -> str:
    # FORMAT.md section 4, from its text alone
    total = sum(xxhash.xxh3_128_intdigest(d) for d in docs)
    return "xxh3sum128:" + format(total % (1 << 128), "032x")


def drop_a_document_consistently(root: Path) -> None:
    """What anyone with write access to a plain backup can do: FORMAT.md is public."""
    docs = split_documents(
        zstandard.ZstdDecompressor().decompressobj().decompress((root / ORDERS).read_bytes())
    )
    docs = docs[1:]
    data = zstandard.ZstdCompressor().compress(b"".join(docs))
    (root / ORDERS).write_bytes(data)
    doc = json.loads((root / "manifest.json").read_bytes())
    entry = next(e for e in doc["collections"] if e["name"] == "orders")
    obj = next(o for o in entry["objects"] if o["role"] == "data")
    totals = doc["totals"]
    totals["documents"] -= entry["documents"] - len(docs)
    totals["dataBytes"] -= entry["dataBytes"] - sum(map(len, docs))
    totals["storedBytes"] += len(data) - obj["size"]
    entry["documents"], entry["dataBytes"], entry["digest"] = len(docs), sum(map(len, docs)), _digest(docs)
    obj["size"], obj["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (root / "manifest.json").write_text(json.dumps(doc, indent=2))


async def test_a_signed_backup_verifies_with_its_public_key(signed: tuple[Path, Path, Path]) -> None:
    root, private, public = signed
    checker = SignatureChecker.from_file(str(public))
    manifest = json.loads((root / "manifest.json").read_bytes())
    assert manifest["formatVersion"] == 3
    assert manifest["signature"]["publicKeyFingerprint"] == checker.fingerprint
    assert (await verify_backup(open_storage(f"file://{root}"), public_key=checker)).ok
    # the private key serves as a public one too
    assert SignatureChecker.from_file(str(private)).fingerprint == checker.fingerprint
    done = await asyncio.to_thread(
        run_cli, ["verify", "--from", f"file://{root}", "--public-key", str(public)]
    )
    assert done.returncode == 0 and checker.fingerprint in done.stdout, done.output


async def test_an_edited_and_recomputed_plain_backup_fails_only_its_signature(
    mongo: Client, mongo_uri: str, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    pristine, _, public = signed
    root = tmp_path / "b"
    shutil.copytree(pristine, root)
    drop_a_document_consistently(root)
    storage = open_storage(f"file://{root}")
    checker = SignatureChecker.from_file(str(public))
    target = "t_" + uuid.uuid4().hex[:10]
    await mongo[target].orders.insert_many([{"_id": i, "old": True} for i in range(5)])
    before = await snapshot(mongo, target)

    assert (await verify_backup(storage)).ok  # self-consistent: nothing but the signature can tell
    with pytest.raises(ManifestTampered, match=checker.fingerprint):
        await verify_backup(storage, public_key=checker)
    options = RestoreOptions(
        ns_from=[f"{SOURCE}.*"], ns_to=[f"{target}.*"], on_conflict="drop", public_key=checker
    )
    with pytest.raises(ManifestTampered):
        await run_restore(mongo, storage, options)
    assert await snapshot(mongo, target) == before

    done = await asyncio.to_thread(
        run_cli, ["--quiet", "verify", "--from", f"file://{root}", "--public-key", str(public)]
    )
    assert done.returncode == EXIT_INTEGRITY, done.output
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = await asyncio.to_thread(
        run_cli,
        [
            "--quiet",
            "restore",
            "--uri",
            mongo_uri,
            "--from",
            f"file://{root}",
            "--public-key",
            str(public),
            "--ns-from",
            f"{SOURCE}.*",
            "--ns-to",
            f"{target}.*",
            "--on-conflict",
            "drop",
        ],
    )
    assert done.returncode == EXIT_INTEGRITY, done.output
    assert await snapshot(mongo, target) == before


async def test_an_unsigned_or_otherwise_signed_backup_is_refused(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    pristine, _, public = signed
    checker = SignatureChecker.from_file(str(public))
    root = tmp_path / "b"
    shutil.copytree(pristine, root)
    doc = json.loads((root / "manifest.json").read_bytes())
    del doc["signature"]
    (root / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestTampered, match="not signed"):
        await verify_backup(open_storage(f"file://{root}"), public_key=checker)
    other = Signer(Ed25519PrivateKey.generate(), "test")
    doc["signature"] = other.sign(b"anything")
    (root / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestTampered, match=other.fingerprint):
        await verify_backup(open_storage(f"file://{root}"), public_key=checker)
