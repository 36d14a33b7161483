"""A schedule's retention against the Kubernetes emulator: after every finished backup it
deletes what the policy no longer keeps (and with deletionPolicy Delete the stored objects go
too), never the only Completed backup nor one a MongoRestore reads; dryRun only reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    condition,
    get,
    gone,
    path_of,
    phase_is,
    restore_object,
    wait_for,
    waiting_with,
)
from tests.integration.operator.scheduling import (
    BACKUPS,
    SCHEDULES,
    backups_of,
    completed,
    edit_schedule,
    event_messages,
    eventually,
    schedule_object,
    stamp,
    status_of,
)
from tests.support.clock import ManualClock
from tests.support.scrape import scrape_url


def run_at(kube: KubeEmulator, clock: ManualClock, schedule: str, when: datetime) -> str:
    """Move the clock to `when` (a cron time) and wait for that run's backup to finish."""
    clock.set(when + timedelta(seconds=3))
    name = f"{schedule}-{stamp(when)}"
    wait_for(kube, BACKUPS, name, phase_is("Completed", "Failed"), what=f"{name} finished")

    def seen() -> bool:  # by the schedule too (see `completed`): the next run is not skipped
        status = status_of(kube, schedule)
        latest = [
            (status.get(k) or {}).get("name") or "" for k in ("lastSuccessfulBackup", "lastFailedBackup")
        ]
        return max(latest) >= name

    eventually(seen, f"schedule {schedule} seeing {name} finished")
    return name


def retention_done(kube: KubeEmulator, schedule: str, key: str, expected: list[str]) -> dict[str, Any]:
    return dict(
        eventually(
            lambda: (
                ((status_of(kube, schedule).get("retention") or {}).get(key) == expected)
                and status_of(kube, schedule)
            ),
            f"status.retention.{key} == {expected}",
        )
    )


def test_keep_last_deletes_older_backups_and_their_stored_objects(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
) -> None:
    start = clock()
    kube.apply(
        schedule_object(
            "rotating",
            tmp_path,
            [f"{small_db}.*"],
            immediate=True,
            retention={"keepLast": 2},
            template={"deletionPolicy": "Delete"},
        )
    )
    names = [f"rotating-{stamp(start)}"]
    completed(kube, names[0])
    for hour in (1, 2, 3):
        names.append(run_at(kube, clock, "rotating", start + timedelta(hours=hour)))
    # after the fourth: the two oldest are gone, with what they stored
    for old in names[:2]:
        gone(kube, BACKUPS, old)
        assert not any(p.is_file() for p in (tmp_path / old).rglob("*"))
    eventually(lambda: sorted(backups_of(kube, "rotating")) == names[2:], "two backups left")
    for kept in names[2:]:
        assert (tmp_path / kept / "manifest.json").is_file()
    status = eventually(lambda: (s := status_of(kube, "rotating")).get("kept") == 2 and s, "kept == 2")
    assert status["lastSuccessfulBackup"]["name"] == names[3]
    pruned = event_messages(kube, "rotating", "Pruned")
    assert any(names[0] in m for m in pruned) and any(names[1] in m for m in pruned)

    # what Prometheus sees of the schedule: its interval, its retention, its last success
    sched = {"namespace": "default", "schedule": "rotating"}
    scraped = scrape_url(scheduler.metrics_url)
    assert scraped.value("mongobackup_schedule_interval_seconds", **sched) == 3600
    assert scraped.value("mongobackup_retention_deletions_total", **sched) == 2
    assert scraped.value("mongobackup_schedule_consecutive_failures", **sched) == 0
    assert scraped.value("mongobackup_schedule_suspended", **sched) == 0
    last = datetime.fromisoformat(status["lastSuccessfulBackup"]["time"].replace("Z", "+00:00"))
    assert scraped.value("mongobackup_schedule_last_success_timestamp_seconds", **sched) == pytest.approx(
        last.timestamp(), abs=1
    )
    # a deleted schedule's own series go (its backups' series go with them: the emulator does
    # not collect them by their ownerReference, a cluster does)
    kube.api("DELETE", path_of(SCHEDULES, "rotating"))
    eventually(
        lambda: (
            not {
                n
                for n in scrape_url(scheduler.metrics_url).names_with(**sched)
                if "schedule" in n or "retention" in n
            }
        ),
        "the deleted schedule's series gone",
    )


def test_a_backup_a_restore_reads_is_kept(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
) -> None:
    start = clock()
    kube.apply(
        schedule_object("held", tmp_path, [f"{small_db}.*"], immediate=True, retention={"keepLast": 1})
    )
    first = f"held-{stamp(start)}"
    completed(kube, first)
    # a restore of the first backup that waits (its MongoDB Secret is missing): it will read it
    kube.apply(restore_object("reader", first, secret_name="not-yet"))
    wait_for(kube, "mongorestores", "reader", waiting_with("SecretNotFound"))
    second = run_at(kube, clock, "held", start + timedelta(hours=1))
    retention_done(kube, "held", "deleted", [])
    assert sorted(backups_of(kube, "held")) == [first, second]
    # the restore is gone: the next round deletes both older backups
    kube.api("DELETE", path_of("mongorestores", "reader"))
    gone(kube, "mongorestores", "reader")
    third = run_at(kube, clock, "held", start + timedelta(hours=2))
    retention_done(kube, "held", "deleted", [first, second])
    eventually(lambda: list(backups_of(kube, "held")) == [third], "only the newest left")


def test_dry_run_only_reports_until_switched_off(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
) -> None:
    start = clock()
    kube.apply(
        schedule_object(
            "careful", tmp_path, [f"{small_db}.*"], immediate=True, retention={"keepLast": 1, "dryRun": True}
        )
    )
    first = f"careful-{stamp(start)}"
    completed(kube, first)
    second = run_at(kube, clock, "careful", start + timedelta(hours=1))
    status = retention_done(kube, "careful", "wouldDelete", [first])
    assert status["retention"]["dryRun"] is True and status["retention"].get("deleted", []) == []
    assert sorted(backups_of(kube, "careful")) == [first, second]
    would = eventually(lambda: event_messages(kube, "careful", "WouldPrune"), "a WouldPrune event")
    assert first in would[0]
    # dryRun off: retention runs again at once (the policy changed), no new backup needed
    edit_schedule(kube, "careful", {"retention": {"dryRun": False}})
    retention_done(kube, "careful", "deleted", [first])
    gone(kube, BACKUPS, first)
    assert list(backups_of(kube, "careful")) == [second]


def test_the_only_completed_backup_is_never_deleted(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
) -> None:
    """keepLast 0 and keepFailed 0: failed runs go, the one good backup stays."""
    start = clock()
    kube.apply(
        schedule_object(
            "fragile",
            tmp_path,
            [f"{small_db}.*"],
            immediate=True,
            retention={"keepLast": 0, "keepFailed": 0},
        )
    )
    good = f"fragile-{stamp(start)}"
    completed(kube, good)
    # the template is edited: from now on every backup fails (nothing matches)
    edit_schedule(kube, "fragile", {"backupTemplate": {"namespaces": {"include": ["no_such_database.*"]}}})
    clock.set(start + timedelta(hours=1, seconds=3))
    bad = f"fragile-{stamp(start + timedelta(hours=1))}"
    # it fails at once and retention deletes it (keepFailed 0): watch the schedule, not it
    retention_done(kube, "fragile", "deleted", [bad])
    gone(kube, BACKUPS, bad)
    assert list(backups_of(kube, "fragile")) == [good]
    status = eventually(
        lambda: (s := status_of(kube, "fragile")).get("lastFailedBackup") and s, "lastFailedBackup"
    )
    assert status["lastFailedBackup"]["name"] == bad and status["lastFailedBackup"]["message"]
    assert status["lastSuccessfulBackup"]["name"] == good
    last = condition(get(kube, SCHEDULES, "fragile") or {}, "LastBackupSucceeded")
    assert last is not None and last["status"] == "False", status
