"""The pydantic models of MongoBackup and MongoRestore: defaults, errors that name the field,
camelCase in and out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mongo_backup.api import (
    MongoBackupSpec,
    MongoBackupStatus,
    MongoRestoreSpec,
    MongoRestoreStatus,
    Progress,
    SpecError,
    parse_spec,
    parse_status,
    status_patch,
)

MONGODB = {"uriSecretRef": {"name": "mongo", "key": "uri"}}
GCP_KEY = "projects/p/locations/global/keyRings/r/cryptoKeys/k"


def body(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mongobackup.io/v1alpha1", "kind": "MongoBackup", "spec": spec}


def spec_error(model: type[Any], spec: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(model, body(**spec))
    return str(caught.value)


def test_a_minimal_backup_gets_the_documented_defaults() -> None:
    spec = parse_spec(MongoBackupSpec, body(mongodb=MONGODB, storage={"gcs": {"bucket": "backups"}}))
    assert spec.mongodb.uri_secret_ref.name == "mongo" and spec.mongodb.uri_secret_ref.key == "uri"
    assert spec.compression.type == "zstd" and spec.compression.level is None
    assert spec.namespaces.include == [] and spec.namespaces.exclude == []
    assert spec.parallelism == 4
    assert spec.deletion_policy == "Retain"
    assert spec.storage.backend == "gcs"
    assert spec.storage.gcs is not None and spec.storage.gcs.prefix == ""
    assert spec.storage.url() == "gs://backups"


@pytest.mark.parametrize(
    ("storage", "url"),
    [
        ({"filesystem": {"path": "/backups/"}}, "file:///backups"),
        ({"gcs": {"bucket": "bkt", "prefix": "team/db/"}}, "gs://bkt/team/db"),
        ({"s3": {"bucket": "bkt", "prefix": "x", "endpoint": "http://minio:9000"}}, "s3://bkt/x"),
        ({"azure": {"container": "backups", "prefix": "p"}}, "azure://backups/p"),
    ],
)
def test_every_backend_names_its_storage_url(storage: dict[str, Any], url: str) -> None:
    spec = parse_spec(MongoBackupSpec, body(mongodb=MONGODB, storage=storage))
    assert spec.storage.url() == url


def test_a_missing_field_is_named_by_its_path() -> None:
    assert spec_error(MongoBackupSpec, {"mongodb": MONGODB, "storage": {"gcs": {}}}) == (
        "spec.storage.gcs.bucket: field required"
    )
    assert "spec.mongodb: field required" in spec_error(
        MongoBackupSpec, {"storage": {"gcs": {"bucket": "bkt"}}}
    )
    assert "spec.mongodb.uriSecretRef.key: field required" in spec_error(
        MongoBackupSpec, {"mongodb": {"uriSecretRef": {"name": "m"}}, "storage": {"gcs": {"bucket": "bkt"}}}
    )
    with pytest.raises(SpecError, match=r"^spec: field required$"):
        parse_spec(MongoBackupSpec, {"metadata": {"name": "x"}})


@pytest.mark.parametrize("storage", [{}, {"gcs": {"bucket": "abc"}, "s3": {"bucket": "abc"}}])
def test_storage_needs_exactly_one_backend(storage: dict[str, Any]) -> None:
    message = spec_error(MongoBackupSpec, {"mongodb": MONGODB, "storage": storage})
    assert message == "spec.storage: exactly one storage backend must be set: filesystem, gcs, s3 or azure"


def test_a_typo_is_refused_not_ignored() -> None:
    message = spec_error(
        MongoBackupSpec, {"mongodb": MONGODB, "storage": {"gcs": {"bucket": "bkt", "prefx": "p"}}}
    )
    assert message == "spec.storage.gcs.prefx: extra inputs are not permitted"


def test_a_plain_uri_is_not_accepted() -> None:
    message = spec_error(
        MongoBackupSpec, {"mongodb": {"uri": "mongodb://u:p@h"}, "storage": {"gcs": {"bucket": "bkt"}}}
    )
    assert "spec.mongodb.uriSecretRef: field required" in message
    assert "spec.mongodb.uri: extra inputs are not permitted" in message
    assert "u:p@h" not in message  # the value itself is never echoed


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"namespaces": {"include": ["shop"]}},
            "spec.namespaces.include[0]: namespace pattern 'shop' must look like",
        ),
        ({"compression": {"type": "gzip", "level": 12}}, "spec.compression: gzip levels are 1-9"),
        ({"compression": {"type": "lz4"}}, "spec.compression.type: input should be 'zstd', 'gzip' or 'none'"),
        ({"parallelism": 0}, "spec.parallelism: input should be greater than or equal to 1"),
        ({"deletionPolicy": "Purge"}, "spec.deletionPolicy: input should be 'Retain' or 'Delete'"),
        (
            {"storage": {"filesystem": {"path": "relative"}}},
            "spec.storage.filesystem.path: string should match",
        ),
        (
            {"storage": {"s3": {"bucket": "bkt", "kmsKeyId": "k"}}},
            "spec.storage.s3: kmsKeyId needs serverSideEncryption: aws:kms",
        ),
        (
            {"encryption": {"awsKms": {"keyId": "k"}, "gcpKms": {"keyName": GCP_KEY}}},
            "spec.encryption: set exactly one of keySecretRef, awsKms, gcpKms or azureKeyVault",
        ),
        (
            {"encryption": {}},
            "spec.encryption: set exactly one of keySecretRef, awsKms, gcpKms or azureKeyVault",
        ),
        (
            {"encryption": {"gcpKms": {"keyName": "projects/p/keyRings/r"}}},
            "spec.encryption.gcpKms.keyName: string should match",
        ),
        (
            {"encryption": {"azureKeyVault": {"keyUrl": "http://v.vault.azure.net/keys/k"}}},
            "spec.encryption.azureKeyVault.keyUrl: string should match",
        ),
    ],
)
def test_bad_values_name_the_field(spec: dict[str, Any], expected: str) -> None:
    full = {"mongodb": MONGODB, "storage": {"gcs": {"bucket": "bkt"}}, **spec}
    assert spec_error(MongoBackupSpec, full).startswith(expected)


@pytest.mark.parametrize(
    ("encryption", "field"),
    [
        ({"gcpKms": {"keyName": GCP_KEY, "endpoint": "http://127.0.0.1:8080"}}, "gcp_kms"),
        ({"azureKeyVault": {"keyUrl": "https://v.vault.azure.net/keys/k"}}, "azure_key_vault"),
        ({"azureKeyVault": {"keyUrl": "https://v.vault.azure.net/keys/k/0123abcd"}}, "azure_key_vault"),
    ],
)
def test_cloud_kms_keys_are_accepted(encryption: dict[str, Any], field: str) -> None:
    spec = parse_spec(
        MongoBackupSpec, body(mongodb=MONGODB, storage={"gcs": {"bucket": "bkt"}}, encryption=encryption)
    )
    assert spec.encryption is not None and getattr(spec.encryption, field) is not None


def test_camel_case_round_trip() -> None:
    written = {
        "mongodb": MONGODB,
        "storage": {
            "s3": {
                "bucket": "bkt",
                "prefix": "p",
                "region": "eu-west-1",
                "forcePathStyle": True,
                "serverSideEncryption": "aws:kms",
                "kmsKeyId": "key",
                "storageClass": "STANDARD_IA",
                "credentialsSecretRef": {"name": "s3"},
            }
        },
        "compression": {"type": "gzip", "level": 9},
        "namespaces": {"include": ["shop.*"], "exclude": ["shop.tmp_*"]},
        "parallelism": 2,
        "runMode": "Job",
        "runner": {
            "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
            "nodeSelector": {"pool": "backups"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {}},
            "priorityClassName": "low",
            "serviceAccountName": "backups",
            "activeDeadlineSeconds": 3600,
        },
        "deletionPolicy": "Delete",
    }
    spec = parse_spec(MongoBackupSpec, body(**written))
    assert spec.storage.s3 is not None and spec.storage.s3.force_path_style is True
    assert (
        spec.storage.credentials_secret_ref is not None and spec.storage.credentials_secret_ref.name == "s3"
    )
    assert spec.model_dump(by_alias=True, exclude_none=True) == written
    # Python names work too (populate_by_name)
    by_python_names = MongoBackupSpec.model_validate(
        {
            "mongodb": {"uri_secret_ref": {"name": "mongo", "key": "uri"}},
            "storage": {"filesystem": {"path": "/b"}},
            "deletion_policy": "Delete",
        }
    )
    assert by_python_names.deletion_policy == "Delete"


def test_a_restore_needs_exactly_one_of_backup_ref_and_source() -> None:
    source = {"storage": {"gcs": {"bucket": "bkt"}}, "backupName": "nightly"}
    ok = parse_spec(MongoRestoreSpec, body(mongodb=MONGODB, backupRef={"name": "nightly"}))
    assert ok.backup_ref is not None and ok.source is None
    assert ok.on_conflict == "Fail" and ok.verify is True and ok.rename == [] and ok.parallelism == 4
    from_storage = parse_spec(MongoRestoreSpec, body(mongodb=MONGODB, source=source))
    assert from_storage.source is not None and from_storage.source.storage.url() == "gs://bkt"
    for spec in ({"mongodb": MONGODB}, {"mongodb": MONGODB, "backupRef": {"name": "x"}, "source": source}):
        assert spec_error(MongoRestoreSpec, spec) == "spec: set exactly one of backupRef or source"


def test_rename_patterns() -> None:
    spec = parse_spec(
        MongoRestoreSpec,
        body(mongodb=MONGODB, backupRef={"name": "n"}, rename=[{"from": "shop.*", "to": "shop_copy.*"}]),
    )
    assert spec.rename[0].from_ == "shop.*" and spec.rename[0].to == "shop_copy.*"
    assert spec.model_dump(by_alias=True)["rename"] == [{"from": "shop.*", "to": "shop_copy.*"}]
    message = spec_error(
        MongoRestoreSpec,
        {"mongodb": MONGODB, "backupRef": {"name": "n"}, "rename": [{"from": "a.*", "to": "b.c"}]},
    )
    assert message == "spec.rename[0]: rename 'a.*' -> 'b.c': both must have the same number of '*'"


def test_status_patches_are_camel_case_and_leave_out_what_is_not_set() -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = MongoBackupStatus(
        phase="Running",
        started_at=started,
        attempts=2,
        progress=Progress(percent=12.5, documents_done=10, bytes_done=2048, current=["shop.orders"]),
    )
    assert status_patch(status) == {
        "phase": "Running",
        "startedAt": "2026-01-02T03:04:05Z",
        "attempts": 2,
        "progress": {"percent": 12.5, "documentsDone": 10, "bytesDone": 2048, "current": ["shop.orders"]},
    }
    done = MongoBackupStatus(phase="Completed", stored_bytes=1024, size="1.0 KiB")
    assert status_patch(done, clear=["progress", "error"]) == {
        "phase": "Completed",
        "storedBytes": 1024,
        "size": "1.0 KiB",
        "progress": None,
        "error": None,
    }
    with pytest.raises(KeyError):
        status_patch(done, clear=["no_such_field"])


def test_status_read_back_from_an_object() -> None:
    obj = {
        "spec": {},
        "status": {
            "phase": "Completed",
            "restoredCollections": ["shop.orders"],
            "verification": {"checked": 2, "verified": 2},
            "conditions": [
                {
                    "type": "Verified",
                    "status": "True",
                    "reason": "Matched",
                    "lastTransitionTime": "2026-01-02T03:04:05Z",
                }
            ],
            "someFutureField": 1,
        },
    }
    status = parse_status(MongoRestoreStatus, obj)
    assert status.restored_collections == ["shop.orders"]
    assert status.verification is not None and status.verification.mismatches == []
    verified = status.condition("Verified")
    assert verified is not None and verified.status == "True" and verified.last_transition_time.year == 2026
    assert parse_status(MongoBackupStatus, {"spec": {}}).phase is None
    with pytest.raises(SpecError, match=r"status\.phase: input should be"):
        parse_status(MongoBackupStatus, {"status": {"phase": "Exploded"}})
