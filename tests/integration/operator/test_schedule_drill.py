"""Restore drills of a schedule against the Kubernetes emulator and SecantusDB: each backup is
restored into scratch databases, verified against its manifest and dropped; the verdict is in
the schedule's status.lastDrill, on the backup (condition Verified), in an event and in the
metrics. A damaged backup fails its drill and touches nothing but scratch data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import OperatorThread, condition, get
from tests.integration.operator.scheduling import (
    BACKUPS,
    completed,
    event_messages,
    eventually,
    schedule_object,
    stamp,
    status_of,
)
from tests.support.clock import ManualClock
from tests.support.scrape import scrape_url

SCHED = {"namespace": "default", "schedule": "proven"}


def drill(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"mongodb": {"uriSecretRef": {"name": "mongo", "key": "uri"}}, "databasePrefix": prefix, **extra}


def last_drill(kube: KubeEmulator, schedule: str, backup: str) -> dict[str, Any]:
    return dict(
        eventually(
            lambda: (d := status_of(kube, schedule).get("lastDrill") or {}).get("backup") == backup and d,
            f"a drill of {backup}",
        )
    )


def test_each_backup_is_drilled_after_it_completes(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    sync_mongo: MongoClient[Any],
    tmp_path: Path,
) -> None:
    start = clock()
    kube.apply(schedule_object("proven", tmp_path, [f"{small_db}.*"], immediate=True, drill=drill("d1_")))
    name = f"proven-{stamp(start)}"
    completed(kube, name)
    report = last_drill(kube, "proven", name)
    assert report["passed"] is True, report
    assert (report["verifiedCollections"], report["documents"]) == (1, 50)
    verified = eventually(
        lambda: condition(get(kube, BACKUPS, name) or {}, "Verified"), "Verified on the backup"
    )
    assert (verified["status"], verified["reason"]) == ("True", "DrillPassed")
    assert (
        f"d1_{small_db}" not in sync_mongo.list_database_names()
        or not sync_mongo[f"d1_{small_db}"].list_collection_names()
    )
    assert any(name in m for m in event_messages(kube, "proven", "DrillPassed"))
    scraped = scrape_url(scheduler.metrics_url)
    assert scraped.value("mongobackup_drills_total", **SCHED, result="succeeded") == 1
    assert scraped.value("mongobackup_drill_last_succeeded", **SCHED) == 1


def test_a_damaged_backup_fails_its_drill_and_only_scratch_data_is_touched(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    sync_mongo: MongoClient[Any],
    tmp_path: Path,
) -> None:
    """With a drill schedule of its own (every 5 minutes), the backup can be damaged between its
    completion and its drill."""
    start = clock()
    kube.apply(
        schedule_object(
            "proven", tmp_path, [f"{small_db}.*"], immediate=True, drill=drill("d2_", schedule="*/5 * * * *")
        )
    )
    name = f"proven-{stamp(start)}"
    completed(kube, name)
    data = next((tmp_path / name / small_db).glob("items.bson*"))
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40
    data.write_bytes(bytes(damaged))
    before = sorted(sync_mongo[small_db]["items"].find({}, {"_id": 0}).sort("n"), key=str)

    clock.set(start + timedelta(minutes=5, seconds=1))
    report = last_drill(kube, "proven", name)
    assert report["passed"] is False and "did not restore" in report["message"], report
    verified = eventually(
        lambda: condition(get(kube, BACKUPS, name) or {}, "Verified"), "Verified on the backup"
    )
    assert (verified["status"], verified["reason"]) == ("False", "DrillFailed")
    assert any(name in m for m in event_messages(kube, "proven", "DrillFailed"))
    assert not sync_mongo[f"d2_{small_db}"].list_collection_names()
    assert sorted(sync_mongo[small_db]["items"].find({}, {"_id": 0}).sort("n"), key=str) == before
    scraped = scrape_url(scheduler.metrics_url)
    assert scraped.value("mongobackup_drills_total", **SCHED, result="failed") == 1
    assert scraped.value("mongobackup_drill_last_succeeded", **SCHED) == 0
