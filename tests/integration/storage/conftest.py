"""Fixtures for the storage tests: one `backend` fixture parametrized over every backend, each
on its emulator (started once per session, only when a test needs it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mongo_backup.storage import Storage, StorageSettings
from mongo_backup.storage.location import (
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AZURE_STORAGE_CONNECTION_STRING,
)
from mongo_backup.storage.retry import RetryPolicy
from tests.support.emulators import (
    BUCKET,
    Backend,
    Emulator,
    EmulatorUnavailable,
    azure_emulator,
    gcs_emulator,
    s3_emulator,
)

#: short delays so retry tests stay fast; the total budget still bounds every operation
FAST_RETRY = RetryPolicy(
    initial_delay=0.05, max_delay=0.4, total_timeout=4.0, connect_timeout=5, read_timeout=60
)
BACKENDS = ["filesystem", "gcs", "s3", "azure"]


def _start(factory: Callable[[Path], Any], tmp: Path) -> Iterator[Emulator]:
    try:
        manager = factory(tmp)
        emu = manager.__enter__()
    except EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield emu
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from _start(gcs_emulator, tmp_path_factory.mktemp("gcs"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from _start(s3_emulator, tmp_path_factory.mktemp("s3"))


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from _start(azure_emulator, tmp_path_factory.mktemp("azure"))


def gcs_settings(endpoint: str) -> StorageSettings:
    return StorageSettings(gcs_endpoint=endpoint, retry=FAST_RETRY)


def s3_settings(endpoint: str) -> StorageSettings:
    return StorageSettings(
        s3_endpoint=endpoint,
        s3_region="us-east-1",
        s3_force_path_style=True,
        credentials={AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing"},
        retry=FAST_RETRY,
    )


def azure_settings_for(emu: Emulator) -> Callable[[str], StorageSettings]:
    def settings(endpoint: str) -> StorageSettings:
        return StorageSettings(
            credentials={AZURE_STORAGE_CONNECTION_STRING: emu.azure_connection_string(endpoint)},
            retry=FAST_RETRY,
        )

    return settings


@pytest.fixture(scope="session")
def gcs_backend(gcs_server: Emulator) -> Backend:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_server.endpoint},
    )
    client.create_bucket(BUCKET)
    return Backend(
        "gcs",
        f"gs://{BUCKET}",
        gcs_settings(gcs_server.endpoint),
        gcs_server.endpoint,
        gcs_settings,
        part_request="upload_id=",
        extra={"client": client},
    )


@pytest.fixture(scope="session")
def s3_backend(s3_server: Emulator) -> Backend:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)

    def multipart_uploads(prefix: str) -> list[str]:
        response = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
        return [f"multipart upload of {u['Key']}" for u in response.get("Uploads", [])]

    return Backend(
        "s3",
        f"s3://{BUCKET}",
        s3_settings(s3_server.endpoint),
        s3_server.endpoint,
        s3_settings,
        leftovers=multipart_uploads,
        part_request="partNumber=2",
        extra={"client": client},
    )


@pytest.fixture(scope="session")
def azure_backend(azure_server: Emulator) -> Backend:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azure_server.azure_connection_string())
    container = service.create_container(BUCKET)

    def uncommitted(prefix: str) -> list[str]:
        found = []
        for blob in container.list_blobs(name_starts_with=prefix, include=["uncommittedblobs"]):
            _, uncommitted = container.get_blob_client(blob.name).get_block_list("uncommitted")
            if uncommitted:
                found.append(f"blob {blob.name} ({len(uncommitted)} uncommitted blocks)")
        return found

    settings_for = azure_settings_for(azure_server)
    return Backend(
        "azure",
        f"azure://{BUCKET}",
        settings_for(azure_server.endpoint),
        azure_server.endpoint,
        settings_for,
        leftovers=uncommitted,
        part_request="comp=block",
        extra={"container": container},
    )


def filesystem_backend(root: Path) -> Backend:
    def temp_files(prefix: str) -> list[str]:
        return (
            sorted(str(p) for p in (root / prefix).rglob(".*") if p.is_file())
            if (root / prefix).exists()
            else []
        )

    return Backend("filesystem", f"file://{root}", StorageSettings(retry=FAST_RETRY), leftovers=temp_files)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name = request.param
    if name == "filesystem":
        root = tmp_path / "fs-store"
        root.mkdir()
        return filesystem_backend(root)
    backend: Backend = request.getfixturevalue(f"{name}_backend")
    return backend


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own inside the shared bucket."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def store(backend: Backend, prefix: str) -> AsyncIterator[Storage]:
    storage = backend.open(prefix)
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture(autouse=True)
def _no_ambient_cloud_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell may point at real clouds: the tests only use the emulators they start.
    for var in (
        "STORAGE_EMULATOR_HOST",
        "AWS_ENDPOINT_URL",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(var, raising=False)
    if "AWS_ACCESS_KEY_ID" not in os.environ:
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
