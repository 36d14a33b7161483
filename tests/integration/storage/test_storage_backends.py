"""What is particular to each cloud backend: credentials from Secret keys and from the
environment, S3 encryption and storage class, checksums, and clear configuration errors."""

from __future__ import annotations

import json
from typing import Any

import google_crc32c
import pytest

from mongo_backup.storage import StorageAccessDenied, StorageError, StorageSettings, open_storage
from mongo_backup.storage.azure import AzureStorage
from mongo_backup.storage.gcs import GcsStorage, crc32c_b64
from mongo_backup.storage.location import (
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AZURE_STORAGE_ACCOUNT_KEY,
    AZURE_STORAGE_CONNECTION_STRING,
    AZURE_STORAGE_SAS_TOKEN,
    GCS_SERVICE_ACCOUNT_JSON,
)
from mongo_backup.storage.retry import RetryPolicy
from mongo_backup.storage.s3 import S3Storage
from tests.support.emulators import AZURITE_ACCOUNT, AZURITE_KEY, BUCKET, Backend

from .conftest import FAST_RETRY

MiB = 1024 * 1024


# S3


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["single-put", "multipart"])
async def test_s3_objects_get_the_encryption_and_storage_class_asked_for(
    s3_backend: Backend, prefix: str, size: int
) -> None:
    storage = s3_backend.open(prefix, s3_server_side_encryption="AES256", s3_storage_class="STANDARD_IA")
    try:
        await storage.write_bytes("db/c.bson", b"x" * size)
    finally:
        await storage.close()
    head = s3_backend.extra["client"].head_object(Bucket=BUCKET, Key=f"{prefix}/db/c.bson")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentLength"] == size


async def test_s3_kms_key_id_is_applied(s3_backend: Backend, prefix: str) -> None:
    storage = s3_backend.open(prefix, s3_kms_key_id="alias/backups")
    try:
        await storage.write_bytes("m.json", b"{}")
    finally:
        await storage.close()
    head = s3_backend.extra["client"].head_object(Bucket=BUCKET, Key=f"{prefix}/m.json")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "alias/backups" in head["SSEKMSKeyId"]


async def test_s3_incomplete_keys_are_refused_without_echoing_them() -> None:
    with pytest.raises(StorageAccessDenied, match=AWS_SECRET_ACCESS_KEY) as caught:
        open_storage("s3://b/p", StorageSettings(credentials={AWS_ACCESS_KEY_ID: "AKIAEXAMPLEKEY"}))
    assert "AKIAEXAMPLEKEY" not in str(caught.value)


async def test_s3_endpoint_from_the_environment(
    s3_backend: Backend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(s3_backend.endpoint))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    storage = open_storage(f"s3://{BUCKET}/{prefix}", StorageSettings(retry=FAST_RETRY))
    assert isinstance(storage, S3Storage)
    try:
        await storage.write_bytes("env.json", b"{}")
        assert [i.name async for i in storage.list()] == ["env.json"]
    finally:
        await storage.close()


# GCS


async def test_gcs_reports_the_crc32c_it_verified(gcs_backend: Backend, prefix: str) -> None:
    data = b"abc" * 100_000
    storage = gcs_backend.open(prefix, part_size=256 * 1024)
    try:
        info = await storage.write_bytes("c.bson", data)
        expected = "crc32c:" + crc32c_b64(google_crc32c.value(data))
        assert info.checksum == expected
        assert (await storage.stat("c.bson")).checksum == expected
    finally:
        await storage.close()


async def test_gcs_malformed_service_account_is_refused_without_echoing_it() -> None:
    secret = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----SECRETBITS"}'
    with pytest.raises(StorageAccessDenied, match=GCS_SERVICE_ACCOUNT_JSON) as caught:
        open_storage("gs://b/p", StorageSettings(credentials={GCS_SERVICE_ACCOUNT_JSON: secret}))
    assert "SECRETBITS" not in str(caught.value)


async def test_gcs_emulator_host_from_the_environment(
    gcs_backend: Backend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", str(gcs_backend.endpoint))
    storage = open_storage(f"gs://{BUCKET}/{prefix}", StorageSettings(retry=FAST_RETRY))
    assert isinstance(storage, GcsStorage)
    try:
        await storage.write_bytes("env.json", b"{}")
        assert await storage.read_bytes("env.json") == b"{}"
    finally:
        await storage.close()


# Azure


def azure_url(backend: Backend) -> str:
    return f"{backend.endpoint}/{AZURITE_ACCOUNT}"


async def test_azure_account_key_with_account_url(azure_backend: Backend, prefix: str) -> None:
    settings = StorageSettings(
        azure_account_url=azure_url(azure_backend),
        credentials={AZURE_STORAGE_ACCOUNT_KEY: AZURITE_KEY},
        retry=FAST_RETRY,
    )
    storage = open_storage(f"azure://{BUCKET}/{prefix}", settings)
    try:
        await storage.write_bytes("k.json", b"{}")
        assert await storage.read_bytes("k.json") == b"{}"
    finally:
        await storage.close()


async def test_azure_sas_token(azure_backend: Backend, prefix: str) -> None:
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        BUCKET,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    settings = StorageSettings(
        azure_account_url=azure_url(azure_backend),
        credentials={AZURE_STORAGE_SAS_TOKEN: sas},
        retry=FAST_RETRY,
    )
    storage = open_storage(f"azure://{BUCKET}/{prefix}", settings)
    try:
        await storage.write_bytes("s.json", b"{}")
        assert [i.name async for i in storage.list()] == ["s.json"]
    finally:
        await storage.close()


async def test_azure_wrong_key_is_access_denied_at_once_without_the_key(
    azure_backend: Backend, prefix: str
) -> None:
    wrong_key = "V3Jvbmcga2V5IGZvciB0aGlzIGFjY291bnQgLSBub3QgdGhlIHJlYWwgb25lIQ=="
    conn = azure_backend.settings.credentials[AZURE_STORAGE_CONNECTION_STRING].replace(AZURITE_KEY, wrong_key)
    storage = open_storage(
        f"azure://{BUCKET}/{prefix}",
        StorageSettings(credentials={AZURE_STORAGE_CONNECTION_STRING: conn}, retry=FAST_RETRY),
    )
    try:
        with pytest.raises(StorageAccessDenied, match=BUCKET) as caught:
            await storage.write_bytes("x.json", b"{}")
        assert wrong_key not in str(caught.value)
    finally:
        await storage.close()


async def test_azure_connection_string_from_the_environment(
    azure_backend: Backend, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING", azure_backend.settings.credentials[AZURE_STORAGE_CONNECTION_STRING]
    )
    storage = open_storage(f"azure://{BUCKET}/{prefix}", StorageSettings(retry=FAST_RETRY))
    assert isinstance(storage, AzureStorage)
    try:
        await storage.write_bytes("env.json", b"{}")
        assert await storage.read_bytes("env.json") == b"{}"
    finally:
        await storage.close()


def test_azure_without_account_url_or_credentials_says_what_is_needed() -> None:
    with pytest.raises(StorageError, match="azure_account_url"):
        open_storage("azure://backups/prod")


# Settings and URLs


def test_settings_never_show_credentials() -> None:
    settings = StorageSettings(credentials={AWS_SECRET_ACCESS_KEY: "very-secret-value"})
    assert "very-secret-value" not in repr(settings)
    assert "very-secret-value" not in str(settings)


@pytest.mark.parametrize(
    ("url", "kind"),
    [("gs://b/backups/prod", GcsStorage), ("s3://b/backups/prod", S3Storage)],
)
def test_open_storage_picks_the_backend_and_keeps_the_url_clean(url: str, kind: type[Any]) -> None:
    settings = StorageSettings(
        gcs_endpoint="http://127.0.0.1:1",
        s3_endpoint="http://127.0.0.1:1",
        credentials={AWS_ACCESS_KEY_ID: "AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY: "secret"},
    )
    storage = open_storage(url, settings)
    assert isinstance(storage, kind)
    assert storage.url == url


def test_retry_delays_grow_and_stay_bounded() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0, multiplier=2.0)
    delays = policy.delays()
    samples = [next(delays) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in samples)
    assert max(samples[10:]) > 0.5  # grew beyond the first delay (jitter is below the cap)


def test_service_account_json_is_used_for_gcs(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "proj-1",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "backup@proj-1.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    storage = open_storage(
        "gs://b/p", StorageSettings(credentials={GCS_SERVICE_ACCOUNT_JSON: json.dumps(info)})
    )
    assert isinstance(storage, GcsStorage)
    assert storage.client.project == "proj-1"
    assert storage.client._credentials.service_account_email == "backup@proj-1.iam.gserviceaccount.com"
