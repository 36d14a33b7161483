"""An operator stopped in the middle of a backup leaves it Running; the next operator takes it
up again, clears what the lost attempt left behind and completes it with attempts: 2."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mongo_backup.engine.lock import LockInfo
from mongo_backup.engine.namespaces import JOURNAL_DATABASE
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    events_of,
    get,
    phase_is,
    restore_object,
    wait_for,
)

DOCS = 8_000


def test_backup_interrupted_by_an_operator_restart_completes_on_the_next_one(
    kube: KubeEmulator, mongo_secret: str, sync_mongo: MongoClient[Any], dbname: str, tmp_path: Path
) -> None:
    payload = "x" * 400
    for name in ("a", "b", "c"):
        sync_mongo[dbname][name].insert_many([{"n": i, "p": payload} for i in range(DOCS)])
    kube.apply(backup_object("slow", str(tmp_path), [f"{dbname}.*"], parallelism=1))

    first = OperatorThread(kube.url).start()
    try:
        wait_for(kube, "mongobackups", "slow", phase_is("Running", "Completed", "Failed"), what="Running")
    finally:
        first.stop()
    interrupted = get(kube, "mongobackups", "slow")
    assert interrupted is not None and interrupted["status"]["phase"] == "Running", interrupted
    assert interrupted["status"]["attempts"] == 1
    # what a killed process (no chance to clean up) would leave behind: its lock (owned by the
    # object's uid), a finished object and a half-written one (a hidden temporary file)
    folder = tmp_path / "slow"
    (folder / dbname).mkdir(parents=True, exist_ok=True)
    lock = LockInfo.mine(interrupted["metadata"]["uid"], "backup")
    (folder / "lock.json").write_bytes(lock.to_json())
    (folder / dbname / "a.bson.zst").write_bytes(b"partial")
    (folder / dbname / ".b.bson.zst.tmp-0123456789ab").write_bytes(b"x" * 100_000)

    with OperatorThread(kube.url):
        done = wait_for(kube, "mongobackups", "slow", phase_is("Completed", "Failed"), timeout=120)
    status = done["status"]
    assert status["phase"] == "Completed", status
    assert status["attempts"] == 2
    assert status["documents"] == 3 * DOCS
    manifest = json.loads((tmp_path / "slow" / "manifest.json").read_text())
    listed = {obj["name"] for coll in manifest["collections"] for obj in coll["objects"]}
    stored = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert stored == listed | {"manifest.json"}  # no lock, no temporary file left
    started = [e["message"] for e in events_of(kube, "slow") if e["reason"] == "Started"]
    assert any("lost attempt" in m for m in started), started

    # A Completed object is never run again, whatever restarts follow.
    with OperatorThread(kube.url):
        time.sleep(1.5)
    again = get(kube, "mongobackups", "slow")
    assert again is not None and again["status"] == status
    assert len([e for e in events_of(kube, "slow") if e["reason"] == "Started"]) == len(started)


def test_restore_interrupted_by_an_operator_restart_starts_again_and_leaves_no_trace(
    kube: KubeEmulator, mongo_secret: str, sync_mongo: MongoClient[Any], dbname: str, tmp_path: Path
) -> None:
    """A restore is all or nothing: the lost attempt had swapped nothing in, so the new one
    drops what it staged and restores every collection; no temporary, no journal entry left."""
    names = ("a", "b", "c")
    for name in names:
        sync_mongo[dbname][name].insert_many([{"n": i, "p": "y" * 200} for i in range(5_000)])
    target = dbname + "_back"
    with OperatorThread(kube.url):
        kube.apply(backup_object("src", str(tmp_path), [f"{dbname}.*"]))
        assert (
            wait_for(kube, "mongobackups", "src", phase_is("Completed", "Failed"))["status"]["phase"]
            == "Completed"
        )
        kube.apply(
            restore_object("resumable", "src", [{"from": f"{dbname}.*", "to": f"{target}.*"}], parallelism=1)
        )
        wait_for(
            kube,
            "mongorestores",
            "resumable",
            lambda o: ((o.get("status") or {}).get("progress") or {}).get("documentsDone", 0) > 0,
            what="the first documents staged",
        )
    interrupted = get(kube, "mongorestores", "resumable")
    assert interrupted is not None and interrupted["status"]["phase"] == "Running", interrupted["status"]
    assert not interrupted["status"].get("restoredCollections")  # nothing is restored before the commit

    with OperatorThread(kube.url):
        done = wait_for(kube, "mongorestores", "resumable", phase_is("Completed", "Failed"), timeout=60)
    status = done["status"]
    assert status["phase"] == "Completed", status
    assert status["attempts"] == 2
    assert sorted(status["restoredCollections"]) == [f"{target}.{n}" for n in names]
    assert status["documents"] == 3 * 5_000
    assert sorted(sync_mongo[target].list_collection_names()) == list(names)  # no temporary leftovers
    assert sync_mongo[JOURNAL_DATABASE]["restore_runs"].count_documents({"databases": target}) == 0
    for name in names:
        original = b"".join(sync_mongo[dbname][name].find_raw_batches(sort=[("_id", 1)]))
        assert b"".join(sync_mongo[target][name].find_raw_batches(sort=[("_id", 1)])) == original
