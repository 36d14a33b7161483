"""The operator with encryption at rest and signed manifests: a MongoBackup with `encryption.keySecretRef` is
stored encrypted and shows its key's fingerprint; a MongoRestore with the same key (from a
Secret of another name) restores and verifies it; a wrong, missing or malformed key fails
with its own reason before any target is touched; and no key material appears in the status,
the Events or the operator's log records."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import MongoClient

from mongo_backup.api import MongoBackupStatus, MongoRestoreStatus
from mongo_backup.engine.encryption import key_fingerprint
from mongo_backup.engine.signing import public_fingerprint
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.engine.test_kms import AWS_ENV, new_kms_key
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    condition,
    events_of,
    phase_is,
    restore_object,
    secret,
    wait_for,
)
from tests.integration.operator.test_flows import schema_fields
from tests.support.emulators import EmulatorUnavailable, s3_emulator
from tests.support.kms_standins import gcp_kms_standin


def _key() -> tuple[bytes, str]:
    key = os.urandom(32)
    return key, base64.b64encode(key).decode()


def _key_forms(key: bytes, text: str) -> list[str]:
    """Every way the key could leak: its base64 text (and a long piece of it), its hex."""
    return [text, text[4:28], key.hex(), key.hex()[8:40]]


def test_an_encrypted_backup_restores_with_its_key_and_never_shows_it(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key, text = _key()
    wrong, wrong_text = _key()
    sync_mongo[dbname].users.insert_many([{"_id": i, "name": f"user {i}"} for i in range(200)])
    sync_mongo[dbname].users.create_index("name")
    secret(kube, "backup-key", {"key": text})
    secret(kube, "rotated-name", {"key": text + "\n"})  # the same key under another Secret name
    secret(kube, "wrong-key", {"key": wrong_text})
    secret(kube, "short-key", {"key": base64.b64encode(os.urandom(16)).decode()})
    encryption = {"keySecretRef": {"name": "backup-key", "key": "key"}}

    kube.apply(backup_object("enc", str(tmp_path), [f"{dbname}.*"], encryption=encryption))
    done = wait_for(kube, "mongobackups", "enc", phase_is("Completed", "Failed"))
    status = done["status"]
    assert status["phase"] == "Completed", status
    assert status["encryption"] == {"keyFingerprint": key_fingerprint(key), "keySource": "secret:backup-key"}
    assert set(status) <= schema_fields(MongoBackupStatus)
    stored = sorted(p.name for p in (tmp_path / "enc" / dbname).iterdir())
    assert stored == ["users.bson.zst.enc", "users.metadata.json.enc"]

    def restore(name: str, secret_name: str | None, target: str) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if secret_name is not None:
            spec["encryption"] = {"keySecretRef": {"name": secret_name, "key": "key"}}
        rename = [{"from": f"{dbname}.*", "to": f"{target}.*"}]
        kube.apply(restore_object(name, "enc", rename, **spec))
        return wait_for(kube, "mongorestores", name, phase_is("Completed", "Failed"))

    copy = restore("copy", "rotated-name", dbname + "_copy")
    assert copy["status"]["phase"] == "Completed", copy["status"]
    assert copy["status"]["encryption"]["keyFingerprint"] == key_fingerprint(key)
    assert set(copy["status"]) <= schema_fields(MongoRestoreStatus)
    assert condition(copy, "Verified")["status"] == "True"  # type: ignore[index]
    assert sync_mongo[dbname + "_copy"].users.count_documents({}) == 200

    failures = {
        "with-wrong-key": ("wrong-key", "WrongEncryptionKey"),
        "without-key": (None, "EncryptionKeyRequired"),
        "with-short-key": ("short-key", "InvalidEncryptionKey"),
    }
    for name, (secret_name, reason) in failures.items():
        target = f"{dbname}_{name.replace('-', '_')}"
        failed = restore(name, secret_name, target)
        assert failed["status"]["phase"] == "Failed", failed["status"]
        assert condition(failed, "Failed")["reason"] == reason, failed["status"]  # type: ignore[index]
        if reason != "InvalidEncryptionKey":
            assert key_fingerprint(key) in failed["status"]["error"]
        assert target not in sync_mongo.list_database_names()  # nothing was written

    names = ["enc", "copy", *failures]
    shown = [str(wait_for(kube, plural, n, phase_is("Completed", "Failed"))) for plural, n in
             [("mongobackups", "enc")] + [("mongorestores", n) for n in names[1:]]]  # fmt: skip
    shown += [str(events_of(kube, n)) for n in names]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    shown += [formatter.format(record) for record in caplog.records]
    assert any("enc" in line for line in shown)
    for form in _key_forms(key, text) + _key_forms(wrong, wrong_text):
        leaked = [line for line in shown if form in line]
        assert not leaked, f"key material in the status, an Event or a log record: {leaked[:2]}"


def test_a_signed_backup_shows_its_signer_and_restores_only_with_its_public_key(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    fingerprint = public_fingerprint(private.public_key())
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    sync_mongo[dbname].items.insert_many([{"_id": i} for i in range(50)])
    secret(kube, "signing", {"private": pem})
    secret(kube, "verifying", {"public": base64.b64encode(public).decode()})
    secret(kube, "someone-else", {"public": base64.b64encode(other).decode()})

    signing = {"keySecretRef": {"name": "signing", "key": "private"}}
    kube.apply(backup_object("signed", str(tmp_path), [f"{dbname}.*"], signing=signing))
    done = wait_for(kube, "mongobackups", "signed", phase_is("Completed", "Failed"))
    assert done["status"]["phase"] == "Completed", done["status"]
    assert done["status"]["signing"] == {"signerFingerprint": fingerprint}

    def restore(name: str, secret_name: str) -> dict[str, Any]:
        spec = {"signing": {"keySecretRef": {"name": secret_name, "key": "public"}}}
        rename = [{"from": f"{dbname}.*", "to": f"{dbname}_{name}.*"}]
        kube.apply(restore_object(name, "signed", rename, **spec))
        return wait_for(kube, "mongorestores", name, phase_is("Completed", "Failed"))

    good = restore("good", "verifying")
    assert good["status"]["phase"] == "Completed", good["status"]
    assert good["status"]["signing"] == {"signerFingerprint": fingerprint}
    bad = restore("bad", "someone-else")
    assert bad["status"]["phase"] == "Failed", bad["status"]
    assert condition(bad, "Failed")["reason"] == "ManifestTampered"  # type: ignore[index]
    assert f"{dbname}_bad" not in sync_mongo.list_database_names()

    body = "".join(pem.splitlines()[1:-1])
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    shown = [str(done), str(good), str(bad), *(str(events_of(kube, n)) for n in ("signed", "good", "bad"))]
    shown += [formatter.format(record) for record in caplog.records]
    assert not [line for line in shown if body[:40] in line or body[-40:] in line]


def test_a_backup_encrypted_with_aws_kms(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """keyless AWS credentials (here: the environment, as IRSA would set them), moto's KMS"""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    try:
        manager = s3_emulator(tmp_path / "moto")
        kms_server = manager.__enter__()
    except EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    try:
        key_id = new_kms_key(kms_server.endpoint)
        sync_mongo[dbname].c.insert_many([{"_id": i} for i in range(30)])
        encryption = {"awsKms": {"keyId": key_id, "endpoint": kms_server.endpoint}}
        kube.apply(backup_object("kms", str(tmp_path / "b"), [f"{dbname}.*"], encryption=encryption))
        done = wait_for(kube, "mongobackups", "kms", phase_is("Completed", "Failed"))
        assert done["status"]["phase"] == "Completed", done["status"]
        assert done["status"]["encryption"]["keySource"] == f"aws-kms:{key_id}"
        rename = [{"from": f"{dbname}.*", "to": f"{dbname}_kms.*"}]
        kube.apply(restore_object("kms-copy", "kms", rename, encryption=encryption))
        restored = wait_for(kube, "mongorestores", "kms-copy", phase_is("Completed", "Failed"))
        assert restored["status"]["phase"] == "Completed", restored["status"]
        assert sync_mongo[f"{dbname}_kms"].c.count_documents({}) == 30
    finally:
        manager.__exit__(None, None, None)


def test_a_backup_encrypted_with_gcp_kms(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
) -> None:
    """the spec's gcpKms key, served by a local stand-in of the Cloud KMS REST API (a plain-http
    endpoint gets no credentials); a restore naming another key fails before touching anything"""
    with gcp_kms_standin() as gcp:
        key_name = gcp.create_key(f"projects/p/locations/global/keyRings/r/cryptoKeys/{dbname}")
        other = gcp.create_key(f"projects/p/locations/global/keyRings/r/cryptoKeys/{dbname}-other")
        sync_mongo[dbname].c.insert_many([{"_id": i} for i in range(30)])
        encryption = {"gcpKms": {"keyName": key_name, "endpoint": gcp.endpoint}}
        kube.apply(backup_object("gkms", str(tmp_path / "b"), [f"{dbname}.*"], encryption=encryption))
        done = wait_for(kube, "mongobackups", "gkms", phase_is("Completed", "Failed"))
        assert done["status"]["phase"] == "Completed", done["status"]
        assert done["status"]["encryption"]["keySource"] == f"gcp-kms:{key_name}"
        rename = [{"from": f"{dbname}.*", "to": f"{dbname}_gkms.*"}]
        kube.apply(restore_object("gkms-copy", "gkms", rename, encryption=encryption))
        restored = wait_for(kube, "mongorestores", "gkms-copy", phase_is("Completed", "Failed"))
        assert restored["status"]["phase"] == "Completed", restored["status"]
        assert sync_mongo[f"{dbname}_gkms"].c.count_documents({}) == 30

        wrong = {"gcpKms": {"keyName": other, "endpoint": gcp.endpoint}}
        rename = [{"from": f"{dbname}.*", "to": f"{dbname}_wrong.*"}]
        kube.apply(restore_object("gkms-wrong", "gkms", rename, encryption=wrong))
        failed = wait_for(kube, "mongorestores", "gkms-wrong", phase_is("Completed", "Failed"))
        assert failed["status"]["phase"] == "Failed", failed["status"]
        assert condition(failed, "Failed")["reason"] == "WrongEncryptionKey"  # type: ignore[index]
        assert f"{dbname}_wrong" not in sync_mongo.list_database_names()
