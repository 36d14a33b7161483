"""The operator's /metrics endpoint over HTTP, against what happened: a completed backup, a
failed one and a restore, each scraped and compared with the object's status; the series of
deleted objects go, the schedule's stay; a restarted operator knows the finished ones again;
a run paused mid-way is in progress, and deleting it then leaves no series behind."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup.engine.failpoints import armed
from mongo_backup.metrics import SCHEDULE_LABEL
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    gone,
    path_of,
    phase_is,
    restore_object,
    wait_for,
)
from tests.support.scrape import Scrape, scrape_url

SCHEDULE = {"namespace": "default", "schedule": "nightly"}


@pytest.fixture
def operator(kube: KubeEmulator) -> Iterator[OperatorThread]:
    with OperatorThread(kube.url, metrics_port=0) as running:
        yield running


def scheduled(obj: dict[str, Any], schedule: str) -> dict[str, Any]:
    obj["metadata"]["labels"] = {SCHEDULE_LABEL: schedule}
    return obj


def finished(kube: KubeEmulator, plural: str, name: str, phase: str) -> dict[str, Any]:
    status = wait_for(kube, plural, name, phase_is("Completed", "Failed"))["status"]
    assert status["phase"] == phase, status
    return dict(status)


def unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def during(status: dict[str, Any], stamp: float) -> bool:
    """`stamp` falls within the run (the status gives whole seconds, cut down)."""
    return unix(status["startedAt"]) <= stamp < unix(status["completedAt"]) + 1


def scrape_until(url: str, check: Callable[[Scrape], bool], what: str, timeout: float = 30) -> Scrape:
    """Some series follow watch events (deletion, startup): wait for them, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = scrape_url(url)
        if check(scrape):
            return scrape
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last scrape:\n{scrape.text}")
        time.sleep(0.05)


def denied_path(tmp_path: Path) -> str:
    if os.geteuid() == 0:
        return "/sys/fs/mongo-backup-denied"  # even root may not create folders there
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return str(locked)


def test_scraped_values_match_what_happened(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
) -> None:
    sync_mongo[dbname]["things"].insert_many([{"n": i, "pad": "x" * 50} for i in range(120)])
    url = operator.metrics_url

    kube.apply(scheduled(backup_object("nightly-1", str(tmp_path / "store"), [f"{dbname}.*"]), "nightly"))
    good = finished(kube, "mongobackups", "nightly-1", "Completed")
    s = scrape_url(url)
    obj = {"namespace": "default", "name": "nightly-1", "kind": "backup", "schedule": "nightly"}
    success = s.value("mongobackup_last_success_timestamp_seconds", **obj)
    assert success is not None and during(good, success)
    assert s.value("mongobackup_stored_bytes", **obj) == good["storedBytes"]
    assert s.value("mongobackup_documents", **obj) == good["documents"] == 120
    assert s.value("mongobackup_runs_total", **obj, result="succeeded") == 1
    assert s.value("mongobackup_runs_total", **obj, result="failed") is None
    assert s.value("mongobackup_runs_in_progress", **obj) == 0
    duration = s.value("mongobackup_duration_seconds", **obj)
    assert duration is not None and 0 < duration <= unix(good["completedAt"]) - unix(good["startedAt"]) + 1
    assert s.value("mongobackup_schedule_last_success_timestamp_seconds", **SCHEDULE) == success
    assert s.value("mongobackup_schedule_consecutive_failures", **SCHEDULE) == 0

    kube.apply(scheduled(backup_object("nightly-2", denied_path(tmp_path), [f"{dbname}.*"]), "nightly"))
    bad = finished(kube, "mongobackups", "nightly-2", "Failed")
    s = scrape_url(url)
    failed = {"name": "nightly-2", "kind": "backup", "schedule": "nightly"}
    failure = s.value("mongobackup_last_failure_timestamp_seconds", **failed)
    assert failure is not None and during(bad, failure)
    assert s.value("mongobackup_runs_total", **failed, result="failed") == 1
    assert s.value("mongobackup_runs_in_progress", **failed) == 0
    assert s.value("mongobackup_stored_bytes", **failed) is None
    assert s.value("mongobackup_schedule_consecutive_failures", **SCHEDULE) == 1
    assert s.value("mongobackup_schedule_last_failure_timestamp_seconds", **SCHEDULE) == failure
    assert s.value("mongobackup_schedule_last_success_timestamp_seconds", **SCHEDULE) == success

    target = dbname + "_copy"
    kube.apply(restore_object("copy", "nightly-1", [{"from": f"{dbname}.*", "to": f"{target}.*"}]))
    restored = finished(kube, "mongorestores", "copy", "Completed")
    s = scrape_url(url)
    rst = {"name": "copy", "kind": "restore", "schedule": ""}
    assert s.value("mongobackup_documents", **rst) == restored["documents"] == 120
    assert s.value("mongobackup_stored_bytes", **rst) == restored["storedBytes"]
    assert s.value("mongobackup_runs_total", **rst, result="succeeded") == 1
    assert s.value("mongobackup_runs_in_progress", **rst) == 0

    # a restarted operator (a new process: nothing in memory) reads the finished ones back
    operator.stop()
    with OperatorThread(kube.url, metrics_port=0) as again:
        s = scrape_until(
            again.metrics_url,
            lambda s: (
                s.value("mongobackup_documents", kind="restore", name="copy") is not None
                and s.value("mongobackup_schedule_consecutive_failures", **SCHEDULE) == 1
                and s.value("mongobackup_schedule_last_success_timestamp_seconds", **SCHEDULE) is not None
            ),
            "the finished objects' series",
        )
        assert s.value("mongobackup_stored_bytes", **obj) == good["storedBytes"]
        assert s.value("mongobackup_schedule_last_success_timestamp_seconds", **SCHEDULE) == unix(
            good["completedAt"]
        )
        # the runs were counted by the other process: a counter starts again from 0
        assert s.value("mongobackup_runs_total", **obj, result="succeeded") == 0

        for plural, name in (("mongorestores", "copy"), ("mongobackups", "nightly-1")):
            kube.api("DELETE", path_of(plural, name))
            gone(kube, plural, name)
        s = scrape_until(
            again.metrics_url,
            lambda s: not s.names_with(name="nightly-1") and not s.names_with(name="copy"),
            "the deleted objects' series to go",
        )
        assert s.value("mongobackup_runs_total", name="nightly-2", result="failed") == 0
        assert s.value("mongobackup_schedule_consecutive_failures", **SCHEDULE) == 1


def test_a_running_backup_is_in_progress_and_deleting_it_leaves_no_series(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    dbname: str,
    tmp_path: Path,
) -> None:
    sync_mongo[dbname]["things"].insert_many([{"n": i} for i in range(20)])
    reached, release = threading.Event(), threading.Event()

    async def hold(context: dict[str, Any]) -> None:
        reached.set()
        await asyncio.to_thread(release.wait, 60)

    obj = {"name": "paused", "kind": "backup", "schedule": "nightly"}
    try:
        with armed("backup.locked", hold):
            kube.apply(scheduled(backup_object("paused", str(tmp_path), [f"{dbname}.*"]), "nightly"))
            assert reached.wait(60), "the backup never took its lock"
            s = scrape_url(operator.metrics_url)
            assert s.value("mongobackup_runs_in_progress", **obj) == 1
            assert s.value("mongobackup_runs_total", **obj, result="succeeded") is None
            assert s.value("mongobackup_last_success_timestamp_seconds", **obj) is None

            kube.api("DELETE", path_of("mongobackups", "paused"))
            gone(kube, "mongobackups", "paused")
            scrape_until(
                operator.metrics_url,
                lambda s: not s.names_with(name="paused"),
                "the series of 'paused' to go",
            )
    finally:
        release.set()
    # a stopped run is neither a success nor a failure of its schedule
    s = scrape_url(operator.metrics_url)
    assert s.value("mongobackup_schedule_consecutive_failures", **SCHEDULE) is None
