"""Runs and the object's life: a bounded number of runs at once (the others wait in Pending,
condition Queued), and a deletion in the middle of a run stops it and leaves no objects."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup.engine.failpoints import armed
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    FAST,
    OperatorThread,
    backup_object,
    gone,
    phase_is,
    wait_for,
    waiting_with,
)

SLOW_DOCS = 120_000


def _load(mongo_uri: str, documents: int) -> str:
    name = "slow_" + uuid.uuid4().hex[:8]
    client: MongoClient[Any] = MongoClient(mongo_uri)
    try:
        for coll in ("a", "b", "c"):
            client[name][coll].insert_many([{"n": i, "p": "z" * 300} for i in range(documents // 3)])
    finally:
        client.close()
    return name  # left in place: the session's server is thrown away, and dropping it is slow


@pytest.fixture(scope="module")
def slow_db(mongo_uri: str) -> str:
    """Enough documents that a backup with parallelism 1 takes several seconds even on a fast,
    idle machine (18k documents once took 0.6 s: too short to watch the run and queue another)."""
    return _load(mongo_uri, SLOW_DOCS)


@pytest.fixture
def brief_db(mongo_uri: str) -> str:
    """A backup of a good fraction of a second: long enough to be deleted while it runs."""
    return _load(mongo_uri, 18_000)


def test_runs_beyond_the_limit_wait_queued(
    kube: KubeEmulator, mongo_secret: str, slow_db: str, tmp_path: Path
) -> None:
    one_at_a_time = dataclasses.replace(FAST, max_concurrent_runs=1)
    with OperatorThread(kube.url, one_at_a_time):
        kube.apply(backup_object("first", str(tmp_path), [f"{slow_db}.*"], parallelism=1))
        wait_for(kube, "mongobackups", "first", phase_is("Running"), what="first Running")
        # progress reaches the status while the run goes on (throttled patches)
        running = wait_for(
            kube,
            "mongobackups",
            "first",
            lambda o: 0 < ((o["status"].get("progress") or {}).get("documentsDone") or 0) < SLOW_DOCS,
            what="progress while Running",
        )
        progress = running["status"]["progress"]
        assert running["status"]["phase"] == "Running"
        # the planner counts nothing before the first write (issue 10): until every count has
        # arrived the totals are partial, and there is no percent and no ETA to mislead
        assert 0 <= progress["documentsTotal"] <= SLOW_DOCS
        if progress["totalsKnown"]:
            assert progress["documentsTotal"] == SLOW_DOCS and 0 <= progress["percent"] < 100
        else:
            assert progress.get("percent") is None and progress.get("eta") is None, progress
        assert progress["rate"].endswith("/s")
        kube.apply(backup_object("second", str(tmp_path), [f"{slow_db}.*"], parallelism=1))
        queued = wait_for(kube, "mongobackups", "second", waiting_with("Queued"))
        assert queued["status"]["phase"] == "Pending"
        for name in ("first", "second"):
            done = wait_for(kube, "mongobackups", name, phase_is("Completed", "Failed"), timeout=60)
            assert done["status"]["phase"] == "Completed", done["status"]


def test_deleting_a_running_backup_stops_it_and_leaves_nothing(
    kube: KubeEmulator, operator: OperatorThread, mongo_secret: str, brief_db: str, tmp_path: Path
) -> None:
    kube.apply(backup_object("short-lived", str(tmp_path), [f"{brief_db}.*"], parallelism=1))
    running = wait_for(kube, "mongobackups", "short-lived", phase_is("Running"), what="Running")
    # while it runs, the finalizer keeps the object until the run has stopped
    assert "mongobackup.io/finalizer" in running["metadata"].get("finalizers", [])
    kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/short-lived")
    gone(kube, "mongobackups", "short-lived")
    folder = tmp_path / "short-lived"
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]


def test_deleting_a_backup_while_it_plans_stops_it_even_when_the_driver_drops_the_cancel(
    kube: KubeEmulator, operator: OperatorThread, mongo_secret: str, brief_db: str, tmp_path: Path
) -> None:
    """A deletion early in a run once left a complete backup behind: on Python 3.11, PyMongo's
    `asyncio.wait_for` (connecting, sending a command) drops a cancellation that arrives as the
    awaited step completes, and the run went on to write its manifest after the object was
    gone. Here the run is held in planning until the deletion cancels it, and that step then
    drops the cancellation just as the driver does: the run must still stop and clean up."""
    planning = threading.Event()

    async def drop_the_cancellation(context: dict[str, Any]) -> None:
        if planning.is_set():
            return
        planning.set()
        try:
            await asyncio.Event().wait()  # until the deletion cancels the run
        except asyncio.CancelledError:
            return  # dropped, as asyncio.wait_for does on 3.11 when its operation completes

    with armed("backup.plan", drop_the_cancellation):
        kube.apply(backup_object("short-lived", str(tmp_path), [f"{brief_db}.*"], parallelism=1))
        assert planning.wait(60), "the run never reached planning"
        kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/short-lived")
        gone(kube, "mongobackups", "short-lived")
    folder = tmp_path / "short-lived"
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]
