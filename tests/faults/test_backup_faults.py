"""Backups under faults: kill -9 at chosen steps, Ctrl-C, MongoDB cut off, stalled or stopped,
a store refusing uploads, two runs racing for one backup name (CLI and operator).

Each run is stopped at an exact step with a failpoint (`backup.locked`, `backup.plan`,
`backup.data`, `backup.metadata`, `backup.manifest`: see mongo_backup/engine/backup.py), never
with a sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient

from mongo_backup.engine import BackupOptions, run_backup, verify_backup
from mongo_backup.engine.failpoints import armed
from mongo_backup.engine.lock import LockInfo
from mongo_backup.storage import StorageAccessDenied, open_storage
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import FAST, GROUP_VERSION, OperatorThread, backup_object, secret
from tests.integration.storage.conftest import (  # noqa: F401 - fixtures of the storage emulators
    azure_backend,
    azure_server,
    gcs_backend,
    gcs_server,
    s3_backend,
    s3_server,
)
from tests.support.cli_run import CliResult, CliRun, cli_run, one_line_error, run_cli
from tests.support.emulators import Backend
from tests.support.faulty_proxy import FaultyProxy
from tests.support.mongo import SecantusProcess
from tests.support.tcp_proxy import TcpProxy

#: incompressible documents, so that each collection's data object reaches storage in two
#: chunks (the engine writes 4 MiB at a time): a run can be stopped in the middle of one
DOCS_PER_COLLECTION = 2_500
DOC_PAYLOAD = 2048
#: short driver timeouts: a run that lost MongoDB ends within seconds (set in the URI)
SHORT_TIMEOUTS = "serverSelectionTimeoutMS=2000&connectTimeoutMS=2000&socketTimeoutMS=2000"


def load(uri: str, db: str) -> None:
    client: MongoClient[Any] = MongoClient(uri)
    try:
        for name in ("a", "b"):
            docs = [{"n": i, "r": os.urandom(DOC_PAYLOAD)} for i in range(DOCS_PER_COLLECTION)]
            client[db][name].insert_many(docs)
    finally:
        client.close()


@pytest.fixture
def source(mongo_uri: str, dbname: str) -> str:
    load(mongo_uri, dbname)
    return dbname


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir()
    return folder


def backup_args(uri: str, url: str, db: str) -> list[str]:
    return ["--quiet", "backup", "--uri", uri, "--to", url, "--ns-include", f"{db}.*", "--parallel", "1"]


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file (hidden ones too) with its size and modification time."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


# ---- kill -9 ---------------------------------------------------------------------------------

KILL_POINTS = {
    "after-the-lock": "backup.locked",
    "while-planning": "backup.plan",
    "mid-data": "backup.data@1",
    "before-the-manifest": "backup.manifest",
}


def kill_at(point: str, uri: str, url: str, db: str) -> None:
    killed = CliRun.start(backup_args(uri, url, db), failpoints=f"{point}=kill").finish()
    assert killed.returncode == -signal.SIGKILL, killed.output


@pytest.mark.parametrize("point", list(KILL_POINTS.values()), ids=list(KILL_POINTS))
def test_a_killed_backup_never_looks_complete_and_its_name_stays_taken(
    mongo_uri: str, source: str, root: Path, point: str
) -> None:
    """Promise: a backup killed at any point leaves no manifest, and a new backup to the same
    name stops at once with "in use" (exit 1, one line) naming the dead run and what to do,
    without writing or deleting anything."""
    url = f"file://{root}/nightly"
    kill_at(point, mongo_uri, url, source)
    folder = root / "nightly"
    assert not (folder / "manifest.json").exists()
    assert (folder / "lock.json").is_file()
    if point.startswith("backup.data"):  # the kill came in the middle of a data object
        assert any(".tmp-" in name for name in files_under(folder)), files_under(folder)
    before = files_under(folder)

    again = run_cli(backup_args(mongo_uri, url, source))
    assert again.returncode == 1, again.output
    line = one_line_error(again)
    assert "is in use" in line and "pid" in line and f"delete {url}" in line
    assert files_under(folder) == before


@pytest.mark.parametrize("point", list(KILL_POINTS.values()), ids=list(KILL_POINTS))
def test_a_killed_backup_is_never_restored(
    mongo_uri: str, source: str, root: Path, dbname: str, point: str
) -> None:
    """Promise: a backup killed at any point is refused by restore as incomplete (exit 4), and
    nothing is written to the target."""
    url = f"file://{root}/nightly"
    kill_at(point, mongo_uri, url, source)
    target = f"{dbname}_restored"
    restore = run_cli(
        ["--quiet", "restore", "--uri", mongo_uri, "--from", url,
         "--ns-from", f"{source}.*", "--ns-to", f"{target}.*"]
    )  # fmt: skip
    assert restore.returncode == 4, restore.output
    one_line_error(restore)
    client: MongoClient[Any] = MongoClient(mongo_uri)
    try:
        assert client[target].list_collection_names() == []
    finally:
        client.close()


async def test_a_backup_never_stores_a_restores_temporary_collections(
    mongo: AsyncMongoClient[Any], dbname: str, tmp_path: Path
) -> None:
    """Promise: the temporary collections a killed restore left behind (`__mbtmp_*`) are
    never backed up as if they were user data."""
    await mongo[dbname]["orders"].insert_many([{"n": i} for i in range(10)])
    await mongo[dbname]["__mbtmp_deadrun_1_0123456789ab"].insert_many([{"half": i} for i in range(10)])
    storage = open_storage(f"file://{tmp_path}/nightly")
    result = await run_backup(mongo, storage, BackupOptions(include=[f"{dbname}.*"]))
    assert [c.namespace for c in result.collections] == [f"{dbname}.orders"]
    assert not [p for p in (tmp_path / "nightly").rglob("*mbtmp*")]


# ---- Ctrl-C, and MongoDB going away mid-stream ------------------------------------------------


def test_ctrl_c_mid_data_leaves_nothing_under_the_name(mongo_uri: str, source: str, root: Path) -> None:
    """Promise: a backup interrupted with Ctrl-C in the middle of a data object exits with 130
    and leaves nothing under its name: no object, no lock, no temporary file."""
    with cli_run(backup_args(mongo_uri, f"file://{root}/nightly", source), pause_at="backup.data") as run:
        run.wait_paused()
        assert any(".tmp-" in name for name in files_under(root)), files_under(root)
        done = run.interrupt()
    assert done.returncode == 130, done.output
    assert files_under(root) == {}


async def test_a_metadata_failure_mid_data_stops_the_data_and_leaves_nothing(
    mongo: AsyncMongoClient[Any], source: str, root: Path
) -> None:
    """Promise: a collection's metadata is dumped while its data is read; when the metadata
    fails with the data object half written, that write is stopped and the run fails with the
    metadata's error, leaving nothing under its name."""
    data_in_flight = asyncio.Event()
    half_written: list[str] = []

    async def hold_the_data(context: dict[str, Any]) -> None:
        if context["ns"] == f"{source}.b":
            data_in_flight.set()
            # until the metadata's failure cancels it; bounded, so that a dump that writes the
            # metadata only after the data fails here instead of hanging
            await asyncio.wait_for(asyncio.Event().wait(), 30)

    async def refuse_the_metadata(context: dict[str, Any]) -> None:
        if context["ns"] == f"{source}.b":
            await data_in_flight.wait()
            half_written.extend(name for name in files_under(root) if ".tmp-" in name)
            raise StorageAccessDenied(f"{context['object']}: refused by the test")

    storage = open_storage(f"file://{root}/nightly")
    with armed("backup.data", hold_the_data), armed("backup.metadata", refuse_the_metadata):
        with pytest.raises(StorageAccessDenied, match=r"/b\.metadata\.json"):
            await run_backup(mongo, storage, BackupOptions(include=[f"{source}.*"], parallel=1))
    assert half_written, "the data object of b was not being written when its metadata failed"
    assert files_under(root) == {}


def _lose_mongodb_mid_data(uri: str, db: str, root: Path, lose: Callable[[], None]) -> CliResult:
    with cli_run(backup_args(uri, f"file://{root}/nightly", db), pause_at="backup.data") as run:
        run.wait_paused()
        lose()
        run.resume()
        return run.finish(timeout=120)


def test_a_connection_cut_mid_stream_fails_in_one_line_and_leaves_nothing(
    proxy: TcpProxy, source: str, root: Path
) -> None:
    """Promise: when the connection to MongoDB is cut in the middle of a backup, the run ends
    with one line saying MongoDB was lost (exit 6) and leaves nothing under its name."""
    done = _lose_mongodb_mid_data(proxy.uri(SHORT_TIMEOUTS), source, root, proxy.cut)
    assert done.returncode == 6, done.output
    assert "MongoDB" in one_line_error(done)
    assert files_under(root) == {}


def test_a_stalled_connection_ends_the_run_within_the_driver_timeouts(
    proxy: TcpProxy, source: str, root: Path
) -> None:
    """Promise: when MongoDB stops answering mid-stream (the connection stays open, silent),
    the backup does not hang: it ends within the driver's timeouts with one line (exit 6) and
    leaves nothing under its name."""
    done = _lose_mongodb_mid_data(proxy.uri(SHORT_TIMEOUTS), source, root, proxy.stall)
    assert done.returncode == 6, done.output
    assert "MongoDB" in one_line_error(done)
    assert files_under(root) == {}


def test_the_server_stopped_mid_run_fails_in_one_line_and_leaves_nothing(
    own_server: SecantusProcess, dbname: str, root: Path
) -> None:
    """Promise: when the MongoDB server stops in the middle of a backup, the run ends with one
    line (exit 6) and leaves nothing under its name."""
    load(own_server.uri, dbname)
    done = _lose_mongodb_mid_data(f"{own_server.uri}&{SHORT_TIMEOUTS}", dbname, root, own_server.stop)
    assert done.returncode == 6, done.output
    one_line_error(done)
    assert files_under(root) == {}


# ---- the store failing mid-upload -------------------------------------------------------------


@pytest.fixture(params=["gcs", "s3", "azure"])
def cloud(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    return backend


@pytest.fixture
def prefix(dbname: str) -> str:
    return "faults-" + dbname


Hook = Callable[[dict[str, Any]], Awaitable[None]]


def when_ns(namespace: str, action: Callable[[], None]) -> Hook:
    async def hook(context: dict[str, Any]) -> None:
        if context.get("ns") == namespace:
            action()

    return hook


async def test_a_store_refusing_uploads_mid_run_is_left_with_nothing(
    cloud: Backend, prefix: str, mongo: AsyncMongoClient[Any], source: str
) -> None:
    """Promise: when the store starts refusing uploads in the middle of a backup (here after a
    first collection is stored), the run fails with a storage error and removes what it wrote:
    no object, no unfinished upload, no lock is left under its name."""
    with FaultyProxy(cloud.endpoint) as proxy:  # type: ignore[arg-type]
        storage = cloud.open_via(proxy.endpoint, prefix, part_size=5 * 1024 * 1024).child("nightly")

        def refuse_uploads() -> None:
            proxy.fail(-1, 403, method="PUT")
            proxy.fail(-1, 403, method="POST")

        try:
            with armed("backup.data", when_ns(f"{source}.b", refuse_uploads)):
                with pytest.raises(StorageAccessDenied):
                    await run_backup(mongo, storage, BackupOptions(include=[f"{source}.*"], parallel=1))
        finally:
            await storage.close()
    direct = cloud.open(prefix)
    try:
        assert [info.name async for info in direct.list(partial=True)] == []
    finally:
        await direct.close()
    assert cloud.leftovers(prefix) == []


#: the request that uploads lock.json (GCS names the object in the body of a simple upload)
LOCK_UPLOAD = {
    "gcs": ("POST", "uploadType=multipart"),
    "s3": ("PUT", "lock.json"),
    "azure": ("PUT", "lock.json"),
}


async def test_a_backup_cancelled_while_it_takes_its_name_leaves_no_lock(
    cloud: Backend, prefix: str, mongo: AsyncMongoClient[Any], source: str
) -> None:
    """Promise: a backup cancelled (operator deletion, Ctrl-C) while its lock is still on the
    way to the store gives the name back: no lock.json stays behind to block the next run."""
    with FaultyProxy(cloud.endpoint) as proxy:  # type: ignore[arg-type]
        storage = cloud.open_via(proxy.endpoint, prefix).child("nightly")
        method, path = LOCK_UPLOAD[cloud.name]
        upload = proxy.hold(path, method=method, until_method="none", timeout=60)
        try:
            run = asyncio.create_task(run_backup(mongo, storage, BackupOptions(include=[f"{source}.*"])))
            assert await asyncio.to_thread(upload.held.wait, 30), "the lock was never sent"
            run.cancel()
            upload.released.set()  # the lock lands after the cancellation
            with pytest.raises(asyncio.CancelledError):
                await run
        finally:
            await storage.close()
    direct = cloud.open(prefix)
    try:
        assert [info.name async for info in direct.list(partial=True)] == []
    finally:
        await direct.close()


async def test_a_cancellation_after_the_manifest_is_too_late_to_undo_the_backup(
    cloud: Backend, prefix: str, mongo: AsyncMongoClient[Any], source: str
) -> None:
    """Promise: a backup whose manifest is written is complete: a cancellation that arrives
    while it removes its lock neither fails the run nor leaves the lock behind."""
    with FaultyProxy(cloud.endpoint) as proxy:  # type: ignore[arg-type]
        storage = cloud.open_via(proxy.endpoint, prefix).child("nightly")
        removal = proxy.hold("lock.json", method="DELETE", until_method="none", timeout=60)
        try:
            run = asyncio.create_task(run_backup(mongo, storage, BackupOptions(include=[f"{source}.*"])))
            assert await asyncio.to_thread(removal.held.wait, 60), "the lock was never removed"
            run.cancel()
            removal.released.set()
            result = await run
            assert (await verify_backup(storage)).checksum == result.checksum
            assert not await storage.exists("lock.json")
        finally:
            await storage.close()


# ---- two runs, one name -----------------------------------------------------------------------


def test_of_two_cli_backups_to_one_name_the_second_stops_at_once(
    mongo_uri: str, source: str, root: Path
) -> None:
    """Promise: when two backups to one name run at once, the second stops at once with "in
    use" (exit 1, one line) and changes nothing; the first completes and verifies."""
    url = f"file://{root}/nightly"
    with cli_run(backup_args(mongo_uri, url, source), pause_at="backup.locked") as first:
        first.wait_paused()
        before = files_under(root)
        second = run_cli(backup_args(mongo_uri, url, source))
        assert first.proc.poll() is None  # the second ended while the first still held the name
        assert second.returncode == 1, second.output
        assert f"pid {first.proc.pid}" in one_line_error(second)
        assert files_under(root) == before
        first.resume()
        done = first.finish()
    assert done.returncode == 0, done.output
    verify = run_cli(["--json", "verify", "--from", url])
    assert verify.returncode == 0, verify.output
    assert json.loads(verify.stdout)["result"]["checksum"] in done.stdout  # what the first printed
    assert sorted(files_under(root / "nightly")) == sorted(
        ["manifest.json", f"{source}/a.bson.zst", f"{source}/a.metadata.json",
         f"{source}/b.bson.zst", f"{source}/b.metadata.json"]
    )  # fmt: skip


@contextmanager
def operator_on_emulator() -> Iterator[KubeEmulator]:
    with KubeEmulator() as kube:
        kube.load_crds()
        with OperatorThread(kube.url, FAST):
            yield kube


def wait_for_object(
    kube: KubeEmulator, namespace: str, name: str, check: Callable[[dict[str, Any] | None], bool]
) -> dict[str, Any] | None:
    """Poll a MongoBackup (None once it is gone) until `check` holds; at most a minute."""
    end = time.monotonic() + 60
    while True:
        obj = kube.get(GROUP_VERSION, "mongobackups", name, namespace)
        if check(obj):
            return obj
        if time.monotonic() > end:
            raise AssertionError(f"{namespace}/{name}: timed out; last seen {obj}")
        time.sleep(0.05)


def finished(obj: dict[str, Any] | None) -> bool:
    return obj is not None and phase(obj) in ("Completed", "Failed")


def phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


def failed_reason(obj: dict[str, Any]) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return str(cond.get("reason"))
    return None


def test_two_mongobackups_of_one_name_in_two_namespaces_never_destroy_each_other(
    mongo_uri: str, source: str, tmp_path: Path
) -> None:
    """Promise: two MongoBackups named `nightly` in two namespaces with one storage folder
    never destroy each other: one completes with a checksum that verifies, the other fails
    with reason BackupNameInUse, and the stored backup stays intact."""
    first_locked = threading.Event()
    release = threading.Event()

    async def hold_the_first(context: dict[str, Any]) -> None:
        if first_locked.is_set():
            return
        first_locked.set()
        while not release.is_set():  # noqa: ASYNC110 - released by the test thread
            await asyncio.sleep(0.02)

    with armed("backup.locked", hold_the_first), operator_on_emulator() as kube:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
        for namespace in ("default", "team-b"):
            secret(kube, "mongo", {"uri": mongo_uri}, namespace=namespace)
        kube.apply(backup_object("nightly", str(tmp_path), [f"{source}.*"]))
        assert first_locked.wait(60), "the first backup never took its lock"
        other = backup_object("nightly", str(tmp_path), [f"{source}.*"])
        other["metadata"]["namespace"] = "team-b"
        kube.apply(other)
        loser = wait_for_object(kube, "team-b", "nightly", finished)
        release.set()
        winner = wait_for_object(kube, "default", "nightly", finished)
    assert loser is not None and winner is not None
    assert phase(loser) == "Failed" and failed_reason(loser) == "BackupNameInUse", loser["status"]
    assert winner["metadata"]["uid"] in loser["status"]["error"]  # it names the lock's owner
    assert phase(winner) == "Completed", winner["status"]
    storage = open_storage(f"file://{tmp_path}/nightly")
    verified = asyncio.run(verify_backup(storage))
    assert verified.ok, verified.problems
    assert verified.checksum == winner["status"]["checksum"]


def test_a_deletion_never_deletes_under_another_runs_lock(
    mongo_uri: str, source: str, tmp_path: Path
) -> None:
    """Promise: deleting a MongoBackup with `deletionPolicy: Delete` while another run holds
    its backup name's lock deletes nothing: it warns, tries again, and gives up leaving the
    stored backup as it was."""
    with operator_on_emulator() as kube:
        secret(kube, "mongo", {"uri": mongo_uri})
        kube.apply(backup_object("doomed", str(tmp_path), [f"{source}.*"], deletionPolicy="Delete"))
        done = wait_for_object(kube, "default", "doomed", finished)
        assert done is not None and phase(done) == "Completed", done
        folder = tmp_path / "doomed"
        (folder / "lock.json").write_bytes(LockInfo.mine("someone-else", "backup").to_json())
        before = files_under(folder)
        kube.delete(GROUP_VERSION, "mongobackups", "doomed")
        wait_for_object(kube, "default", "doomed", lambda o: o is None)
        reasons = [
            e["reason"]
            for e in kube.list_objects("v1", "events")
            if (e.get("involvedObject") or {}).get("name") == "doomed"
        ]
    assert "DeleteSkipped" in reasons and "DeleteFailed" in reasons, reasons
    assert "Deleted" not in reasons
    assert files_under(folder) == before
