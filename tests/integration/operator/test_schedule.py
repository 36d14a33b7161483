"""MongoBackupSchedule against the Kubernetes emulator, with a clock the test moves: backups
appear at the cron times (and only then), missed runs follow CronJob's rules, the concurrency
policies, suspend, immediate, and a clear error for a bad schedule or time zone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mongo_backup.api import SCHEDULE_LABEL
from mongo_backup.engine.failpoints import armed
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    condition,
    get,
    gone,
    phase_is,
    wait_for,
)
from tests.integration.operator.scheduling import (
    BACKUPS,
    SCHEDULES,
    backups_of,
    completed,
    edit_schedule,
    event_messages,
    eventually,
    iso,
    schedule_object,
    stamp,
    status_of,
)
from tests.support.clock import ManualClock


def test_a_schedule_creates_backups_at_its_times(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
) -> None:
    start = clock()
    kube.apply(schedule_object("nightly", tmp_path, [f"{small_db}.*"]))
    first = start + timedelta(hours=1)
    eventually(lambda: status_of(kube, "nightly").get("nextScheduleTime") == iso(first), "nextScheduleTime")
    ready = condition(get(kube, SCHEDULES, "nightly") or {}, "Ready")
    assert ready is not None and ready["status"] == "True"
    clock.advance(minutes=59)
    # nothing is due before the hour (the next evaluation says so and creates nothing)
    eventually(lambda: status_of(kube, "nightly").get("active") == [], "an evaluation at 59 minutes")
    assert backups_of(kube, "nightly") == {}

    clock.set(first + timedelta(seconds=5))
    name = f"nightly-{stamp(first)}"
    eventually(lambda: name in backups_of(kube, "nightly"), f"{name} created")
    backup = completed(kube, name)
    schedule = get(kube, SCHEDULES, "nightly")
    assert schedule is not None
    assert backup["metadata"]["labels"][SCHEDULE_LABEL] == "nightly"
    (owner,) = backup["metadata"]["ownerReferences"]
    assert owner["kind"] == "MongoBackupSchedule" and owner["name"] == "nightly"
    assert owner["uid"] == schedule["metadata"]["uid"] and owner["controller"] is True
    assert backup["spec"] == schedule["spec"]["backupTemplate"]
    assert (tmp_path / name / "manifest.json").is_file()

    status = eventually(
        lambda: (s := status_of(kube, "nightly")).get("lastSuccessfulBackup") and s, "lastSuccessfulBackup"
    )
    assert status["lastScheduleTime"] == iso(first)
    assert status["nextScheduleTime"] == iso(first + timedelta(hours=1))
    assert status["lastSuccessfulBackup"]["name"] == name
    assert status["lastSuccessfulBackup"]["checksum"] == backup["status"]["checksum"]
    assert status["kept"] == 1 and status["active"] == []
    succeeded = condition(get(kube, SCHEDULES, "nightly") or {}, "LastBackupSucceeded")
    assert succeeded is not None and succeeded["status"] == "True"
    assert any(name in m for m in event_messages(kube, "nightly", "Created"))

    # what `kubectl get mbs` shows (the real kubectl, the CRD's printer columns)
    header, row = kubectl_get(kube, "mbs").splitlines()
    assert header.split() == ["NAME", "SCHEDULE", "SUSPEND", "LAST", "SUCCESS", "NEXT", "AGE"]
    # (SUSPEND is empty here: the emulator applies no CRD defaults; an API server shows false)
    assert row.split()[:2] == ["nightly", "@hourly"] and iso(first + timedelta(hours=1)) in row

    second = first + timedelta(hours=1)
    clock.set(second + timedelta(seconds=5))
    completed(kube, f"nightly-{stamp(second)}")
    assert sorted(backups_of(kube, "nightly")) == [name, f"nightly-{stamp(second)}"]


def kubectl_get(kube: KubeEmulator, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(kube.kubeconfig), "get", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECACHEDIR": str(kube.workdir / "kubectl-cache")},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("deadline", "expect_backup"),
    [
        pytest.param(None, True, id="no-deadline-one-catch-up"),
        pytest.param(600, False, id="too-late-skipped"),
    ],
)
def test_missed_runs_start_at_most_once(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
    deadline: int | None,
    expect_backup: bool,
) -> None:
    """The operator was away for five hours (the clock jumps): at most the latest missed run
    starts, and only within startingDeadlineSeconds."""
    start = clock()
    spec: dict[str, Any] = {} if deadline is None else {"startingDeadlineSeconds": deadline}
    kube.apply(schedule_object("hourly", tmp_path, [f"{small_db}.*"], **spec))
    eventually(lambda: status_of(kube, "hourly").get("nextScheduleTime"), "first evaluation")
    clock.set(start + timedelta(hours=5, minutes=20))
    latest = start + timedelta(hours=5)
    missed = eventually(lambda: event_messages(kube, "hourly", "MissedSchedule"), "a MissedSchedule event")
    if expect_backup:
        assert "4 runs were missed" in missed[0] and iso(latest) in missed[0]
        completed(kube, f"hourly-{stamp(latest)}")
        assert list(backups_of(kube, "hourly")) == [f"hourly-{stamp(latest)}"]
        assert status_of(kube, "hourly")["lastScheduleTime"] == iso(latest)
    else:
        assert f"the run due at {iso(latest)} was not started" in missed[0]
        assert "startingDeadlineSeconds (600)" in missed[0]
        # the next time comes round: that run starts
        clock.set(start + timedelta(hours=6, seconds=30))
        completed(kube, f"hourly-{stamp(start + timedelta(hours=6))}")
        assert list(backups_of(kube, "hourly")) == [f"hourly-{stamp(start + timedelta(hours=6))}"]


@pytest.fixture
def paused_backups() -> Iterator[threading.Event]:
    """Every backup run stops after taking its lock until the test sets the event."""
    release = threading.Event()

    async def hold(context: dict[str, Any]) -> None:
        # a threading.Event set by the test's thread: polled (asyncio.Event is per loop)
        while not release.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    with armed("backup.locked", hold):
        yield release
    release.set()


@pytest.mark.parametrize("policy", ["Forbid", "Replace", "Allow"])
def test_concurrency_policies(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
    paused_backups: threading.Event,
    policy: str,
) -> None:
    start = clock()
    kube.apply(schedule_object("busy", tmp_path, [f"{small_db}.*"], concurrencyPolicy=policy, immediate=True))
    first = f"busy-{stamp(start)}"
    wait_for(kube, BACKUPS, first, phase_is("Running"), what="the immediate backup running")
    eventually(lambda: status_of(kube, "busy").get("active") == [first], "active lists the running backup")
    due = clock.advance(hours=1)
    second = f"busy-{stamp(due)}"
    if policy == "Forbid":
        skipped = eventually(lambda: event_messages(kube, "busy", "Skipped"), "a Skipped event")
        assert first in skipped[0] and "Forbid" in skipped[0]
        assert list(backups_of(kube, "busy")) == [first]
        paused_backups.set()
        completed(kube, first)
    elif policy == "Replace":
        gone(kube, BACKUPS, first)
        wait_for(kube, BACKUPS, second, phase_is("Running"), what="the new backup running")
        # the replaced run stopped and deleted what it had written
        assert not any(p.is_file() for p in (tmp_path / first).rglob("*"))
        assert any(first in m for m in event_messages(kube, "busy", "Replaced"))
        paused_backups.set()
        completed(kube, second)
        assert list(backups_of(kube, "busy")) == [second]
    else:
        wait_for(kube, BACKUPS, second, phase_is("Running"), what="the second backup running")
        both = eventually(
            lambda: sorted(status_of(kube, "busy").get("active") or []) == sorted([first, second]),
            "both active",
        )
        assert both
        paused_backups.set()
        # released together, they finish in either order: the schedule's last success is
        # whichever completed later, so wait for both to be done and no longer active
        for name in (first, second):
            done = wait_for(kube, BACKUPS, name, phase_is("Completed", "Failed"), what=f"{name} finished")
            assert done["status"]["phase"] == "Completed", done["status"]
        eventually(
            lambda: (
                not status_of(kube, "busy").get("active")
                and (status_of(kube, "busy").get("lastSuccessfulBackup") or {}).get("name") in (first, second)
            ),
            "the schedule seeing both completed",
        )


def test_suspend_then_resume_catches_up_once(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
) -> None:
    start = clock()
    kube.apply(schedule_object("paused", tmp_path, [f"{small_db}.*"], suspend=True))
    suspended = eventually(
        lambda: (c := condition(get(kube, SCHEDULES, "paused") or {}, "Suspended")) and c["status"] == "True",
        "Suspended True",
    )
    assert suspended
    clock.set(start + timedelta(hours=2, minutes=30))
    eventually(lambda: status_of(kube, "paused").get("active") == [], "an evaluation while suspended")
    assert "nextScheduleTime" not in status_of(kube, "paused")
    assert backups_of(kube, "paused") == {}
    edit_schedule(kube, "paused", {"suspend": False})
    latest = start + timedelta(hours=2)
    completed(kube, f"paused-{stamp(latest)}")
    assert list(backups_of(kube, "paused")) == [f"paused-{stamp(latest)}"]
    resumed = condition(get(kube, SCHEDULES, "paused") or {}, "Suspended")
    assert resumed is not None and resumed["status"] == "False"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("schedule", "61 * * * *", "spec.schedule: invalid cron expression '61 * * * *'"),
        ("timeZone", "Mars/Olympus", "spec.timeZone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_schedule_or_time_zone_is_a_clear_error(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    mongo_secret: str,
    tmp_path: Path,
    field: str,
    value: str,
    message: str,
) -> None:
    kube.apply(schedule_object("broken", tmp_path, ["shop.*"], **{field: value}))
    ready = eventually(
        lambda: (
            (c := condition(get(kube, SCHEDULES, "broken") or {}, "Ready")) and c["status"] == "False" and c
        ),
        "Ready False",
    )
    assert ready["reason"] == "InvalidSpec" and message in ready["message"]
    assert "\n" not in ready["message"]
    warning = eventually(lambda: event_messages(kube, "broken", "InvalidSpec"), "an InvalidSpec event")
    assert message in warning[0]
    assert backups_of(kube, "broken") == {}
    # fixed: the schedule works
    edit_schedule(kube, "broken", {"schedule": "@daily", "timeZone": "Europe/Berlin"})
    eventually(
        lambda: (c := condition(get(kube, SCHEDULES, "broken") or {}, "Ready")) and c["status"] == "True",
        "Ready True after the fix",
    )


def test_a_daily_run_in_berlin_across_both_dst_changes(
    kube: KubeEmulator,
    scheduler: OperatorThread,
    clock: ManualClock,
    mongo_secret: str,
    small_db: str,
    tmp_path: Path,
) -> None:
    """02:30 Europe/Berlin: on the night clocks spring forward it runs at the change (03:00
    CEST = 01:00 UTC); on the night they fall back it runs once, at the first 02:30."""
    clock.set(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    kube.apply(schedule_object("dst", tmp_path, [f"{small_db}.*"], "30 2 * * *", timeZone="Europe/Berlin"))
    spring = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    eventually(lambda: status_of(kube, "dst").get("nextScheduleTime") == iso(spring), "next: the change")
    clock.set(spring + timedelta(seconds=5))
    completed(kube, f"dst-{stamp(spring)}")

    first_fall_back = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    clock.set(datetime(2026, 10, 24, 23, 0, tzinfo=UTC))
    # months later: one catch-up run for the missed days, then the fall-back night
    catch_up = f"dst-{stamp(datetime(2026, 10, 24, 0, 30, tzinfo=UTC))}"
    completed(kube, catch_up)
    clock.set(first_fall_back + timedelta(seconds=5))
    completed(kube, f"dst-{stamp(first_fall_back)}")
    # the second 02:30 (CET, 01:30 UTC) is not another run: next is the 26th, 02:30 CET
    clock.set(datetime(2026, 10, 25, 1, 30, 5, tzinfo=UTC))
    eventually(
        lambda: (
            status_of(kube, "dst").get("nextScheduleTime") == iso(datetime(2026, 10, 26, 1, 30, tzinfo=UTC))
        ),
        "next: the 26th",
    )
    assert sorted(backups_of(kube, "dst")) == sorted(
        [f"dst-{stamp(spring)}", catch_up, f"dst-{stamp(first_fall_back)}"]
    )


def test_a_schedule_name_too_long_for_the_label_is_a_clear_error(
    kube: KubeEmulator, scheduler: OperatorThread, mongo_secret: str, tmp_path: Path
) -> None:
    name = "s" * 64
    kube.apply(schedule_object(name, tmp_path, ["shop.*"], immediate=True))
    ready = eventually(
        lambda: (c := condition(get(kube, SCHEDULES, name) or {}, "Ready")) and c["status"] == "False" and c,
        "Ready False",
    )
    assert ready["reason"] == "InvalidSpec"
    assert ready["message"].startswith("metadata.name: at most 63 characters")
    assert backups_of(kube, name) == {}


def test_runs_missed_while_the_operator_is_down_start_once_after_it_returns(
    kube: KubeEmulator, clock: ManualClock, mongo_secret: str, small_db: str, tmp_path: Path
) -> None:
    """What the schedule knows survives in its status: a new operator process, hours later,
    starts the latest missed run once, not one per missed hour."""
    start = clock()
    first = start + timedelta(hours=1)
    with OperatorThread(kube.url, clock=clock):
        kube.apply(schedule_object("durable", tmp_path, [f"{small_db}.*"]))
        clock.set(first + timedelta(seconds=2))
        completed(kube, f"durable-{stamp(first)}")
        eventually(
            lambda: status_of(kube, "durable").get("lastScheduleTime") == iso(first), "lastScheduleTime"
        )
    clock.set(start + timedelta(hours=4, minutes=10))  # down from 01:00 to 04:10
    with OperatorThread(kube.url, clock=clock):
        latest = start + timedelta(hours=4)
        completed(kube, f"durable-{stamp(latest)}")
        missed = eventually(lambda: event_messages(kube, "durable", "MissedSchedule"), "MissedSchedule")
        assert "2 runs were missed" in missed[0]
        assert sorted(backups_of(kube, "durable")) == [f"durable-{stamp(first)}", f"durable-{stamp(latest)}"]
