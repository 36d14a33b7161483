"""Full operator flows over real HTTP: Secret + MongoBackup -> Completed; MongoRestore of it
into another database -> Completed and Verified; deletion with Delete and Retain."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pymongo import MongoClient

from mongo_backup.api import MongoBackupStatus, MongoRestoreStatus
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    condition,
    events_of,
    gone,
    phase_is,
    restore_object,
    wait_for,
)


def schema_fields(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def seed(client: MongoClient[Any], db: str) -> dict[str, int]:
    counts = {"users": 300, "orders": 700}
    client[db]["users"].insert_many([{"_id": i, "name": f"user {i}", "age": i % 90} for i in range(300)])
    client[db]["orders"].insert_many([{"n": i, "total": i * 1.5, "tags": ["a", "b"]} for i in range(700)])
    client[db]["users"].create_index("name", unique=True)
    return counts


def test_backup_then_restore_into_another_database(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
) -> None:
    counts = seed(sync_mongo, dbname)
    kube.apply(backup_object("nightly", str(tmp_path), [f"{dbname}.*"]))

    done = wait_for(kube, "mongobackups", "nightly", phase_is("Completed", "Failed"))
    status = done["status"]
    assert status["phase"] == "Completed", status
    folder = tmp_path / "nightly"
    manifest = folder / "manifest.json"
    assert status["checksum"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert status["documents"] == sum(counts.values())
    assert status["collections"] == 2
    assert status["location"] == f"file://{folder}"
    assert status["storedBytes"] == sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert status["size"].endswith("iB") or status["size"].endswith(" B")
    assert status["dataBytes"] > 0
    assert status["serverVersion"]
    assert status["attempts"] == 1
    assert status["startedAt"] <= status["completedAt"]
    assert status["duration"].endswith("s")
    assert status["progress"]["percent"] == 100
    # a real API server prunes what the CRD schema does not declare: write nothing else
    assert set(status) <= schema_fields(MongoBackupStatus)
    MongoBackupStatus.model_validate(status)
    assert status["progress"]["documentsDone"] == sum(counts.values())
    assert condition(done, "Completed")["status"] == "True"  # type: ignore[index]
    reasons = [e["reason"] for e in events_of(kube, "nightly")]
    assert "Started" in reasons and "Completed" in reasons
    completed = next(e for e in events_of(kube, "nightly") if e["reason"] == "Completed")
    assert status["size"] in completed["message"] and "took" in completed["message"]

    target = dbname + "_copy"
    kube.apply(restore_object("copy", "nightly", [{"from": f"{dbname}.*", "to": f"{target}.*"}]))
    restored = wait_for(kube, "mongorestores", "copy", phase_is("Completed", "Failed"))
    rstatus = restored["status"]
    assert rstatus["phase"] == "Completed", rstatus
    verified = condition(restored, "Verified")
    assert verified is not None and verified["status"] == "True", verified
    assert rstatus["verification"] == {"checked": 2, "verified": 2, "mismatches": []}
    assert rstatus["documents"] == sum(counts.values())
    assert rstatus["backup"] == "nightly"
    assert rstatus["checksum"] == status["checksum"]
    assert sorted(rstatus["restoredCollections"]) == [f"{target}.orders", f"{target}.users"]
    assert rstatus["timings"]["insert"] > 0 and rstatus["timings"]["swap"] > 0
    assert set(rstatus["timings"]) == {
        "plan", "create", "insert", "indexes", "verify", "swap", "dropReplaced", "direct", "cleanup"
    }  # fmt: skip
    assert set(rstatus) <= schema_fields(MongoRestoreStatus)
    MongoRestoreStatus.model_validate(rstatus)
    for name in counts:
        original = list(sync_mongo[dbname][name].find_raw_batches(sort=[("_id", 1)]))
        copied = list(sync_mongo[target][name].find_raw_batches(sort=[("_id", 1)]))
        assert b"".join(copied) == b"".join(original)
    assert "name_1" in sync_mongo[target]["users"].index_information()


def test_delete_policy_delete_removes_the_stored_backup(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
) -> None:
    seed(sync_mongo, dbname)
    kube.apply(backup_object("doomed", str(tmp_path), [f"{dbname}.*"], deletionPolicy="Delete"))
    kube.apply(backup_object("kept", str(tmp_path), [f"{dbname}.*"], deletionPolicy="Retain"))
    for name in ("doomed", "kept"):
        assert (
            wait_for(kube, "mongobackups", name, phase_is("Completed", "Failed"))["status"]["phase"]
            == "Completed"
        )
    doomed = wait_for(
        kube,
        "mongobackups",
        "doomed",
        lambda o: "mongobackup.io/finalizer" in o["metadata"].get("finalizers", []),
    )
    assert doomed["metadata"]["finalizers"] == ["mongobackup.io/finalizer"]
    kept = wait_for(kube, "mongobackups", "kept", lambda o: not o["metadata"].get("finalizers"))
    assert not kept["metadata"].get("finalizers")

    # `kubectl delete -f` of a folder may remove the MongoDB Secret first: deleting the stored
    # backup needs only the storage, not MongoDB.
    kube.api("DELETE", "/api/v1/namespaces/default/secrets/mongo")
    kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/doomed")
    kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/kept")
    gone(kube, "mongobackups", "doomed")
    gone(kube, "mongobackups", "kept")
    assert not (tmp_path / "doomed").exists() or not any((tmp_path / "doomed").rglob("*"))
    assert (tmp_path / "kept" / "manifest.json").is_file()


def test_restore_from_a_storage_source_and_a_name_clash(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
) -> None:
    counts = seed(sync_mongo, dbname)
    kube.apply(backup_object("made-elsewhere", str(tmp_path), [f"{dbname}.*"]))
    first = wait_for(kube, "mongobackups", "made-elsewhere", phase_is("Completed", "Failed"))
    assert first["status"]["phase"] == "Completed"

    # A backup found in storage (e.g. made by another cluster): no MongoBackup needed.
    body = restore_object("from-storage", "unused", [{"from": f"{dbname}.*", "to": f"{dbname}_src.*"}])
    del body["spec"]["backupRef"]
    body["spec"]["source"] = {
        "storage": {"filesystem": {"path": str(tmp_path)}},
        "backupName": "made-elsewhere",
    }
    kube.apply(body)
    restored = wait_for(kube, "mongorestores", "from-storage", phase_is("Completed", "Failed"))
    status = restored["status"]
    assert status["phase"] == "Completed", status
    assert status["backup"] == f"file://{tmp_path}/made-elsewhere"
    assert status["checksum"] == first["status"]["checksum"]
    assert status["storedBytes"] == first["status"]["storedBytes"]
    assert status["documents"] == sum(counts.values())

    # Deleted with Retain and created again under the same name: the stored backup is not
    # overwritten, the new object fails and says why.
    kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/made-elsewhere")
    gone(kube, "mongobackups", "made-elsewhere")
    kube.apply(backup_object("made-elsewhere", str(tmp_path), [f"{dbname}.*"]))
    again = wait_for(kube, "mongobackups", "made-elsewhere", phase_is("Completed", "Failed"))
    assert again["status"]["phase"] == "Failed"
    assert condition(again, "Failed")["reason"] == "BackupExists"  # type: ignore[index]
    assert (tmp_path / "made-elsewhere" / "manifest.json").read_bytes()
    assert (
        hashlib.sha256((tmp_path / "made-elsewhere" / "manifest.json").read_bytes()).hexdigest()
        == (first["status"]["checksum"])
    )
