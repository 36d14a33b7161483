"""`mongo-backup prune` over real backups in a folder, run as a user's cron job runs it: what it
keeps and deletes, --dry-run, and what it never deletes (a backup a run holds, a backup under
another run's lock, a folder that is not a backup of ours)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, run_backup, verify_backup
from mongo_backup.engine.lock import LockInfo
from mongo_backup.storage import Storage
from tests.support.cli_run import CliResult, CliRun, run_cli


async def make_backups(mongo: AsyncMongoClient[Any], store: Storage, dbname: str, *names: str) -> None:
    """Real backups, one after the other: each completes after the one before."""
    if not await mongo[dbname].list_collection_names():
        for coll in ("orders", "users"):
            await mongo[dbname][coll].insert_many([{"c": coll, "i": i} for i in range(50)])
    for name in names:
        await run_backup(mongo, store.child(name), BackupOptions(include=[f"{dbname}.*"]))


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file (hidden ones too) with its size and modification time."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def backups_in(root: Path) -> list[str]:
    """The folders that still hold a file."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(f.is_file() for f in p.rglob("*")))


def prune_json(root: Path, *flags: str) -> tuple[CliResult, dict[str, Any]]:
    done = run_cli(["--json", "prune", f"file://{root}", *flags])
    assert done.returncode == 0, done.output
    body = json.loads(done.stdout)
    assert body["ok"] and body["command"] == "prune"
    return done, body["result"]


def outcomes(result: dict[str, Any]) -> dict[str, str]:
    return {row["name"]: row["outcome"] for row in result["backups"]}


async def test_dry_run_deletes_nothing_then_keep_last_2_deletes_the_oldest(
    mongo: AsyncMongoClient[Any], store: Storage, dbname: str, backup_root: Path
) -> None:
    await make_backups(mongo, store, dbname, "b1", "b2", "b3", "b4", "b5")
    before = files_under(backup_root)

    _, planned = prune_json(backup_root, "--keep-last", "2", "--dry-run")
    assert files_under(backup_root) == before  # not even a lock was written
    assert outcomes(planned) == {
        "b5": "kept", "b4": "kept", "b3": "would delete", "b2": "would delete", "b1": "would delete"
    }  # fmt: skip
    assert [row["name"] for row in planned["backups"]] == ["b5", "b4", "b3", "b2", "b1"]  # newest first
    assert planned["backups"][0]["reasons"] == ["last 1/2"]
    assert planned["backups"][2]["why"] == "no rule keeps it (keep-last 2)"
    assert (planned["kept"], planned["would_delete"], planned["deleted"]) == (2, 3, 0)
    assert planned["dry_run"] is True and planned["time_zone"] == "UTC"

    done = run_cli(["prune", f"file://{backup_root}", "--keep-last", "2"])
    assert done.returncode == 0 and done.stderr == "", done.output
    lines = done.stdout.splitlines()
    assert lines[0] == f"prune file://{backup_root}: keep-last 2; times in UTC"
    assert lines[1].startswith("kept ") and " b5 " in lines[1] and lines[1].endswith("  last 1/2")
    assert lines[3].startswith("deleted ") and " b3 " in lines[3]
    assert "no rule keeps it (keep-last 2); " in lines[3] and lines[3].endswith("objects deleted")
    assert lines[-1] == "  2 kept, 3 deleted"
    assert backups_in(backup_root) == ["b4", "b5"]
    # what is kept is untouched, byte for byte, and still verifies
    assert files_under(backup_root) == {k: v for k, v in before.items() if k.split("/")[0] in ("b4", "b5")}
    for name in ("b4", "b5"):
        assert (await verify_backup(store.child(name))).ok

    # a second prune finds nothing more to do
    _, again = prune_json(backup_root, "--keep-last", "2")
    assert outcomes(again) == {"b5": "kept", "b4": "kept"}


async def test_prune_never_deletes_what_a_run_holds_nor_what_is_not_ours(
    mongo: AsyncMongoClient[Any], mongo_uri: str, store: Storage, dbname: str, backup_root: Path
) -> None:
    await make_backups(mongo, store, dbname, "b1", "b2", "b3")
    # a backup killed after its data, before its manifest: its lock.json stays (its run may be
    # live, for all prune knows)
    for name in ("killed", "old-partial"):
        killed = CliRun.start(
            [
                "backup",
                "--uri",
                mongo_uri,
                "--to",
                f"file://{backup_root}/{name}",
                "--ns-include",
                f"{dbname}.*",
            ],
            failpoints="backup.manifest=kill",
        ).finish()
        assert killed.returncode == -signal.SIGKILL, killed.output
        assert (backup_root / name / "lock.json").is_file()
        assert not (backup_root / name / "manifest.json").exists()
    # an incomplete backup without a lock, as an older version left them
    (backup_root / "old-partial" / "lock.json").unlink()
    assert files_under(backup_root / "old-partial")
    # someone's mongodump directory next to the backups
    dump = backup_root / "dump" / dbname
    dump.mkdir(parents=True)
    (dump / "orders.bson").write_bytes(b"")
    (dump / "orders.metadata.json").write_text('{"options": {}, "indexes": []}')
    # another run holds b1's name: a writer that died after its manifest, or a deletion under way
    (backup_root / "b1" / "lock.json").write_bytes(LockInfo.mine("someone-else", "backup").to_json())
    held = {
        name: files_under(backup_root / name) for name in ("b1", "b3", "killed", "dump")
    }  # fmt: skip

    done, result = prune_json(backup_root, "--keep-last", "1", "--keep-failed", "0")
    assert outcomes(result) == {
        "b3": "kept",
        "b2": "deleted",
        "b1": "not deleted",
        "killed": "kept",
        "old-partial": "deleted",
        "dump": "kept",
    }
    rows = {row["name"]: row for row in result["backups"]}
    assert rows["killed"]["state"] == "in_progress"
    assert rows["killed"]["reasons"][0].startswith("in-progress: lock.json held by backup run ")
    assert rows["old-partial"]["state"] == "incomplete" and rows["old-partial"]["removed_objects"] > 0
    assert rows["dump"]["state"] == "unknown" and "never pruned" in rows["dump"]["why"]
    assert rows["b1"]["problem"].startswith("in use by backup run someone-else on host ")
    # said on stderr too, one line
    warning = done.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(
        "mongo-backup prune: warning: 1 backup to delete left in place (the next prune tries again): b1: in use"
    ), done.stderr
    assert backups_in(backup_root) == ["b1", "b3", "dump", "killed"]
    assert {name: files_under(backup_root / name) for name in held} == held  # not a byte changed

    # once the lock is gone, b1 goes; the killed backup stays as long as its lock does
    (backup_root / "b1" / "lock.json").unlink()
    _, result = prune_json(backup_root, "--keep-last", "1", "--keep-failed", "0")
    assert outcomes(result) == {"b3": "kept", "b1": "deleted", "killed": "kept", "dump": "kept"}
    assert backups_in(backup_root) == ["b3", "dump", "killed"]


async def test_two_prunes_at_once_never_delete_under_each_others_lock(
    mongo: AsyncMongoClient[Any], store: Storage, dbname: str, backup_root: Path
) -> None:
    await make_backups(mongo, store, dbname, "b1", "b2", "b3")
    args = ["--json", "prune", f"file://{backup_root}", "--keep-last", "1"]
    first = CliRun.start(args, pause_at="delete.locked")  # holds b2's lock, deletes nothing yet
    try:
        first.wait_paused()
        assert (backup_root / "b2" / "manifest.json").is_file()
        second = run_cli(args)
        assert second.returncode == 0, second.output
        assert outcomes(json.loads(second.stdout)["result"]) == {
            "b3": "kept", "b2": "not deleted", "b1": "deleted"
        }  # fmt: skip
        assert "b2: in use by delete run " in second.stderr
        assert backups_in(backup_root) == ["b2", "b3"]
        first.resume()
        done = first.finish()
    finally:
        if first.proc.poll() is None:
            first.kill()
    assert done.returncode == 0, done.output
    assert outcomes(json.loads(done.stdout)["result"]) == {
        "b3": "kept",
        "b2": "deleted",
        "b1": "already gone",
    }
    assert backups_in(backup_root) == ["b3"]


async def test_bad_usage_and_storage_errors_are_one_line_with_their_exit_codes(
    mongo: AsyncMongoClient[Any], store: Storage, dbname: str, backup_root: Path, tmp_path: Path
) -> None:
    await make_backups(mongo, store, dbname, "b1")
    before = files_under(backup_root)
    for flags, message in [
        ([], "no retention rule for complete backups: pass at least one of --keep-last"),
        (["--keep-failed", "1"], "no retention rule for complete backups"),
        (["--daily", "-1"], "argument --daily/--keep-daily: must be 0 or more (got -1)"),
        (["--daily", "1", "--time-zone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
    ]:
        done = run_cli(["prune", f"file://{backup_root}", *flags])
        assert done.returncode == 2, done.output
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr
    assert files_under(backup_root) == before

    denied = run_cli(
        ["prune", "gs://some-bucket/prefix", "--keep-last", "1"],
        env={
            "GOOGLE_APPLICATION_CREDENTIALS": "",
            "STORAGE_EMULATOR_HOST": "",
            "CLOUDSDK_CONFIG": str(tmp_path),  # no gcloud login of this machine's user
            "GCE_METADATA_HOST": "127.0.0.1:9",  # nor a metadata server
            "GCE_METADATA_IP": "127.0.0.1:9",
        },
    )
    assert denied.returncode == 7, denied.output
    assert denied.stderr.strip().startswith("mongo-backup prune: access denied: ")
    assert len(denied.stderr.strip().splitlines()) == 1


async def test_the_only_complete_backup_survives_a_policy_that_keeps_nothing(
    mongo: AsyncMongoClient[Any], store: Storage, dbname: str, backup_root: Path
) -> None:
    await make_backups(mongo, store, dbname, "b1", "b2")
    _, result = prune_json(backup_root, "--keep-last", "0", "--time-zone", "Europe/Paris")
    assert outcomes(result) == {"b2": "kept", "b1": "deleted"}
    assert result["backups"][0]["reasons"] == ["newest-complete (always kept)"]
    assert result["time_zone"] == "Europe/Paris"
    assert backups_in(backup_root) == ["b2"]
