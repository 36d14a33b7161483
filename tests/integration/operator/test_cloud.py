"""The same flows with object storage: S3 (moto server; endpoint and a credentials Secret in the
spec) and GCS (fake-gcs-server through STORAGE_EMULATOR_HOST, as Workload Identity would have
no key in the spec)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    condition,
    gone,
    phase_is,
    restore_object,
    secret,
    wait_for,
)
from tests.support.emulators import Emulator, EmulatorUnavailable, gcs_emulator, s3_emulator

BUCKET = "operator-backups"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    try:
        with s3_emulator(tmp_path_factory.mktemp("moto")) as emu:
            yield emu
    except EmulatorUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    try:
        with gcs_emulator(tmp_path_factory.mktemp("gcs"), backend="memory") as emu:
            yield emu
    except EmulatorUnavailable as exc:
        pytest.skip(str(exc))


def seed(client: MongoClient[Any], db: str) -> int:
    client[db]["events"].insert_many([{"n": i, "kind": "click"} for i in range(400)])
    client[db]["users"].insert_many([{"_id": i} for i in range(100)])
    return 500


def test_s3_backup_restore_and_delete(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    moto: Emulator,
    sync_mongo: MongoClient[Any],
    dbname: str,
) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    documents = seed(sync_mongo, dbname)
    secret(kube, "s3-keys", {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    storage = {
        "s3": {
            "bucket": BUCKET,
            "prefix": "team-a",
            "endpoint": moto.endpoint,
            "region": "us-east-1",
            "forcePathStyle": True,
            "credentialsSecretRef": {"name": "s3-keys"},
        }
    }
    body = backup_object("to-s3", "/unused", [f"{dbname}.*"], deletionPolicy="Delete")
    body["spec"]["storage"] = storage
    kube.apply(body)
    done = wait_for(kube, "mongobackups", "to-s3", phase_is("Completed", "Failed"))
    status = done["status"]
    assert status["phase"] == "Completed", status
    assert status["location"] == f"s3://{BUCKET}/team-a/to-s3"
    manifest = s3.get_object(Bucket=BUCKET, Key="team-a/to-s3/manifest.json")["Body"].read()
    assert status["checksum"] == hashlib.sha256(manifest).hexdigest()
    assert status["documents"] == documents
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="team-a/to-s3/")["Contents"]
    assert status["storedBytes"] == sum(o["Size"] for o in listed)

    kube.apply(restore_object("from-s3", "to-s3", [{"from": f"{dbname}.*", "to": f"{dbname}_s3.*"}]))
    restored = wait_for(kube, "mongorestores", "from-s3", phase_is("Completed", "Failed"))
    assert restored["status"]["phase"] == "Completed", restored["status"]
    assert condition(restored, "Verified")["status"] == "True"  # type: ignore[index]
    assert sync_mongo[f"{dbname}_s3"]["events"].count_documents({}) == 400

    kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/to-s3")
    gone(kube, "mongobackups", "to-s3")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="team-a/to-s3/").get("KeyCount", 0) == 0


def test_gcs_backup_with_ambient_credentials(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    fake_gcs: Emulator,
    sync_mongo: MongoClient[Any],
    dbname: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.endpoint)
    client = gcs.Client(project="test", credentials=AnonymousCredentials())
    client.create_bucket(BUCKET)
    documents = seed(sync_mongo, dbname)
    body = backup_object("to-gcs", "/unused", [f"{dbname}.*"])
    body["spec"]["storage"] = {"gcs": {"bucket": BUCKET, "prefix": "nightly"}}
    kube.apply(body)
    done = wait_for(kube, "mongobackups", "to-gcs", phase_is("Completed", "Failed"))
    status = done["status"]
    assert status["phase"] == "Completed", status
    assert status["location"] == f"gs://{BUCKET}/nightly/to-gcs"
    manifest = client.bucket(BUCKET).blob("nightly/to-gcs/manifest.json").download_as_bytes()
    assert status["checksum"] == hashlib.sha256(manifest).hexdigest()
    assert status["documents"] == documents
