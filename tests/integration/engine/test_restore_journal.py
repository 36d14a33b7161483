"""The restore journal (engine/journal.py), seen from the server: what a dead run left is
settled by the next restore, what a live run (on another host) owns is never touched.

A dead or live run of another machine is written into the journal here as such a run would
have written it; the collections it would have left are made by hand, step by step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import (
    BackupOptions,
    RestoreConflict,
    RestoreInProgress,
    RestoreOptions,
    run_backup,
    run_restore,
)
from mongo_backup.engine.journal import CLAIMS, LEASE_SECONDS, RUNS, temp_name
from mongo_backup.engine.namespaces import JOURNAL_DATABASE
from mongo_backup.storage import Storage

from .conftest import raw_documents

Client = AsyncMongoClient[Any]


async def _backup(mongo: Client, store: Storage, dbname: str) -> Storage:
    for coll in ("a", "b"):
        await mongo[dbname][coll].insert_many([{"_id": i, "new": coll} for i in range(200)])
    backup = store.child("b")
    await run_backup(mongo, backup, BackupOptions(include=[f"{dbname}.*"]))
    return backup


def _into(dbname: str, **extra: Any) -> RestoreOptions:
    return RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_t.*"], **extra)


async def _old_data(mongo: Client, target: str) -> dict[str, list[bytes]]:
    for coll in ("a", "b"):
        await mongo[target][coll].insert_many([{"_id": i, "old": coll} for i in range(7)])
    return {coll: await raw_documents(mongo, f"{target}.{coll}") for coll in ("a", "b")}


async def _enter_run(
    mongo: Client, run: str, databases: list[str], *, state: str, swaps: list[dict[str, Any]], age: float
) -> None:
    """A run of another host, as it wrote itself into the journal `age` seconds ago."""
    beat = datetime.now(UTC) - timedelta(seconds=age)
    await mongo[JOURNAL_DATABASE][RUNS].insert_one(
        {
            "_id": run,
            "attempt": "a1b2c3",
            "host": "another-host.example",
            "pid": 1,
            "state": state,
            "databases": databases,
            "swaps": swaps,
            "startedAt": beat,
            "heartbeat": beat,
        }
    )


async def _journal(mongo: Client, run: str) -> tuple[int, int]:
    journal = mongo[JOURNAL_DATABASE]
    return (
        await journal[RUNS].count_documents({"_id": run}),
        await journal[CLAIMS].count_documents({"run": run}),
    )


async def _temporaries(mongo: Client, db: str) -> list[str]:
    return sorted(n for n in await mongo[db].list_collection_names() if n.startswith("__mbtmp_"))


async def test_a_dead_run_killed_mid_swap_is_rolled_back_before_anything_else(
    mongo: Client, store: Storage, dbname: str
) -> None:
    """Promise: a restore killed between two renames of its swap phase (here: `a` swapped in,
    `b` moved aside) is rolled back by the next restore into the same database, even one that
    then refuses to write: every target holds its old data again."""
    backup = await _backup(mongo, store, dbname)
    target = f"{dbname}_t"
    before = await _old_data(mongo, target)
    run = "deadswap1"
    temp_a, temp_b = (temp_name(run, "a1b2c3", f"{target}.{c}") for c in ("a", "b"))
    # what the dead run left: a's old data kept aside and the new data swapped in; b moved aside
    await mongo[target][temp_a].insert_many([{"_id": i, "new": "a"} for i in range(200)])
    await mongo[target][temp_b].insert_many([{"_id": i, "new": "b"} for i in range(200)])
    admin = mongo.admin
    for coll, temp in (("a", temp_a), ("b", temp_b)):
        await admin.command({"renameCollection": f"{target}.{coll}", "to": f"{target}.{temp}_old"})
    await admin.command({"renameCollection": f"{target}.{temp_a}", "to": f"{target}.a"})
    swaps = [
        {"db": target, "target": c, "temp": t, "kept": f"{t}_old"} for c, t in (("a", temp_a), ("b", temp_b))
    ]
    await _enter_run(mongo, run, [target], state="swapping", swaps=swaps, age=LEASE_SECONDS + 60)

    with pytest.raises(RestoreConflict, match="not empty"):
        await run_restore(mongo, backup, _into(dbname))
    assert {c: await raw_documents(mongo, f"{target}.{c}") for c in ("a", "b")} == before
    assert await _temporaries(mongo, target) == []
    assert await _journal(mongo, run) == (0, 0)


async def test_a_dead_run_that_committed_is_completed(mongo: Client, store: Storage, dbname: str) -> None:
    """Promise: a restore killed after its commit stays restored: the next run only drops the
    targets it had kept aside."""
    backup = await _backup(mongo, store, dbname)
    target = f"{dbname}_t"
    await _old_data(mongo, target)
    run = "deadcommit1"
    temp_a = temp_name(run, "a1b2c3", f"{target}.a")
    await mongo.admin.command({"renameCollection": f"{target}.a", "to": f"{target}.{temp_a}_old"})
    await mongo[target].a.insert_many([{"_id": i, "new": "a"} for i in range(200)])
    swaps = [{"db": target, "target": "a", "temp": temp_a, "kept": f"{temp_a}_old"}]
    await _enter_run(mongo, run, [target], state="committed", swaps=swaps, age=LEASE_SECONDS + 60)

    result = await run_restore(mongo, backup, _into(dbname, include=[f"{dbname}.b"], on_conflict="drop"))
    assert [c.target for c in result.collections] == [f"{target}.b"]
    assert await mongo[target].a.count_documents({"new": "a"}) == 200
    assert await _temporaries(mongo, target) == []
    assert await _journal(mongo, run) == (0, 0)
    assert any("deadcommit1" in note and "completed" in note for note in result.notes)


async def test_a_live_run_of_another_host_keeps_its_target_and_its_temporaries(
    mongo: Client, store: Storage, dbname: str
) -> None:
    """Promise: a restore never touches what a live restore (fresh heartbeat, another host)
    writes: its claimed target stops the second restore before it writes anything, and its
    temporary collections survive the second restore's cleanup."""
    backup = await _backup(mongo, store, dbname)
    target = f"{dbname}_t"
    run = "livealien1"
    temp_a = temp_name(run, "a1b2c3", f"{target}.a")
    await mongo[target][temp_a].insert_many([{"half": i} for i in range(50)])
    await _enter_run(mongo, run, [target], state="staging", swaps=[], age=1)
    await mongo[JOURNAL_DATABASE][CLAIMS].insert_one({"_id": f"{target}.a", "run": run, "attempt": "a1b2c3"})
    try:
        with pytest.raises(RestoreInProgress, match=f"{target}.a is being restored by another run"):
            await run_restore(mongo, backup, _into(dbname))
        assert await mongo[target].list_collection_names() == [temp_a]  # nothing of ours, theirs kept

        # another collection of the same database: restored, and the live run's temporary stays
        result = await run_restore(mongo, backup, _into(dbname, include=[f"{dbname}.b"]))
        assert result.verified == 1
        assert sorted(await mongo[target].list_collection_names()) == sorted(["b", temp_a])
        assert await mongo[target][temp_a].count_documents({}) == 50
    finally:
        await mongo[JOURNAL_DATABASE][RUNS].delete_one({"_id": run})
        await mongo[JOURNAL_DATABASE][CLAIMS].delete_many({"run": run})


async def test_a_kept_target_without_a_journal_is_never_dropped(
    mongo: Client, store: Storage, dbname: str
) -> None:
    """Promise: a replaced target kept aside (`..._old`) whose journal entry is gone holds user
    data: it is left in place and reported, while orphaned temporaries are dropped."""
    backup = await _backup(mongo, store, dbname)
    target = f"{dbname}_t"
    kept = temp_name("orphan1", "a1b2c3", f"{target}.a") + "_old"
    orphan = temp_name("orphan1", "a1b2c3", f"{target}.b")
    await mongo[target][kept].insert_many([{"precious": i} for i in range(5)])
    await mongo[target][orphan].insert_many([{"half": i} for i in range(5)])
    result = await run_restore(mongo, backup, _into(dbname))
    assert sorted(await mongo[target].list_collection_names()) == sorted(["a", "b", kept])
    assert await mongo[target][kept].count_documents({}) == 5
    assert any(kept in note and "left in place" in note for note in result.notes)


async def test_the_journal_is_never_backed_up(mongo: Client, store: Storage, dbname: str) -> None:
    """Promise: a full backup holds user data only, not the restores' journal."""
    await mongo[dbname].a.insert_one({"x": 1})
    await mongo[JOURNAL_DATABASE][RUNS].insert_one({"_id": "neverbackedup", "state": "staging"})
    try:
        result = await run_backup(mongo, store.child("full"), BackupOptions())
    finally:
        await mongo[JOURNAL_DATABASE][RUNS].delete_one({"_id": "neverbackedup"})
    assert not [c for c in result.collections if c.namespace.startswith(f"{JOURNAL_DATABASE}.")]
    assert f"{dbname}.a" in [c.namespace for c in result.collections]
