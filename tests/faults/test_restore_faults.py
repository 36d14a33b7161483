"""Restores under faults: kill -9 at every step, a failure between two swaps, a corrupt object,
Ctrl-C, two restores into one target, a rival run next to a live one, MongoDB cut off.

The promise under test (README, "Restore"): a restore is all or nothing across collections.
Every collection is staged into a temporary collection first and only then swapped in, under
a journal (`__mongo_backup.restore_runs` / `restore_claims`) that lets the next restore finish
or undo what a killed one left. So:

- a restore killed at any step before its commit leaves nothing that the next restore does
  not undo: the next restore, whatever it restores, first puts every target back as it was;
- a restore killed after its commit is finished by the next one (the replaced data dropped);
- a restore that fails or is interrupted before its commit leaves every target byte for byte
  as it was, with no temporary collection and no journal entry, and says so in one line;
  when it loses MongoDB before it has cleaned up, the next restore does, losing nothing;
- a second restore into a target that a live restore is writing stops at once (exit 3) and
  writes nothing; a restore never drops what a live restore is staging.

Each run is stopped at an exact step with a failpoint (`restore.plan`, `restore.data`,
`restore.indexes`, `restore.staged`, `restore.swap`, `restore.committed`: see
mongo_backup/engine/restore.py and journal.py), never with a sleep.

The data: a backup of four collections, restored with `--ns-from SRC.* --ns-to TGT.* --on-conflict
drop` into a database where `a`, `b` and `c` already hold other ("old") data, `d` does not exist
yet and `keep` is not in the backup. With `--parallel 1` collections are staged and swapped
largest first: a, b, c, d; `a` spans two insert batches, so `restore.data@1` is in the middle of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from mongo_backup.engine import BackupOptions, EngineError, RestoreOptions, run_backup, run_restore
from mongo_backup.engine.errors import (
    EXIT_CONFLICT,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    EXIT_SOURCE,
    RestoreConflict,
)
from mongo_backup.engine.failpoints import armed
from mongo_backup.storage import open_storage
from tests.support.cli_run import CliRun, cli_run, one_line_error, run_cli
from tests.support.mongo import split_documents
from tests.support.tcp_proxy import TcpProxy

Client = MongoClient[Any]
#: the names a user sees (README, FORMAT.md): a restore's temporary collections, the suffix of
#: a replaced target kept until the commit, and the journal
TEMP_PREFIX = "__mbtmp_"
KEPT_SUFFIX = "_old"
JOURNAL_DATABASE, RUNS, CLAIMS = "__mongo_backup", "restore_runs", "restore_claims"
#: per collection: (name, documents, size of its random payload); `a` is over 4 MiB of BSON
#: (two insert batches), and the stored sizes order the collections a > b > c > d
SOURCE_COLLECTIONS = (("a", 1_100, 4_096), ("b", 600, 96), ("c", 300, 96), ("d", 100, 96))
#: the target's own collections before any restore: a, b, c replaced by the restore, keep not in it
OLD_COLLECTIONS = (("a", 40), ("b", 30), ("c", 20), ("keep", 10))
#: short driver timeouts: a run that lost MongoDB ends within seconds (set in the URI)
SHORT_TIMEOUTS = "serverSelectionTimeoutMS=2000&connectTimeoutMS=2000&socketTimeoutMS=2000"
#: every CLI run of this module ends within this (SecantusDB restores the backup in a few seconds)
RUN_TIMEOUT = 120

# What a database holds: per collection, its shape (type, options, indexes) and its documents
# as the server's exact BSON bytes, sorted.
Snapshot = dict[str, dict[str, Any]]
Hook = Callable[[dict[str, Any]], Awaitable[None]]


# ---- reading a database ----------------------------------------------------------------------


def raw_documents(client: Client, db: str, name: str) -> list[bytes]:
    return sorted(doc for batch in client[db][name].find_raw_batches() for doc in split_documents(batch))


def snapshot(client: Client, db: str) -> Snapshot:
    """Every collection of `db` (temporaries included), byte for byte."""
    found: Snapshot = {}
    for info in client[db].list_collections():
        name = info["name"]
        indexes = [{k: v for k, v in ix.items() if k != "ns"} for ix in client[db][name].list_indexes()]
        found[name] = {
            "type": info.get("type"),
            "options": info.get("options"),
            "indexes": sorted(indexes, key=lambda ix: str(ix["name"])),
            "documents": raw_documents(client, db, name),
        }
    return found


def temporaries(client: Client, db: str) -> list[str]:
    return sorted(n for n in client[db].list_collection_names() if n.startswith(TEMP_PREFIX))


def user_collections(client: Client, db: str) -> list[str]:
    return sorted(n for n in client[db].list_collection_names() if not n.startswith(TEMP_PREFIX))


def journal_entries(client: Client, db: str) -> list[dict[str, Any]]:
    """The journal's runs and claims that concern database `db` (other tests' runs may be
    in the journal of the session's server: only this test's target counts)."""
    journal = client[JOURNAL_DATABASE]
    runs = list(journal[RUNS].find({"databases": db}))
    claims = list(journal[CLAIMS].find({"_id": {"$regex": f"^{db}\\."}}))
    return runs + claims


def assert_clean(client: Client, db: str) -> None:
    """No temporary collection in `db`, and no journal entry about it."""
    assert temporaries(client, db) == []
    assert journal_entries(client, db) == []


# ---- the backup and the target ---------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    path: Path
    source: str
    #: what the backed-up collections looked like: what a completed restore must leave
    collections: Snapshot

    @property
    def url(self) -> str:
        return f"file://{self.path}"


def _source_documents(name: str, count: int, payload: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{name}-{count}")  # the same bytes every run: a flipped byte does the same
    return [{"_id": i, "k": f"{name}{i}", "r": rng.randbytes(payload)} for i in range(count)]


async def _make_backup(uri: str, folder: Path, source: str) -> Snapshot:
    client: AsyncMongoClient[Any] = AsyncMongoClient(uri)
    try:
        for name, count, payload in SOURCE_COLLECTIONS:
            await client[source][name].insert_many(_source_documents(name, count, payload))
        await client[source]["b"].create_index("k", unique=True)
        await client[source]["c"].create_index([("k", 1), ("_id", -1)], name="k_id")
        storage = open_storage(f"file://{folder}")
        try:
            await run_backup(client, storage, BackupOptions(include=[f"{source}.*"]))
        finally:
            await storage.close()
    finally:
        await client.close()
    sync: Client = MongoClient(uri)
    with sync:
        taken = snapshot(sync, source)
        sync.drop_database(source)
    return taken


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Backup:
    """The module's backup (never changed: a test that damages one works on a copy)."""
    source = "src_" + uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("restore-faults") / "nightly"
    collections = asyncio.run(_make_backup(mongo_uri, folder, source))
    assert sorted(collections) == [name for name, _, _ in SOURCE_COLLECTIONS]
    return Backup(folder, source, collections)


@pytest.fixture
def client(mongo_uri: str) -> Iterator[Client]:
    started: Client = MongoClient(mongo_uri)
    with started:
        yield started


@pytest.fixture
def old(client: Client, dbname: str) -> Snapshot:
    """The target database `dbname` with its own data, as it was before any restore."""
    for name, count in OLD_COLLECTIONS:
        client[dbname][name].insert_many([{"_id": i, "old": name, "v": i * 7} for i in range(count)])
    client[dbname]["a"].create_index("v", name="old_v")
    taken = snapshot(client, dbname)
    assert sorted(taken) == sorted(name for name, _ in OLD_COLLECTIONS)
    return taken


def restored(backup: Backup, old: Snapshot) -> Snapshot:
    """What the target must hold after a completed restore: the backup's collections, and
    the target's own collection that is not in the backup, untouched."""
    return {**backup.collections, "keep": old["keep"]}


def restore_args(
    uri: str, backup: Backup, target: str, *, conflict: str = "drop", include: str | None = None
) -> list[str]:
    args = ["--quiet", "restore", "--uri", uri, "--from", backup.url]
    args += ["--ns-from", f"{backup.source}.*", "--ns-to", f"{target}.*", "--on-conflict", conflict]
    args += ["--parallel", "1", "--insert-workers", "1"]
    if include:
        args += ["--ns-include", f"{backup.source}.{include}"]
    return args


def succeeds(args: list[str]) -> None:
    done = run_cli(args, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.output


# ---- kill -9 ---------------------------------------------------------------------------------

#: where a restore is killed, and which of the target's own names exist right after the kill
#: (the rest are temporaries and kept copies)
KILL_POINTS = {
    "while-planning": ("restore.plan", ["a", "b", "c", "keep"]),
    "mid-data": ("restore.data@1", ["a", "b", "c", "keep"]),
    "before-the-indexes": ("restore.indexes", ["a", "b", "c", "keep"]),
    "all-staged": ("restore.staged", ["a", "b", "c", "keep"]),
    # a moved aside, nothing swapped in yet
    "first-swap": ("restore.swap@1", ["b", "c", "keep"]),
    # a swapped in, b moved aside
    "second-swap": ("restore.swap@2", ["a", "c", "keep"]),
}


def kill_at(point: str, args: list[str]) -> None:
    killed = CliRun.start(args, failpoints=f"{point}=kill").finish(RUN_TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, killed.output


@pytest.mark.parametrize("point, left", list(KILL_POINTS.values()), ids=list(KILL_POINTS))
def test_a_restore_killed_at_any_step_is_completed_by_running_it_again(
    mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot, point: str, left: list[str]
) -> None:
    """Promise: whatever step a restore is killed at (kill -9: no cleanup runs), running the
    same restore again succeeds and leaves exactly the backup's data in every target, the
    target's other collections untouched, no temporary collection and no journal entry."""
    args = restore_args(mongo_uri, backup, dbname)
    kill_at(point, args)
    assert user_collections(client, dbname) == left  # the kill left the targets half-way
    if point == "restore.swap@2":
        assert snapshot(client, dbname)["a"] == backup.collections["a"]  # swapped in, not committed
    assert journal_entries(client, dbname) or point == "restore.plan"  # the dead run is on record

    succeeds(args)
    assert snapshot(client, dbname) == restored(backup, old)
    assert_clean(client, dbname)


@pytest.mark.parametrize("point", ["restore.staged", "restore.swap@1", "restore.swap@2"])
@pytest.mark.parametrize("next_run", ["conflicting", "elsewhere"])
def test_the_next_restore_first_rolls_back_a_restore_killed_before_its_commit(
    mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot, point: str, next_run: str
) -> None:
    """Promise: a restore killed before its commit (here between two swaps: one target
    already replaced, the next one moved aside) is rolled back by the next restore on the
    server, whatever that one restores: right after a restore that refuses the same target
    (`--on-conflict fail`, exit 3, one line) or after a restore into another database,
    every target holds its old data again byte for byte, and no temporary collection and no
    journal entry of the dead run remain."""
    kill_at(point, restore_args(mongo_uri, backup, dbname))
    assert snapshot(client, dbname) != old

    if next_run == "conflicting":
        done = run_cli(restore_args(mongo_uri, backup, dbname, conflict="fail"), timeout=RUN_TIMEOUT)
        assert done.returncode == EXIT_CONFLICT, done.output
        assert "already exist and are not empty; nothing was written" in one_line_error(done)
    else:
        elsewhere = f"{dbname}_other"
        succeeds(restore_args(mongo_uri, backup, elsewhere))
        assert snapshot(client, elsewhere) == backup.collections
        assert_clean(client, elsewhere)
        client.drop_database(elsewhere)
    assert snapshot(client, dbname) == old
    assert_clean(client, dbname)


def test_the_next_restore_finishes_a_restore_killed_after_its_commit(
    mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot
) -> None:
    """Promise: a restore killed right after its commit counts as done: the next restore on
    the server (here one that then refuses the target, exit 3) finishes it. Every target
    holds the backup's data, and the replaced data it kept until the commit is dropped."""
    kill_at("restore.committed", restore_args(mongo_uri, backup, dbname))
    kept = [n for n in temporaries(client, dbname) if n.endswith(KEPT_SUFFIX)]
    assert len(kept) == 3, temporaries(client, dbname)  # a, b and c, kept until the commit was settled

    done = run_cli(restore_args(mongo_uri, backup, dbname, conflict="fail"), timeout=RUN_TIMEOUT)
    assert done.returncode == EXIT_CONFLICT, done.output
    one_line_error(done)
    assert snapshot(client, dbname) == restored(backup, old)
    assert_clean(client, dbname)


# ---- failures and Ctrl-C before the commit ---------------------------------------------------


def fail_on_the_second_swap(swaps: list[str]) -> Hook:
    """A `restore.swap` hook: the second swap fails (the first target is already replaced,
    the second one moved aside)."""

    async def hook(context: dict[str, Any]) -> None:
        swaps.append(str(context["ns"]))
        if len(swaps) == 2:
            raise EngineError("injected: the server refused a rename")

    return hook


def in_process_options(backup: Backup, target: str, **options: Any) -> RestoreOptions:
    return RestoreOptions(
        ns_from=[f"{backup.source}.*"], ns_to=[f"{target}.*"], parallel=1, insert_workers=1, **options
    )


async def test_a_failure_between_two_swaps_puts_every_target_back(
    mongo: AsyncMongoClient[Any], mongo_uri: str, backup: Backup, dbname: str, old: Snapshot
) -> None:
    """Promise: when a restore fails in the middle of its swaps (one target already replaced,
    the next one moved aside), the error says the swaps were rolled back, and every target
    is byte for byte as it was: no temporary collection, no journal entry."""
    swaps: list[str] = []
    storage = open_storage(backup.url)
    try:
        with armed("restore.swap", fail_on_the_second_swap(swaps)):
            with pytest.raises(EngineError) as failed:
                await run_restore(mongo, storage, in_process_options(backup, dbname, on_conflict="drop"))
    finally:
        await storage.close()
    assert swaps == [f"{dbname}.a", f"{dbname}.b"]
    message = str(failed.value)
    assert message.startswith("injected: the server refused a rename; "), message
    assert "were rolled back: every target is as it was" in message, message
    assert "\n" not in message
    client: Client = MongoClient(mongo_uri)
    with client:
        assert snapshot(client, dbname) == old
        assert_clean(client, dbname)


class CutAfterDropping(monitoring.CommandListener):
    """Cuts the proxy as soon as a collection whose name ends with `suffix` is dropped."""

    def __init__(self, proxy: TcpProxy, suffix: str) -> None:
        self.proxy = proxy
        self.suffix = suffix
        self.request: int | None = None
        self.cut = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "drop" and str(event.command.get("drop")).endswith(self.suffix):
            self.request = event.request_id

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id == self.request and not self.cut:
            self.cut = True
            self.proxy.cut()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_rollback_cut_off_while_it_drops_the_temporaries_loses_nothing(
    proxy: TcpProxy, mongo: AsyncMongoClient[Any], mongo_uri: str, backup: Backup, dbname: str, old: Snapshot
) -> None:
    """Promise: when MongoDB is lost while a failed restore cleans up (its swaps already
    rolled back, its temporary collections half dropped), the error says the next restore
    will finish the cleanup; the next attempt of that restore (the same run id, as the
    operator retries) does, and every target still holds its old data byte for byte."""
    run_id = "cut" + uuid.uuid4().hex[:8]
    # the temporary of target a (named after the target's hash) is the one whose drop is cut off
    listener = CutAfterDropping(proxy, hashlib.sha1(f"{dbname}.a".encode()).hexdigest()[:12])
    cut_off: AsyncMongoClient[Any] = AsyncMongoClient(proxy.uri(SHORT_TIMEOUTS), event_listeners=[listener])
    storage = open_storage(backup.url)
    try:
        with armed("restore.swap", fail_on_the_second_swap([])):
            with pytest.raises(EngineError, match="no target was changed; the next restore into") as failed:
                options = in_process_options(backup, dbname, on_conflict="drop", run_id=run_id)
                await run_restore(cut_off, storage, options)
        assert listener.cut, failed.value  # MongoDB was lost in the middle of the cleanup
        client: Client = MongoClient(mongo_uri)
        with client:
            now = snapshot(client, dbname)
            assert {name: now[name] for name in now if not name.startswith(TEMP_PREFIX)} == old
            assert journal_entries(client, dbname)  # the cleanup is left to the next attempt

            with pytest.raises(RestoreConflict):  # it settles the lost attempt, then refuses
                await run_restore(mongo, storage, in_process_options(backup, dbname, run_id=run_id))
            assert snapshot(client, dbname) == old
            assert_clean(client, dbname)
    finally:
        await cut_off.close()
        await storage.close()


def test_a_corrupt_collection_leaves_the_collections_staged_before_it_untouched(
    mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot, tmp_path: Path
) -> None:
    """Promise: when one collection of a backup turns out to be corrupt during a restore
    (after others were read and staged fine), the restore fails with the integrity exit code
    and one line naming the object, and no target is changed: the collections that were
    staged before it still hold their old data, byte for byte."""
    damaged = Backup(tmp_path / "damaged", backup.source, backup.collections)
    shutil.copytree(backup.path, damaged.path)
    obj = damaged.path / backup.source / "c.bson.zst"  # staged third: after a and b
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))

    done = run_cli(restore_args(mongo_uri, damaged, dbname), timeout=RUN_TIMEOUT)
    assert done.returncode == EXIT_INTEGRITY, done.output
    line = one_line_error(done)
    assert f"{backup.source}/c.bson.zst" in line and "no target was changed" in line, line
    assert snapshot(client, dbname) == old
    assert_clean(client, dbname)


@pytest.mark.parametrize("point", ["restore.data@1", "restore.swap@2"], ids=["mid-data", "mid-swap"])
def test_ctrl_c_before_the_commit_leaves_every_target_as_it_was(
    mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot, point: str
) -> None:
    """Promise: a restore interrupted with Ctrl-C in the middle of its data or of its swaps
    exits with 130 and leaves every target byte for byte as it was, with no temporary
    collection and no journal entry."""
    with cli_run(restore_args(mongo_uri, backup, dbname), pause_at=point) as run:
        run.wait_paused()
        assert temporaries(client, dbname)  # it has written something to undo
        done = run.interrupt()
    assert done.returncode == EXIT_INTERRUPTED, done.output
    one_line_error(done)
    assert snapshot(client, dbname) == old
    assert_clean(client, dbname)


# ---- two restores at once --------------------------------------------------------------------


def test_a_second_restore_into_a_target_being_restored_stops_at_once(
    mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot
) -> None:
    """Promise: a restore into a target that another live restore is writing stops at once
    with exit 3 and one line saying so, and writes nothing (not even a temporary
    collection); the first restore then completes."""
    args = restore_args(mongo_uri, backup, dbname)
    with cli_run(args, pause_at="restore.staged") as first:
        first.wait_paused()
        during = snapshot(client, dbname)  # the first run's staged temporaries included
        second = run_cli(args, timeout=RUN_TIMEOUT)
        assert first.proc.poll() is None  # the second ended while the first still ran
        assert second.returncode == EXIT_CONFLICT, second.output
        line = one_line_error(second)
        assert "is being restored by another run" in line and f"pid {first.proc.pid}" in line, line
        assert snapshot(client, dbname) == during
        first.resume()
        done = first.finish(RUN_TIMEOUT)
    assert done.returncode == 0, done.output
    assert snapshot(client, dbname) == restored(backup, old)
    assert_clean(client, dbname)


def test_a_restore_never_drops_what_a_live_restore_is_staging(
    mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot
) -> None:
    """Promise: a restore cleans up the temporary collections that dead restores left in its
    target database (a killed run's, and one no journal knows of), but never those of a live
    restore staging another collection of that database; both restores complete."""
    kill_at("restore.data@1", restore_args(mongo_uri, backup, dbname, include="c"))
    (dead,) = temporaries(client, dbname)
    orphan = f"{TEMP_PREFIX}0ddba11_1_0123456789ab"  # an older version's, without a journal entry
    client[dbname][orphan].insert_one({"_id": 1})
    with cli_run(restore_args(mongo_uri, backup, dbname, include="a"), pause_at="restore.data@1") as first:
        first.wait_paused()
        (staging,) = set(temporaries(client, dbname)) - {dead, orphan}
        written = raw_documents(client, dbname, staging)
        assert 0 < len(written) < len(backup.collections["a"]["documents"])  # a's first batch only

        succeeds(restore_args(mongo_uri, backup, dbname, include="b"))
        assert temporaries(client, dbname) == [staging]
        assert raw_documents(client, dbname, staging) == written
        first.resume()
        done = first.finish(RUN_TIMEOUT)
    assert done.returncode == 0, done.output
    expected = {**old, "a": backup.collections["a"], "b": backup.collections["b"]}
    assert snapshot(client, dbname) == expected
    assert_clean(client, dbname)


# ---- MongoDB cut off -------------------------------------------------------------------------


def test_a_connection_cut_mid_data_changes_no_target(
    proxy: TcpProxy, mongo_uri: str, client: Client, backup: Backup, dbname: str, old: Snapshot
) -> None:
    """Promise: when the connection to MongoDB is cut in the middle of a restore's data, the
    run ends with one line saying MongoDB was lost (exit 6) and that the next restore will
    undo what it wrote, and no target is changed; the next restore cleans up and completes."""
    args = restore_args(proxy.uri(SHORT_TIMEOUTS), backup, dbname)
    with cli_run(args, pause_at="restore.data@1") as run:
        run.wait_paused()
        proxy.cut()
        run.resume()
        done = run.finish(RUN_TIMEOUT)
    assert done.returncode == EXIT_SOURCE, done.output
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("mongo-backup restore: "), done.stderr
    assert "connection to MongoDB lost" in lines[-1], lines[-1]
    assert len(lines) == 1, done.stderr
    assert f"no target was changed; the next restore into {dbname} will drop" in lines[-1], lines[-1]
    now = snapshot(client, dbname)
    assert {name: now[name] for name in now if not name.startswith(TEMP_PREFIX)} == old

    succeeds(restore_args(mongo_uri, backup, dbname))
    assert snapshot(client, dbname) == restored(backup, old)
    assert_clean(client, dbname)
