"""Cancel: `kubectl annotate mbk NAME mongobackup.io/cancel=true` (or mrs) stops a run safely.
The phase becomes Cancelled (final, with a Cancelled condition and event) only after the run
has undone what it wrote: a backup leaves no object, a restore leaves every target as it was
and no temporary collection. Runs are held at a chosen step by a failpoint hook, never raced."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup.api import CANCEL_ANNOTATION
from mongo_backup.engine.failpoints import armed
from mongo_backup.engine.journal import RUNS, temp_name
from mongo_backup.engine.lock import LockInfo
from mongo_backup.engine.namespaces import JOURNAL_DATABASE
from mongo_backup.runner.restore import run_id_of
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    condition,
    events_of,
    get,
    gone,
    path_of,
    phase_is,
    restore_object,
    wait_for,
)

FINAL = phase_is("Completed", "Failed", "Cancelled")


def cancel(kube: KubeEmulator, plural: str, name: str) -> None:
    kube.api(
        "PATCH",
        path_of(plural, name),
        {"metadata": {"annotations": {CANCEL_ANNOTATION: "true"}}},
        content_type="application/merge-patch+json",
    )


class Hold:
    """A failpoint hook that holds the run at its `nth` arrival until the run is cancelled."""

    def __init__(self, nth: int = 1) -> None:
        self.nth = nth
        self.arrivals = 0
        self.reached = threading.Event()

    async def __call__(self, context: dict[str, Any]) -> None:
        self.arrivals += 1
        if self.arrivals == self.nth:
            self.reached.set()
            await asyncio.Event().wait()


def stored_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def temporaries(client: MongoClient[Any], db: str) -> list[str]:
    return sorted(n for n in client[db].list_collection_names() if n.startswith("__mbtmp_"))


def contents(client: MongoClient[Any], db: str, coll: str) -> list[dict[str, Any]]:
    return list(client[db][coll].find({}, sort=[("_id", 1)]))


def old_targets(client: MongoClient[Any], target: str) -> dict[str, list[dict[str, Any]]]:
    """Collections a and b of `target` holding data of their own: what a restore must not lose."""
    for coll in ("a", "b"):
        client[target][coll].insert_many([{"_id": i, "old": coll} for i in range(7)])
    return {coll: contents(client, target, coll) for coll in ("a", "b")}


def assert_as_it_was(client: MongoClient[Any], target: str, before: dict[str, list[dict[str, Any]]]) -> None:
    """Every target holds what it held, no temporary collection is left, no journal entry."""
    assert {coll: contents(client, target, coll) for coll in ("a", "b")} == before
    assert temporaries(client, target) == []
    assert client[JOURNAL_DATABASE][RUNS].count_documents({}) == 0


def assert_cancelled(kube: KubeEmulator, plural: str, name: str, says: str) -> dict[str, Any]:
    obj = wait_for(kube, plural, name, FINAL, what="a final phase")
    status = obj["status"]
    assert status["phase"] == "Cancelled", status
    cancelled = condition(obj, "Cancelled")
    assert cancelled is not None and cancelled["status"] == "True", status["conditions"]
    assert says in cancelled["message"], cancelled["message"]
    assert "error" not in status or status["error"] is None
    events = [e for e in events_of(kube, name) if e["reason"] == "Cancelled"]
    assert len(events) == 1 and events[0]["type"] == "Normal", events
    return obj


@pytest.fixture
def source_db(sync_mongo: MongoClient[Any], dbname: str) -> Iterator[str]:
    for coll in ("a", "b"):
        sync_mongo[dbname][coll].insert_many([{"_id": i, "new": coll} for i in range(300)])
    yield dbname


def test_a_cancelled_backup_deletes_what_it_wrote_and_is_never_restored(
    kube: KubeEmulator, operator: OperatorThread, mongo_secret: str, source_db: str, tmp_path: Path
) -> None:
    hold = Hold()
    with armed("backup.data", hold):
        kube.apply(backup_object("nightly", str(tmp_path), [f"{source_db}.*"], parallelism=1))
        assert hold.reached.wait(60), "the backup never reached its data"
        assert stored_files(tmp_path / "nightly"), "the held run had written nothing yet"
        cancel(kube, "mongobackups", "nightly")
        assert_cancelled(kube, "mongobackups", "nightly", "were deleted")
    assert stored_files(tmp_path / "nightly") == []

    kube.apply(restore_object("from-cancelled", "nightly", [{"from": f"{source_db}.*", "to": "x_.*"}]))
    failed = wait_for(kube, "mongorestores", "from-cancelled", FINAL)["status"]
    assert failed["phase"] == "Failed", failed
    assert "was cancelled" in failed["error"]


def test_a_pending_backup_is_cancelled_without_running(
    kube: KubeEmulator, operator: OperatorThread, source_db: str, tmp_path: Path
) -> None:
    """Its Secret does not exist: the run waits in Pending until it is cancelled."""
    kube.apply(backup_object("waiting", str(tmp_path), [f"{source_db}.*"], secret_name="missing"))
    wait_for(kube, "mongobackups", "waiting", phase_is("Pending"))
    cancel(kube, "mongobackups", "waiting")
    obj = assert_cancelled(kube, "mongobackups", "waiting", "had not started")
    assert obj["status"].get("attempts") in (None, 0)
    assert not (tmp_path / "waiting").exists()


def test_a_cancelled_restore_rolls_back_its_swaps_and_drops_its_temporaries(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    source_db: str,
    tmp_path: Path,
) -> None:
    kube.apply(backup_object("full", str(tmp_path), [f"{source_db}.*"]))
    assert wait_for(kube, "mongobackups", "full", FINAL)["status"]["phase"] == "Completed"
    target = f"{source_db}_t"
    before = old_targets(sync_mongo, target)

    hold = Hold(nth=2)  # the first collection is swapped in, the second one is not
    with armed("restore.swap", hold):
        kube.apply(
            restore_object(
                "over", "full", [{"from": f"{source_db}.*", "to": f"{target}.*"}], onConflict="Drop"
            )
        )
        assert hold.reached.wait(60), "the restore never reached its second swap"
        cancel(kube, "mongorestores", "over")
        assert_cancelled(kube, "mongorestores", "over", "rolled back: every target is as it was")
    assert_as_it_was(sync_mongo, target, before)


def test_a_backup_cancelled_after_its_operator_was_lost_deletes_what_that_attempt_left(
    kube: KubeEmulator, mongo_secret: str, source_db: str, tmp_path: Path
) -> None:
    hold = Hold()
    with armed("backup.data", hold):
        kube.apply(backup_object("orphan", str(tmp_path), [f"{source_db}.*"], parallelism=1))
        first = OperatorThread(kube.url).start()
        try:
            assert hold.reached.wait(60), "the backup never reached its data"
        finally:
            first.stop()
    lost = get(kube, "mongobackups", "orphan")
    assert lost is not None and lost["status"]["phase"] == "Running"
    # what a killed operator would have left: its lock (owned by the object's uid) and an object
    folder = tmp_path / "orphan"
    (folder / source_db).mkdir(parents=True, exist_ok=True)
    (folder / "lock.json").write_bytes(LockInfo.mine(lost["metadata"]["uid"], "backup").to_json())
    (folder / source_db / "a.bson.zst").write_bytes(b"partial")

    cancel(kube, "mongobackups", "orphan")
    with OperatorThread(kube.url):
        assert_cancelled(kube, "mongobackups", "orphan", "lost attempt wrote were deleted")
    assert stored_files(folder) == []


def test_a_restore_cancelled_after_its_operator_was_lost_is_rolled_back(
    kube: KubeEmulator, mongo_secret: str, sync_mongo: MongoClient[Any], source_db: str, tmp_path: Path
) -> None:
    """The lost attempt had swapped `a` in and moved `b` aside when its operator died: its
    journal entry still looks alive (fresh heartbeat), but it is an attempt of this very run."""
    target = f"{source_db}_t"
    before = old_targets(sync_mongo, target)
    with OperatorThread(kube.url):
        kube.apply(backup_object("full", str(tmp_path), [f"{source_db}.*"]))
        assert wait_for(kube, "mongobackups", "full", FINAL)["status"]["phase"] == "Completed"
    restore = restore_object(
        "lost", "full", [{"from": f"{source_db}.*", "to": f"{target}.*"}], onConflict="Drop"
    )
    created = kube.apply(restore)
    lost_attempt = {"status": {"phase": "Running", "attempts": 1}}
    kube.api(
        "PATCH", path_of("mongorestores", "lost") + "/status", lost_attempt, "application/merge-patch+json"
    )
    run = run_id_of(created["metadata"]["uid"])
    temp_a, temp_b = (temp_name(run, "a1b2c3", f"{target}.{c}") for c in ("a", "b"))
    for coll, temp in (("a", temp_a), ("b", temp_b)):
        sync_mongo[target][temp].insert_many([{"_id": i, "new": coll} for i in range(300)])
        sync_mongo.admin.command({"renameCollection": f"{target}.{coll}", "to": f"{target}.{temp}_old"})
    sync_mongo.admin.command({"renameCollection": f"{target}.{temp_a}", "to": f"{target}.a"})
    now = datetime.now(UTC)
    swaps = [
        {"db": target, "target": c, "temp": t, "kept": f"{t}_old"} for c, t in (("a", temp_a), ("b", temp_b))
    ]
    sync_mongo[JOURNAL_DATABASE][RUNS].insert_one(
        {
            "_id": run,
            "attempt": "a1b2c3",
            "host": "lost-operator-pod",
            "pid": 1,
            "state": "swapping",
            "databases": [target],
            "swaps": swaps,
            "startedAt": now,
            "heartbeat": now,
        }
    )

    cancel(kube, "mongorestores", "lost")
    with OperatorThread(kube.url):
        assert_cancelled(kube, "mongorestores", "lost", "every target is as it was")
    assert_as_it_was(sync_mongo, target, before)


def test_deleting_a_running_restore_leaves_every_target_as_it_was(
    kube: KubeEmulator,
    operator: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    source_db: str,
    tmp_path: Path,
) -> None:
    """A deletion stops the run as a cancel does, before the finalizer lets the object go."""
    kube.apply(backup_object("full", str(tmp_path), [f"{source_db}.*"]))
    assert wait_for(kube, "mongobackups", "full", FINAL)["status"]["phase"] == "Completed"
    target = f"{source_db}_t"
    before = old_targets(sync_mongo, target)

    hold = Hold(nth=2)
    with armed("restore.swap", hold):
        kube.apply(
            restore_object(
                "doomed", "full", [{"from": f"{source_db}.*", "to": f"{target}.*"}], onConflict="Drop"
            )
        )
        assert hold.reached.wait(60), "the restore never reached its second swap"
        kube.api("DELETE", path_of("mongorestores", "doomed"))
        gone(kube, "mongorestores", "doomed")
    assert_as_it_was(sync_mongo, target, before)
