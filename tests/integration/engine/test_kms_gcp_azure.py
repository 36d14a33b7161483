"""Envelope encryption with Google Cloud KMS and Azure Key Vault keys, through the official
SDKs against local stand-ins of their REST APIs (tests/support/kms_standins.py: there is no
cloud account here, and no emulator of either service): a backup round-trips through backup,
verify and restore, another key is refused before any target is touched, and a wrapped data
key copied into another backup's manifest does not open there."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, RestoreOptions, run_backup, run_restore, verify_backup
from mongo_backup.engine.azure_keyvault import AzureKeyVaultKey
from mongo_backup.engine.encryption import KeyEncryptionKey
from mongo_backup.engine.errors import EXIT_FAILED, KeyRequired, KmsError, WrongKey
from mongo_backup.engine.gcp_kms import GcpKmsKey
from mongo_backup.storage import Storage
from tests.support.cli_run import run_cli
from tests.support.kms_standins import (
    GcpKmsStandIn,
    KeyVaultStandIn,
    StubCredential,
    gcp_kms_standin,
    key_vault_standin,
)

from .conftest import raw_documents
from .test_roundtrip import every_bson_type

Client = AsyncMongoClient[Any]
GCP_KEY = "projects/demo/locations/global/keyRings/backups/cryptoKeys/"


@pytest.fixture(scope="module")
def gcp() -> Iterator[GcpKmsStandIn]:
    with gcp_kms_standin() as standin:
        yield standin


@pytest.fixture
def key_vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyVaultStandIn]:
    with key_vault_standin(tmp_path) as standin:
        # the SDK sends tokens over HTTPS only: trust the stand-in's own certificate
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(standin.ca_file))
        yield standin


async def _round_trip_and_wrong_key(
    mongo: Client,
    store: Storage,
    dbname: str,
    backup_root: Path,
    key: KeyEncryptionKey,
    other: KeyEncryptionKey,
) -> dict[str, Any]:
    await mongo[dbname].types.insert_many([every_bson_type(i) for i in range(100)])
    backup = store.child("kms")
    result = await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"], encryption_key=key))
    assert result.key_fingerprint == key.fingerprint
    manifest: dict[str, Any] = json.loads((backup_root / "kms" / "manifest.json").read_bytes())
    assert (await verify_backup(backup, key=key)).ok
    await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"], key=key)
    )
    assert await raw_documents(mongo, f"{dbname}_r.types") == await raw_documents(mongo, f"{dbname}.types")

    options = RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_w.*"], key=other)
    with pytest.raises((WrongKey, KmsError), match=key.fingerprint):
        await run_restore(mongo, backup, options)
    with pytest.raises(KeyRequired):
        await verify_backup(backup)
    assert f"{dbname}_w" not in await mongo.list_database_names()
    return manifest


async def test_a_gcp_kms_encrypted_backup_round_trips(
    mongo: Client, store: Storage, dbname: str, backup_root: Path, gcp: GcpKmsStandIn
) -> None:
    key = GcpKmsKey(gcp.create_key(GCP_KEY + f"{dbname}-a"), endpoint=gcp.endpoint)
    other = GcpKmsKey(gcp.create_key(GCP_KEY + f"{dbname}-b"), endpoint=gcp.endpoint)
    manifest = await _round_trip_and_wrong_key(mongo, store, dbname, backup_root, key, other)
    assert manifest["encryption"]["key"] == {
        "kind": "gcp-kms",
        "fingerprint": key.fingerprint,
        "source": f"gcp-kms:{key.key_name}",
    }
    # the backup id is the ciphertext's additional authenticated data
    wrapped = base64.b64decode(manifest["encryption"]["wrappedKey"])
    with pytest.raises(WrongKey, match=key.key_name):
        key.unwrap(wrapped, "0" * 32)

    missing = GcpKmsKey(GCP_KEY + "missing", endpoint=gcp.endpoint)
    with pytest.raises(KmsError, match=f"{GCP_KEY}missing: encrypting"):
        await run_backup(
            mongo, store.child("nokey"), BackupOptions(include=[f"{dbname}.*"], encryption_key=missing)
        )
    assert not (backup_root / "nokey").exists()  # the key is used before anything is written


async def test_an_azure_key_vault_encrypted_backup_round_trips_across_a_key_rotation(
    mongo: Client, store: Storage, dbname: str, backup_root: Path, key_vault: KeyVaultStandIn
) -> None:
    url = key_vault.create_key("backups")
    key = AzureKeyVaultKey(url, credential=StubCredential())
    other = AzureKeyVaultKey(key_vault.create_key("other"), credential=StubCredential())
    await mongo[dbname].seed.insert_one({"_id": 0})
    first = await run_backup(
        mongo, store.child("first"), BackupOptions(include=[f"{dbname}.seed"], encryption_key=key)
    )
    first_manifest = json.loads((backup_root / "first" / "manifest.json").read_bytes())
    version = first_manifest["encryption"]["key"]["source"].rsplit("/", 1)[1]
    assert first_manifest["encryption"]["key"] == {
        "kind": "azure-keyvault",
        "fingerprint": key.fingerprint,
        "source": f"azure-keyvault:{url}/{version}",  # the version that wrapped the data key
    }
    key_vault.create_key("backups")  # rotation: a new current version
    manifest = await _round_trip_and_wrong_key(mongo, store, dbname, backup_root, key, other)
    assert manifest["encryption"]["key"]["source"] != first_manifest["encryption"]["key"]["source"]
    # the backup made before the rotation still opens (with the version it recorded)
    assert first.key_fingerprint == key.fingerprint
    assert (await verify_backup(store.child("first"), key=key)).ok
    # the backup id is bound inside the wrapped bytes
    wrapped = base64.b64decode(manifest["encryption"]["wrappedKey"])
    with pytest.raises(WrongKey, match="another backup"):
        key.unwrap(wrapped, "0" * 32)


async def test_the_cli_names_a_gcp_kms_key_it_has_no_credentials_for(
    mongo: Client, mongo_uri: str, backup_root: Path, dbname: str, tmp_path: Path
) -> None:
    await mongo[dbname].c.insert_one({"_id": 1})
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no-such-file.json")}
    url = f"file://{backup_root}/cli"
    backup = ["--quiet", "backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{dbname}.*"]
    done = await asyncio.to_thread(run_cli, [*backup, "--kms-key", f"gcp-kms://{GCP_KEY}cli"], env=env)
    assert done.returncode == EXIT_FAILED, done.output
    assert len(done.stderr.strip().splitlines()) == 1 and f"{GCP_KEY}cli" in done.stderr, done.stderr
    assert "credentials" in done.stderr
    assert not (backup_root / "cli").exists()


def test_azure_key_vault_without_keys_get_needs_the_key_version(key_vault: KeyVaultStandIn) -> None:
    """without keys/get the SDK wraps remotely (wrapkey) and cannot tell the current version:
    a versionless key is refused (naming it) rather than making a backup that a rotation
    would make unreadable; with the version given it works"""
    key_vault.keys_readable = False
    url = key_vault.create_key("write-only")
    with pytest.raises(KmsError, match=f"{url}: could not tell which key version"):
        AzureKeyVaultKey(url, credential=StubCredential()).wrap(b"k" * 32, "1" * 32)
    version = key_vault.current_version("write-only")
    key = AzureKeyVaultKey(f"{url}/{version}", credential=StubCredential())
    wrapped = key.wrap(b"k" * 32, "1" * 32)
    assert key.source == f"azure-keyvault:{url}/{version}"
    assert key.unwrap(wrapped, "1" * 32) == b"k" * 32
