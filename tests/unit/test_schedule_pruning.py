"""A schedule's retention over its MongoBackups (runner/pruning.py): a simulated year of daily
backups pruned after each one keeps exactly the GFS set, and the cluster's own rules: running
backups, the only Completed one and backups a MongoRestore reads are never deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mongo_backup.api import RetentionSpec
from mongo_backup.runner.pruning import (
    ScheduledBackup,
    active,
    finished_names,
    last_failure,
    last_success,
    plan_retention,
    readers,
)
from tests.unit.test_retention import YEAR_KEPT

UTC_ZONE = ZoneInfo("UTC")


def backup(name: str, phase: str | None, at: datetime, **extra: Any) -> ScheduledBackup:
    done = at + timedelta(minutes=5) if phase in ("Completed", "Failed") else None
    return ScheduledBackup(name=name, phase=phase, created=at, completed=done, **extra)


def deleted(decisions: Any) -> set[str]:
    return {d.name for d in decisions if not d.keep}


def test_a_year_of_daily_backups_pruned_after_each_keeps_the_gfs_set() -> None:
    """What the schedule does over a year: a backup a day at 02:00 UTC, retention after each
    one completes, the deleted ones gone from the next round."""
    spec = RetentionSpec(daily=7, weekly=4, monthly=12)
    existing: list[ScheduledBackup] = []
    start = datetime(2026, 1, 1, 1, 55, tzinfo=UTC)
    for day in range(365):
        at = start + timedelta(days=day)
        existing.append(
            ScheduledBackup(f"{at:%Y-%m-%d}", "Completed", created=at, completed=at + timedelta(minutes=5))
        )
        gone = deleted(plan_retention(existing, spec, UTC_ZONE))
        existing = [b for b in existing if b.name not in gone]
        assert len(existing) <= 7 + 4 + 12
    assert {b.name for b in existing} == YEAR_KEPT


T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)

CASES = [
    pytest.param(
        # keepLast 1 would delete the older one, but a restore reads it
        [backup("a", "Completed", T0), backup("b", "Completed", T0 + DAY)],
        RetentionSpec(keep_last=1), {"a": "restore-a"}, set(),
        id="a-backup-a-restore-reads-is-kept",
    ),
    pytest.param(
        [backup("a", "Completed", T0), backup("b", "Completed", T0 + DAY)],
        RetentionSpec(keep_last=1), {}, {"a"},
        id="keep-last-1",
    ),
    pytest.param(
        # keepLast 0 (and nothing else): the only Completed backup stays all the same
        [backup("a", "Completed", T0), backup("b", "Failed", T0 + DAY)],
        RetentionSpec(keep_last=0, keep_failed=0), {}, {"b"},
        id="the-only-completed-backup-is-never-deleted",
    ),
    pytest.param(
        # failed runs never push a good backup out, and keepFailed prunes them
        [backup("a", "Completed", T0), backup("f1", "Failed", T0 + DAY), backup("f2", "Failed", T0 + 2 * DAY)],
        RetentionSpec(keep_last=1, keep_failed=1), {}, {"f1"},
        id="keep-failed-1",
    ),
    pytest.param(
        [backup("a", "Completed", T0), backup("f1", "Failed", T0 + DAY)],
        RetentionSpec(keep_last=1), {}, set(),
        id="failed-kept-when-keep-failed-unset",
    ),
    pytest.param(
        # a running backup is never deleted and counts for no rule
        [backup("a", "Completed", T0), backup("b", "Completed", T0 + DAY), backup("r", "Running", T0 + 2 * DAY)],
        RetentionSpec(keep_last=1), {}, {"a"},
        id="running-kept-and-not-counted",
    ),
    pytest.param(
        # one being deleted already is not counted again
        [backup("a", "Completed", T0, deleting=True), backup("b", "Completed", T0 + DAY)],
        RetentionSpec(keep_last=1), {}, set(),
        id="deleting-ignored",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("backups", "spec", "read_by", "expected"), CASES)
def test_retention_rules(
    backups: list[ScheduledBackup], spec: RetentionSpec, read_by: dict[str, str], expected: set[str]
) -> None:
    decisions = plan_retention(backups, spec, UTC_ZONE, read_by)
    assert deleted(decisions) == expected
    for name, restore in read_by.items():
        assert any(f"MongoRestore {restore} reads it" in d.why for d in decisions if d.name == name)


def test_periods_are_those_of_the_schedule_time_zone() -> None:
    # 23:30 UTC on Dec 1 is Dec 2 in Berlin: two backups of the same Berlin day
    late = backup("late", "Completed", datetime(2026, 12, 1, 23, 25, tzinfo=UTC))
    morning = backup("morning", "Completed", datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
    spec = RetentionSpec(daily=2)
    assert deleted(plan_retention([late, morning], spec, ZoneInfo("Europe/Berlin"))) == {"late"}
    assert deleted(plan_retention([late, morning], spec, UTC_ZONE)) == set()


def test_status_summaries() -> None:
    backups = [
        backup("old", "Completed", T0, checksum="c0"),
        backup("good", "Completed", T0 + DAY, checksum="c1"),
        backup("bad", "Failed", T0 + 2 * DAY, error="MongoDB unreachable"),
        backup("now", "Running", T0 + 3 * DAY),
        backup("queued", None, T0 + 3 * DAY + timedelta(minutes=1)),
        backup("going", "Running", T0, deleting=True),
    ]
    assert active(backups) == ["now", "queued"]
    success = last_success(backups)
    assert success is not None and (success.name, success.checksum) == ("good", "c1")
    assert success.time == T0 + DAY + timedelta(minutes=5)
    failure = last_failure(backups)
    assert failure is not None and (failure.name, failure.message) == ("bad", "MongoDB unreachable")
    assert finished_names(backups) == {"old", "good", "bad"}


def test_readers_are_unfinished_restores_naming_the_backup() -> None:
    restores = [
        {"metadata": {"name": "r1"}, "spec": {"backupRef": {"name": "a"}}, "status": {"phase": "Running"}},
        {"metadata": {"name": "r2"}, "spec": {"backupRef": {"name": "b"}}, "status": {"phase": "Completed"}},
        {"metadata": {"name": "r3"}, "spec": {"backupRef": {"name": "c"}}},
        {"metadata": {"name": "r4"}, "spec": {"source": {"backupName": "d"}}},
    ]
    assert readers(restores) == {"a": "r1", "c": "r3"}


def test_from_object_reads_status_times() -> None:
    obj = {
        "metadata": {"name": "n-1", "creationTimestamp": "2026-12-05T10:00:00Z"},
        "status": {"phase": "Completed", "completedAt": "2026-12-05T10:01:02.5+00:00", "checksum": "ab"},
    }
    b = ScheduledBackup.from_object(obj)
    assert b.created == datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert b.completed == datetime(2026, 12, 5, 10, 1, 2, 500000, tzinfo=UTC)
    assert b.finished and not b.deleting and b.checksum == "ab"
