"""Bad input on the command line: one line on stderr that names what is wrong and where, the
documented exit code (README, "Exit codes"), never a traceback."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.support.cli_run import CliResult, CliRun, run_cli

USAGE, NOT_FOUND, STORAGE, INTERRUPTED = 2, 5, 7, 130


@dataclass(frozen=True)
class Where:
    """What a case may point at."""

    uri: str
    tmp: Path
    db: str

    def uri_with(self, option: str) -> str:
        return f"{self.uri}{'&' if '?' in self.uri else '?'}{option}"

    @property
    def a_file(self) -> Path:
        path = self.tmp / "a-file"
        path.write_text("not a folder\n")
        return path

    @property
    def denied(self) -> str:
        if os.geteuid() == 0:
            return "/sys/fs/mongo-backup-denied"  # even root may not create folders there
        locked = self.tmp / "locked"
        locked.mkdir(mode=0o500, exist_ok=True)
        return str(locked)


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Where], list[str]]
    exit_code: int
    #: the line must say this (with {tmp} and {db} filled in)
    says: str
    env: Callable[[Where], dict[str, str]] = lambda w: {}


def backup(w: Where, *more: str) -> list[str]:
    return ["backup", "--uri", w.uri, "--ns-include", f"{w.db}.*", "--to", str(w.tmp / "b"), *more]


CASES = [
    # the connection string
    Case(
        "tlsCAFile missing",
        lambda w: ["backup", "--uri", w.uri_with(f"tlsCAFile={w.tmp}/ca.pem"), "--to", str(w.tmp / "b")],
        USAGE,
        "MongoDB URI option tlsCAFile: cannot read {tmp}/ca.pem (No such file or directory)",
    ),
    Case(
        "unknown URI option",
        lambda w: ["backup", "--uri", w.uri_with("bogusOption=1"), "--to", str(w.tmp / "b")],
        USAGE,
        "unknown option 'bogusOption' in the MongoDB URI",
    ),
    Case(
        "URI option of the wrong type",
        lambda w: ["backup", "--uri", w.uri_with("serverSelectionTimeoutMS=soon"), "--to", str(w.tmp / "b")],
        USAGE,
        "MongoDB URI option serverSelectionTimeoutMS:",
    ),
    Case(
        "no URI at all",
        lambda w: ["backup", "--to", str(w.tmp / "b")],
        USAGE,
        "no MongoDB URI: pass --uri or set MONGODB_URI",
        env=lambda w: {"MONGODB_URI": ""},
    ),
    # flags
    Case(
        "unknown log level",
        lambda w: ["--log-level", "loud", *backup(w)],
        USAGE,
        "argument --log-level: unknown log level 'loud': choose one of DEBUG, INFO, WARNING, ERROR",
    ),
    Case(
        "parallel 0", lambda w: backup(w, "--parallel", "0"), USAGE, "argument --parallel: must be at least 1"
    ),
    Case(
        "parallel not a number",
        lambda w: backup(w, "--parallel", "lots"),
        USAGE,
        "'lots' is not a whole number",
    ),
    Case(
        "insert workers 0",
        lambda w: ["restore", "--uri", w.uri, "--from", str(w.tmp / "b"), "--insert-workers", "0"],
        USAGE,
        "argument --insert-workers: must be at least 1",
    ),
    Case(
        "zstd level 99", lambda w: backup(w, "--level", "99"), USAGE, "compression level 99 is out of range"
    ),
    Case(
        "gzip level 15",
        lambda w: backup(w, "--compression", "gzip", "--level", "15"),
        USAGE,
        "compression level 15 is out of range for gzip",
    ),
    Case(
        "pattern without a dot",
        lambda w: ["backup", "--uri", w.uri, "--ns-include", "nodot", "--to", str(w.tmp / "b")],
        USAGE,
        "namespace pattern 'nodot' must look like 'db.*'",
    ),
    Case(
        "--ns-from without --ns-to",
        lambda w: ["restore", "--uri", w.uri, "--from", str(w.tmp / "b"), "--ns-from", "a.*"],
        USAGE,
        "--ns-to",
    ),
    Case(
        "missing --to",
        lambda w: ["backup", "--uri", w.uri],
        USAGE,
        "the following arguments are required: --to",
    ),
    Case("unknown command", lambda w: ["bakcup"], USAGE, "argument COMMAND: invalid choice: 'bakcup'"),
    Case(
        "run with no slots",
        lambda w: ["run", "--max-concurrent-runs", "0"],
        USAGE,
        "argument --max-concurrent-runs: must be at least 1",
    ),
    # where the backup goes
    Case("empty --to", lambda w: ["backup", "--uri", w.uri, "--to", ""], USAGE, "empty storage URL"),
    Case(
        "--to s3:// without a bucket",
        lambda w: ["backup", "--uri", w.uri, "--to", "s3://"],
        USAGE,
        "names no bucket",
    ),
    Case(
        "--to the root folder",
        lambda w: ["backup", "--uri", w.uri, "--to", "/"],
        USAGE,
        "must end with the backup's name",
    ),
    Case(
        "--to a file URL with a host",
        lambda w: ["backup", "--uri", w.uri, "--to", "file://elsewhere/b"],
        USAGE,
        "must be file:///absolute/path",
    ),
    Case(
        "backup folder under a regular file",
        lambda w: ["backup", "--uri", w.uri, "--ns-include", f"{w.db}.*", "--to", f"{w.a_file}/b"],
        STORAGE,
        "{tmp}/a-file is a file, not a folder",
    ),
    Case(
        "backup folder where nobody may write",
        lambda w: ["backup", "--uri", w.uri, "--ns-include", f"{w.db}.*", "--to", f"{w.denied}/b"],
        STORAGE,
        "access denied: cannot write ",
    ),
    Case(
        "--s3-endpoint that is not a URL",
        lambda w: ["ls", "s3://bucket/prefix", "--s3-endpoint", "minio.local"],
        USAGE,
        "argument --s3-endpoint: 'minio.local' is not an http:// or https:// URL",
    ),
    Case(
        "gs:// without any credentials",
        lambda w: ["ls", "gs://some-bucket/prefix"],
        STORAGE,
        "access denied: gs:// storage needs credentials",
        env=lambda w: {
            "GOOGLE_APPLICATION_CREDENTIALS": "",
            "STORAGE_EMULATOR_HOST": "",
            "CLOUDSDK_CONFIG": str(w.tmp),  # no gcloud login of this machine's user
            "GCE_METADATA_HOST": "127.0.0.1:9",  # nor a metadata server
            "GCE_METADATA_IP": "127.0.0.1:9",
        },
    ),
    Case(
        "crds --out under a regular file",
        lambda w: ["crds", "--out", f"{w.a_file}/crds"],
        USAGE,
        "cannot write the CRDs into --out {tmp}/a-file/crds",
    ),
    # where the backup comes from
    Case(
        "verify a relative folder that is not there",
        lambda w: ["verify", "--from", "bk"],
        NOT_FOUND,
        "no backup at file://{tmp}/bk",
    ),
    Case(
        "restore from a folder that is not there",
        lambda w: ["restore", "--uri", w.uri, "--from", str(w.tmp / "nothing")],
        NOT_FOUND,
        "no backup at file://{tmp}/nothing",
    ),
    Case(
        "restore from a file",
        lambda w: ["restore", "--uri", w.uri, "--from", str(w.a_file)],
        NOT_FOUND,
        "no backup at file://{tmp}/a-file",
    ),
    Case(
        "verify a file",
        lambda w: ["verify", "--from", str(w.a_file)],
        NOT_FOUND,
        "no backup at file://{tmp}/a-file",
    ),
]


@pytest.fixture
def where(mongo_uri: str, dbname: str, tmp_path: Path) -> Where:
    with MongoClient(mongo_uri) as client:
        client[dbname].things.insert_many([{"n": i} for i in range(20)])
    return Where(mongo_uri, tmp_path, dbname)


def assert_one_line(done: CliResult, exit_code: int, says: str) -> None:
    assert "Traceback" not in done.output, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert done.returncode == exit_code, f"exit {done.returncode}, expected {exit_code}: {done.stderr}"
    assert says in lines[0], lines[0]
    assert lines[0].startswith("mongo-backup"), lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_with_the_documented_exit_code(case: Case, where: Where) -> None:
    """Promise: bad input gets one line naming what is wrong and where, with the documented
    exit code, never a traceback."""
    done = run_cli(case.args(where), env=case.env(where), cwd=where.tmp, timeout=120)
    assert_one_line(
        done, case.exit_code, case.says.replace("{tmp}", str(where.tmp)).replace("{db}", where.db)
    )
    assert done.stdout == ""


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_ctrl_c_before_connecting_is_one_line(command: str, where: Where) -> None:
    """Promise: Ctrl-C before the run has even connected ends it with exit code 130 and one
    line, never a traceback."""
    args = (
        backup(where)
        if command == "backup"
        else ["restore", "--uri", where.uri, "--from", str(where.tmp / "b")]
    )
    run = CliRun.start(args, pause_at=f"{command}.connect")
    run.wait_paused()
    done = run.interrupt()
    assert_one_line(done, INTERRUPTED, f"mongo-backup {command}: interrupted")
