"""An operator stopped in the middle of a backup leaves it Running; the next operator takes it
up again, clears what the lost attempt left behind and completes it with attempts: 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mongo_backup.testing.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    events_of,
    get,
    phase_is,
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
    # what a killed process (no chance to clean up) would leave behind
    stray = tmp_path / "slow" / dbname / "a.bson.zst"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"partial")

    with OperatorThread(kube.url):
        done = wait_for(kube, "mongobackups", "slow", phase_is("Completed", "Failed"), timeout=120)
    status = done["status"]
    assert status["phase"] == "Completed", status
    assert status["attempts"] == 2
    assert status["documents"] == 3 * DOCS
    manifest = json.loads((tmp_path / "slow" / "manifest.json").read_text())
    listed = {obj["name"] for coll in manifest["collections"] for obj in coll["objects"]}
    stored = {
        p.relative_to(tmp_path / "slow").as_posix() for p in (tmp_path / "slow").rglob("*") if p.is_file()
    }
    assert stored == listed | {"manifest.json"}
    started = [e["message"] for e in events_of(kube, "slow") if e["reason"] == "Started"]
    assert any("lost attempt" in m for m in started), started
