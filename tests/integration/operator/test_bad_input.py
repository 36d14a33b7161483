"""Each kind of bad input gets its own reason, in a Failed phase or a waiting condition, and
never a crash loop; secrets never show up in the status or the events."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    GROUP_VERSION,
    OperatorThread,
    backup_object,
    condition,
    events_of,
    phase_is,
    restore_object,
    secret,
    wait_for,
    waiting_with,
)


@pytest.fixture
def small_db(sync_mongo: MongoClient[Any], dbname: str) -> str:
    sync_mongo[dbname]["things"].insert_many([{"n": i} for i in range(50)])
    return dbname


def failed(kube: KubeEmulator, plural: str, name: str) -> dict[str, Any]:
    obj = wait_for(kube, plural, name, phase_is("Completed", "Failed"))
    assert obj["status"]["phase"] == "Failed", obj["status"]
    return obj


def reason_of(obj: dict[str, Any]) -> str:
    cond = condition(obj, "Failed")
    assert cond is not None and cond["status"] == "True", obj["status"]
    return str(cond["reason"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_missing_secret_waits_then_runs_when_it_appears(
    kube: KubeEmulator, operator: OperatorThread, mongo_uri: str, small_db: str, tmp_path: Path
) -> None:
    kube.apply(backup_object("early", str(tmp_path), [f"{small_db}.*"], secret_name="later"))
    waiting = wait_for(kube, "mongobackups", "early", waiting_with("SecretNotFound"))
    assert waiting["status"]["phase"] == "Pending"
    assert "default/later" in condition(waiting, "Ready")["message"]  # type: ignore[index]

    secret(kube, "later", {"other": "x"})
    wait_for(kube, "mongobackups", "early", waiting_with("SecretKeyNotFound"))

    secret(kube, "later", {"uri": mongo_uri})
    done = wait_for(kube, "mongobackups", "early", phase_is("Completed", "Failed"))
    assert done["status"]["phase"] == "Completed"
    assert condition(done, "Ready")["status"] == "True"  # type: ignore[index]


def test_malformed_uri_fails_with_the_password_masked(
    kube: KubeEmulator, operator: OperatorThread, tmp_path: Path
) -> None:
    secret(kube, "bad-uri", {"uri": "mongodb://admin:hunter2@db.example:notaport/"})
    kube.apply(backup_object("typo", str(tmp_path), ["x.*"], secret_name="bad-uri"))
    obj = failed(kube, "mongobackups", "typo")
    assert reason_of(obj) == "InvalidURI"
    assert "admin:***@" in obj["status"]["error"]
    assert "hunter2" not in str(obj) and "hunter2" not in str(events_of(kube, "typo"))
    assert "Failed" in [e["reason"] for e in events_of(kube, "typo")]


def test_unreachable_mongodb_is_retried_then_fails(
    kube: KubeEmulator, operator: OperatorThread, tmp_path: Path
) -> None:
    port = closed_port()
    uri = f"mongodb://backup:pw0rd@127.0.0.1:{port}/?directConnection=true"
    secret(kube, "nowhere", {"uri": uri})
    kube.apply(backup_object("lonely", str(tmp_path), ["x.*"], secret_name="nowhere"))
    obj = failed(kube, "mongobackups", "lonely")
    assert reason_of(obj) == "MongoDBUnreachable"
    # where, and how long the operator tried (its mongo_timeout_ms)
    assert f"MongoDB at 127.0.0.1:{port} could not be reached within 0.8s" in obj["status"]["error"]
    assert obj["status"]["attempts"] == 3  # the first try and one per retry delay
    assert "pw0rd" not in str(obj) and "pw0rd" not in str(events_of(kube, "lonely"))
    warnings = [e for e in events_of(kube, "lonely") if e["type"] == "Warning"]
    assert any("retrying" in e["message"] for e in warnings)


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("tlsCAFile=/nonexistent/ca.pem", "MongoDB URI option tlsCAFile: cannot read /nonexistent/ca.pem"),
        ("tsl=true", "unknown option 'tsl' in the MongoDB URI"),
    ],
    ids=["missing-tlsCAFile", "unknown-option"],
)
def test_uri_options_are_checked_before_connecting(
    option: str, says: str, kube: KubeEmulator, operator: OperatorThread, mongo_uri: str, tmp_path: Path
) -> None:
    """A URI option the driver would only warn about, or fail on with a bare OSError, fails
    the backup at once with InvalidURI, naming the option."""
    uri = f"{mongo_uri}{'&' if '?' in mongo_uri else '?'}{option}"
    secret(kube, "opts", {"uri": uri})
    kube.apply(backup_object("opts", str(tmp_path), ["x.*"], secret_name="opts"))
    obj = failed(kube, "mongobackups", "opts")
    assert reason_of(obj) == "InvalidURI", obj["status"]
    assert says in obj["status"]["error"]
    assert obj["status"]["attempts"] == 1  # input errors are not retried


def test_storage_access_denied_fails(
    kube: KubeEmulator, operator: OperatorThread, mongo_secret: str, small_db: str, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        denied = "/sys/fs/mongo-backup-denied"  # even root may not create folders there
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        denied = str(locked)
    kube.apply(backup_object("denied", denied, [f"{small_db}.*"]))
    obj = failed(kube, "mongobackups", "denied")
    assert reason_of(obj) == "StorageAccessDenied", obj["status"]


def test_restore_waits_for_a_missing_backup_and_fails_on_a_failed_one(
    kube: KubeEmulator, operator: OperatorThread, mongo_secret: str, tmp_path: Path
) -> None:
    kube.apply(restore_object("orphan", "not-there"))
    waiting = wait_for(kube, "mongorestores", "orphan", waiting_with("BackupNotFound"))
    assert "default/not-there" in waiting["status"]["error"]

    secret(kube, "bad-uri", {"uri": "mongodb://:@"})
    kube.apply(backup_object("broken", str(tmp_path), ["x.*"], secret_name="bad-uri"))
    failed(kube, "mongobackups", "broken")
    kube.apply(restore_object("from-broken", "broken"))
    obj = failed(kube, "mongorestores", "from-broken")
    assert reason_of(obj) == "BackupNotComplete"


def test_restore_over_existing_data_fails_naming_the_collection(
    kube: KubeEmulator, operator: OperatorThread, mongo_secret: str, small_db: str, tmp_path: Path
) -> None:
    kube.apply(backup_object("snap", str(tmp_path), [f"{small_db}.*"]))
    assert (
        wait_for(kube, "mongobackups", "snap", phase_is("Completed", "Failed"))["status"]["phase"]
        == "Completed"
    )
    kube.apply(restore_object("clash", "snap"))  # into the same, non-empty database
    obj = failed(kube, "mongorestores", "clash")
    assert reason_of(obj) == "RestoreConflict"
    assert f"{small_db}.things" in obj["status"]["error"]


def test_a_restore_that_fails_part_way_leaves_every_target_as_it_was_and_says_so(
    kube: KubeEmulator, operator: OperatorThread, mongo_secret: str, sync_mongo: MongoClient[Any], dbname: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """All or nothing: `big` is staged and verified, then `small`'s data object turns out to be
    corrupt; with onConflict Drop, neither target is replaced, and the status says so."""
    sync_mongo[dbname]["big"].insert_many([{"n": i, "p": "x" * 100} for i in range(2_000)])
    sync_mongo[dbname]["small"].insert_many([{"n": i} for i in range(100)])
    kube.apply(backup_object("snap", str(tmp_path), [f"{dbname}.*"]))
    assert (
        wait_for(kube, "mongobackups", "snap", phase_is("Completed", "Failed"))["status"]["phase"]
        == "Completed"
    )
    stored = tmp_path / "snap" / dbname / "small.bson.zst"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    for name in ("big", "small"):  # what the targets hold now differs from the backup
        sync_mongo[dbname][name].insert_one({"written": "after the backup"})
    before = {n: list(sync_mongo[dbname][n].find_raw_batches(sort=[("_id", 1)])) for n in ("big", "small")}

    kube.apply(restore_object("partway", "snap", onConflict="Drop", parallelism=1))
    obj = failed(kube, "mongorestores", "partway")
    assert reason_of(obj) == "IntegrityError"
    assert "small.bson.zst" in obj["status"]["error"] and "no target was changed" in obj["status"]["error"]
    assert not obj["status"].get("restoredCollections")
    after = {n: list(sync_mongo[dbname][n].find_raw_batches(sort=[("_id", 1)])) for n in ("big", "small")}
    assert after == before
    assert sorted(sync_mongo[dbname].list_collection_names()) == ["big", "small"]  # no temporaries


def test_invalid_spec_fails_without_running(kube: KubeEmulator, operator: OperatorThread) -> None:
    kube.apply(
        {
            "apiVersion": GROUP_VERSION,
            "kind": "MongoRestore",
            "metadata": {"name": "nothing", "namespace": "default"},
            "spec": {"mongodb": {"uriSecretRef": {"name": "m", "key": "uri"}}},
        }
    )
    obj = failed(kube, "mongorestores", "nothing")
    assert reason_of(obj) == "InvalidSpec"
    assert "backupRef or source" in obj["status"]["error"]
