"""Envelope encryption with AWS KMS, against moto's KMS (the same moto server the S3 tests
use): the data key is wrapped by a KMS key, a backup restores with that key, another KMS key
is refused before any target is touched, and the CLI's --kms-key does the same."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, RestoreOptions, run_backup, run_restore, verify_backup
from mongo_backup.engine.errors import EXIT_FAILED, EXIT_USAGE, KeyRequired, KmsError, WrongKey
from mongo_backup.engine.kms import AwsKmsKey
from mongo_backup.storage import Storage, open_storage
from tests.support.cli_run import run_cli
from tests.support.emulators import Emulator, EmulatorUnavailable, s3_emulator

from .conftest import raw_documents
from .test_roundtrip import every_bson_type

Client = AsyncMongoClient[Any]
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    try:
        manager = s3_emulator(tmp_path_factory.mktemp("moto"))
        emulator = manager.__enter__()
    except EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield emulator
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)


def new_kms_key(endpoint: str) -> str:
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", **_creds())
    return str(kms.create_key(Description="mongo-backup test")["KeyMetadata"]["KeyId"])


def _creds() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


async def test_a_kms_encrypted_backup_round_trips(
    mongo: Client, store: Storage, dbname: str, kms_server: Emulator, aws_env: None, backup_root: Path
) -> None:
    key = AwsKmsKey(new_kms_key(kms_server.endpoint), endpoint=kms_server.endpoint)
    await mongo[dbname].types.insert_many([every_bson_type(i) for i in range(100)])
    backup = store.child("kms")
    result = await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"], encryption_key=key))
    assert result.key_fingerprint == key.fingerprint
    manifest = json.loads((backup_root / "kms" / "manifest.json").read_bytes())
    assert manifest["encryption"]["key"] == {
        "kind": "aws-kms",
        "fingerprint": key.fingerprint,
        "source": f"aws-kms:{key.key_id}",
    }
    assert (await verify_backup(backup, key=key)).ok
    await run_restore(
        mongo, backup, RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"], key=key)
    )
    assert await raw_documents(mongo, f"{dbname}_r.types") == await raw_documents(mongo, f"{dbname}.types")

    other = AwsKmsKey(new_kms_key(kms_server.endpoint), endpoint=kms_server.endpoint)
    options = RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_w.*"], key=other)
    # AWS answers a Decrypt naming another key with IncorrectKeyException (WrongKey); moto
    # answers AccessDeniedException (KmsError): either way one typed error naming the key
    with pytest.raises((WrongKey, KmsError), match=key.fingerprint):
        await run_restore(mongo, backup, options)
    with pytest.raises(KeyRequired):
        await verify_backup(backup)
    assert f"{dbname}_w" not in await mongo.list_database_names()
    missing = AwsKmsKey("alias/does-not-exist", endpoint=kms_server.endpoint)
    with pytest.raises(KmsError, match="alias/does-not-exist"):
        await run_backup(
            mongo, store.child("nokey"), BackupOptions(include=[f"{dbname}.*"], encryption_key=missing)
        )
    assert not (backup_root / "nokey").exists()  # the key is used before anything is written


async def test_the_cli_encrypts_with_a_kms_key(
    mongo: Client, mongo_uri: str, backup_root: Path, dbname: str, kms_server: Emulator, tmp_path: Path
) -> None:
    key_id = new_kms_key(kms_server.endpoint)
    await mongo[dbname].c.insert_many([{"_id": i} for i in range(20)])
    env = {**AWS_ENV, "AWS_ENDPOINT_URL_KMS": kms_server.endpoint}
    url = f"file://{backup_root}/cli"
    backup = ["--quiet", "backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{dbname}.*"]
    done = await asyncio.to_thread(run_cli, [*backup, "--kms-key", key_id], env=env)
    assert done.returncode == 0, done.output
    done = await asyncio.to_thread(
        run_cli, ["--quiet", "verify", "--from", url, "--kms-key", key_id], env=env
    )
    assert done.returncode == 0, done.output
    other = new_kms_key(kms_server.endpoint)
    done = await asyncio.to_thread(run_cli, ["--quiet", "verify", "--from", url, "--kms-key", other], env=env)
    assert done.returncode in (EXIT_USAGE, EXIT_FAILED), done.output  # WrongKey on AWS, KmsError on moto
    assert len(done.stderr.strip().splitlines()) == 1 and key_id in done.stderr, done.stderr
    plain = tmp_path / "plain"
    done = await asyncio.to_thread(
        run_cli, ["--quiet", "decrypt", "--from", url, "--to", str(plain), "--kms-key", key_id], env=env
    )
    assert done.returncode == 0, done.output
    assert (plain / dbname / "c.bson").stat().st_size > 0
    assert isinstance(open_storage(url), Storage)
