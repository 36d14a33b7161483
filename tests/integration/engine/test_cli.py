"""The `mongo-backup` command as a script sees it: exit codes, one-line errors, JSON, no secrets."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mongo_backup.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def loaded(mongo_uri: str, dbname: str) -> str:
    with MongoClient(mongo_uri) as client:
        client[dbname].orders.insert_many([{"i": i} for i in range(1234)])
    return dbname


def test_backup_verify_ls_restore_with_json(mongo_uri: str, loaded: str, backup_root: Path) -> None:
    url = f"file://{backup_root}/nightly"
    done = cli("--json", "backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{loaded}.*")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)["result"]
    assert result["documents"] == 1234 and len(result["checksum"]) == 64

    verified = json.loads(cli("--json", "verify", "--from", url).stdout)["result"]
    assert verified["ok"] and verified["checksum"] == result["checksum"]

    listing = json.loads(cli("--json", "ls", f"file://{backup_root}").stdout)["result"]["backups"]
    assert [(b["name"], b["complete"], b["documents"]) for b in listing] == [("nightly", True, 1234)]

    restored = cli(
        "--json",
        "restore",
        "--uri",
        mongo_uri,
        "--from",
        url,
        "--ns-from",
        f"{loaded}.*",
        "--ns-to",
        f"{loaded}_r.*",
    )
    assert restored.returncode == 0, restored.stderr
    body = json.loads(restored.stdout)["result"]
    assert (
        body["documents"] == 1234 and body["verified"] == 1 and body["backup_checksum"] == result["checksum"]
    )
    # where the time went, per phase: every phase a plain collection goes through was timed
    timings = body["timings"]
    assert set(timings) == {
        "plan", "create", "insert", "indexes", "verify", "swap", "drop_replaced", "direct", "cleanup"
    }  # fmt: skip
    assert all(timings[phase] > 0 for phase in ("plan", "create", "insert", "verify", "swap", "cleanup"))


def test_human_output(mongo_uri: str, loaded: str, backup_root: Path) -> None:
    done = cli("backup", "--uri", mongo_uri, "--to", str(backup_root / "b"), "--ns-include", f"{loaded}.*")
    assert done.returncode == 0
    assert (
        "backup complete" in done.stdout
        and "1,234 documents" in done.stdout
        and "checksum sha256:" in done.stdout
    )


def test_exit_codes_and_one_line_errors(mongo_uri: str, loaded: str, backup_root: Path) -> None:
    url = f"file://{backup_root}/b"
    assert cli("backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{loaded}.*").returncode == 0

    conflict = cli("restore", "--uri", mongo_uri, "--from", url)
    assert conflict.returncode == 3
    assert f"{loaded}.orders already exists and is not empty" in conflict.stderr

    missing = cli("verify", "--from", f"file://{backup_root}/nothing")
    assert missing.returncode == 5 and "no backup at" in missing.stderr

    bad_level = cli("backup", "--uri", mongo_uri, "--to", f"file://{backup_root}/x", "--level", "99")
    assert bad_level.returncode == 2 and "out of range for zstd" in bad_level.stderr

    bad_pattern = cli("restore", "--uri", mongo_uri, "--from", url, "--ns-from", "a.*")
    assert bad_pattern.returncode == 2 and "--ns-to" in bad_pattern.stderr

    for outcome in (conflict, missing, bad_level, bad_pattern):
        assert "Traceback" not in outcome.stderr and len(outcome.stderr.strip().splitlines()) == 1


def test_passwords_never_printed(backup_root: Path) -> None:
    unreachable = cli(
        "backup",
        "--uri",
        "mongodb://admin:hunter2secret@127.0.0.1:1/?serverSelectionTimeoutMS=300",
        "--to",
        str(backup_root / "b"),
    )
    assert unreachable.returncode == 6 and "MongoDB at 127.0.0.1:1 could not be reached" in unreachable.stderr
    malformed = cli("backup", "--uri", "mongodb://admin:hunter2secret@[::1", "--to", str(backup_root / "b"))
    assert malformed.returncode == 2 and "admin:***@" in malformed.stderr
    for outcome in (unreachable, malformed):
        assert "hunter2secret" not in outcome.stderr + outcome.stdout


def test_uri_from_the_environment(mongo_uri: str, loaded: str, backup_root: Path) -> None:
    import os

    env = {**os.environ, "MONGODB_URI": mongo_uri}
    done = cli("backup", "--to", str(backup_root / "b"), "--ns-include", f"{loaded}.*", env=env)
    assert done.returncode == 0, done.stderr
    no_uri = cli(
        "backup", "--to", str(backup_root / "c"), env={k: v for k, v in env.items() if k != "MONGODB_URI"}
    )
    assert no_uri.returncode == 2 and "no MongoDB URI" in no_uri.stderr


def test_drill_proves_a_backup_restores_and_fails_on_a_damaged_one(
    mongo_uri: str, loaded: str, backup_root: Path
) -> None:
    url = f"file://{backup_root}/nightly"
    assert cli("backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{loaded}.*").returncode == 0
    drilled = cli("--json", "drill", "--uri", mongo_uri, "--from", url, "--prefix", "d1_")
    assert drilled.returncode == 0, drilled.stderr
    result = json.loads(drilled.stdout)["result"]
    assert (result["verified"], result["collections"], result["documents"]) == (1, 1, 1234)
    assert result["scratch"] == [f"d1_{loaded}.orders"] and result["left"] == []
    with MongoClient(mongo_uri) as client:
        assert client[f"d1_{loaded}"].list_collection_names() == []

    data = next((backup_root / "nightly" / loaded).glob("orders.bson*"))
    damaged = bytearray(data.read_bytes())
    damaged[-20] ^= 0xFF
    data.write_bytes(bytes(damaged))
    failed = cli("drill", "--uri", mongo_uri, "--from", url, "--prefix", "d2_")
    assert failed.returncode == 4, failed.stderr  # integrity
    assert failed.stderr.startswith("mongo-backup drill: ") and "orders" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    with MongoClient(mongo_uri) as client:
        assert client[f"d2_{loaded}"].list_collection_names() == []


def test_drill_of_an_encrypted_backup_needs_its_key(mongo_uri: str, loaded: str, backup_root: Path) -> None:
    url = f"file://{backup_root}/sealed"
    key_file = backup_root.parent / "backup.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    sealed = cli(
        "backup",
        "--uri",
        mongo_uri,
        "--to",
        url,
        "--ns-include",
        f"{loaded}.*",
        "--encrypt-key-file",
        str(key_file),
    )
    assert sealed.returncode == 0, sealed.stderr
    keyless = cli("drill", "--uri", mongo_uri, "--from", url, "--prefix", "k1_")
    assert keyless.returncode == 2 and len(keyless.stderr.strip().splitlines()) == 1, keyless.stderr
    drilled = cli(
        "--json", "drill", "--uri", mongo_uri, "--from", url, "--prefix", "k2_", "--key-file", str(key_file)
    )
    assert drilled.returncode == 0, drilled.stderr
    assert json.loads(drilled.stdout)["result"]["verified"] == 1
