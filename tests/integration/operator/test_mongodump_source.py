"""A MongoRestore of a plain mongodump directory: refused unless `spec.source.format:
mongodump` says what it is, then restored with a Warning event that it cannot be verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    condition,
    events_of,
    phase_is,
    restore_object,
    wait_for,
)
from tests.support.mongodump import write_mongodump_dir


def _from_folder(name: str, folder: Path, dbname: str, **source: Any) -> dict[str, Any]:
    body = restore_object(name, "unused", [{"from": f"{dbname}.*", "to": f"{dbname}_r.*"}])
    del body["spec"]["backupRef"]
    body["spec"]["source"] = {
        "storage": {"filesystem": {"path": str(folder.parent)}},
        "backupName": folder.name,
        **source,
    }
    return body


def test_a_mongodump_directory_is_restored_only_when_the_spec_says_so(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "old-dump"
    write_mongodump_dir(folder, dbname, [{"_id": i, "sku": i} for i in range(40)], gz=False, metadata=True)

    kube.apply(_from_folder("undeclared", folder, dbname))
    refused = wait_for(kube, "mongorestores", "undeclared", phase_is("Completed", "Failed"))
    assert refused["status"]["phase"] == "Failed", refused["status"]
    failed = condition(refused, "Failed")
    assert failed is not None and failed["reason"] == "IncompleteBackup"
    assert "spec.source.format: mongodump" in refused["status"]["error"]
    assert dbname + "_r" not in sync_mongo.list_database_names()

    kube.apply(_from_folder("declared", folder, dbname, format="mongodump"))
    done = wait_for(kube, "mongorestores", "declared", phase_is("Completed", "Failed"))
    assert done["status"]["phase"] == "Completed", done["status"]
    assert done["status"].get("checksum") is None  # nothing to pin it to
    assert sync_mongo[dbname + "_r"].items.count_documents({}) == 40
    warnings = [e for e in events_of(kube, "declared") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["Unverifiable"]
    assert "cannot be verified" in warnings[0]["message"]
