"""No password is ever printed: every shape of connection string a user may get wrong, through
the CLI (backup and restore, human and JSON output, DEBUG logs) and through the operator
(status, conditions, Events and the operator's log records)."""

from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup.engine.uri import hosts_part
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import FAST, OperatorThread, backup_object, events_of, get, secret
from tests.support.cli_run import CliResult, run_cli

#: in every password below, so that even part of one is found wherever it leaks
MARK = "S3cr3t"


@dataclass(frozen=True)
class Shape:
    id: str
    #: the connection string; {pw} is a marked word of this shape's own (one shape's
    #: registered password never masks another's), {host} the test server's host:port,
    #: {closed} a closed port
    uri: str

    def format(self, host: str, closed: int) -> str:
        mark = f"{self.id.replace('-', '')}{MARK}"
        return self.uri.replace("{pw}", mark).replace("{host}", host).replace("{closed}", str(closed))


SHAPES = [
    Shape("slash", "mongodb://backup:{pw}/x{pw}@{host}/"),
    Shape("at", "mongodb://backup:{pw}@x{pw}@{host}/"),
    Shape("colon", "mongodb://backup:{pw}:x:{pw}@{host}/"),
    Shape("percent-2F", "mongodb://backup:{pw}%2Fx{pw}@{host}/"),
    Shape("space", "mongodb://backup:{pw} x {pw}@{host}/"),
    Shape("unicode", "mongodb://backup:{pw}ünï©ødé{pw}@{host}/"),
    Shape("quotes", "mongodb://backup:{pw}'x\"{pw}@{host}/"),
    Shape("srv", "mongodb+srv://backup:{pw}@cluster0.example.invalid/?serverSelectionTimeoutMS=300"),
    Shape("postgres", "postgres://backup:{pw}@{host}/db"),
    Shape("http", "http://backup:{pw}@{host}/"),
    Shape("no-scheme", "backup:{pw}@{host}/"),
    Shape("user-only", "mongodb://backupuser@{host}/"),  # nothing secret: still one clear line
    Shape("rejected-by-pymongo", "mongodb://backup:{pw}@{host}:notaport/"),
    Shape("unreachable", "mongodb://backup:{pw}@127.0.0.1:{closed}/?serverSelectionTimeoutMS=300"),
    Shape("wrong-credentials", "mongodb://backup:{pw}@{host}/?authSource=admin"),
    Shape("secret-option-rejected", "mongodb://{host}:notaport/?tlsCertificateKeyFilePassword={pw}"),
    Shape(
        "aws-session-token",
        "mongodb://AKIAEXAMPLE:x@{host}:notaport/?authMechanism=MONGODB-AWS"
        "&authMechanismProperties=AWS_SESSION_TOKEN:{pw}",
    ),
    Shape(
        "secret-option",
        "mongodb://{host}/?tls=true&tlsCertificateKeyFilePassword={pw}&serverSelectionTimeoutMS=300",
    ),
]
SHAPE_IDS = [s.id for s in SHAPES]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def leaks(text: str) -> bool:
    return MARK.lower() in text.lower()


@pytest.fixture
def shapes(mongo_uri: str) -> dict[str, str]:
    host, closed = hosts_part(mongo_uri).split(",")[0], closed_port()
    return {s.id: s.format(host, closed) for s in SHAPES}


@pytest.fixture
def stored_backup(mongo_uri: str, dbname: str, tmp_path: Path) -> list[str]:
    """The restore flags of a complete backup, so that a restore gets as far as MongoDB."""
    with MongoClient(mongo_uri) as client:
        client[dbname].things.insert_many([{"n": i} for i in range(10)])
    url = f"file://{tmp_path}/stored"
    done = run_cli(["backup", "--uri", mongo_uri, "--to", url, "--ns-include", f"{dbname}.*"])
    assert done.returncode == 0, done.stderr
    return ["--from", url, "--ns-from", f"{dbname}.*", "--ns-to", f"{dbname}_restored.*"]


def test_the_cli_never_prints_a_password(
    shapes: dict[str, str], stored_backup: list[str], tmp_path: Path
) -> None:
    """Promise: whatever shape the connection string has, the CLI prints no part of its
    password: not on stdout, not on stderr, not in --json output nor in DEBUG logs; it fails
    with one line and the documented exit code."""
    runs: list[tuple[str, str, list[str], dict[str, str]]] = []
    for shape, uri in shapes.items():
        runs.append(
            (
                shape,
                "backup",
                ["--log-level", "DEBUG", "backup", "--uri", uri, "--to", str(tmp_path / shape)],
                {},
            )
        )
        restore = ["--json", "restore", *stored_backup]
        runs.append((shape, "restore", restore, {"MONGODB_URI": uri}))  # the URI from the environment
    with ThreadPoolExecutor(4) as pool:
        results: list[CliResult] = list(pool.map(lambda r: run_cli(r[2], env=r[3], timeout=120), runs))

    for (shape, command, _, _), done in zip(runs, results, strict=True):
        where = f"{command} with the {shape!r} URI"
        assert not leaks(done.stdout), f"{where} printed the password: {done.stdout}"
        assert not leaks(done.stderr), f"{where} printed the password: {done.stderr}"
        assert "Traceback" not in done.stderr, f"{where}: {done.stderr}"
        assert done.returncode in (2, 6), f"{where} exited {done.returncode}: {done.stderr}"
        errors = [line for line in done.stderr.splitlines() if line.startswith(f"mongo-backup {command}:")]
        assert len(errors) == 1, f"{where}: {done.stderr}"
    by_shape = {(shape, command): done for (shape, command, _, _), done in zip(runs, results, strict=True)}
    # the masked URI still says whose it is
    assert "backup:***@" in by_shape[("postgres", "backup")].stderr
    assert by_shape[("wrong-credentials", "backup")].returncode == 6
    assert "refused access" in by_shape[("wrong-credentials", "backup")].stderr


def test_a_uri_given_without_its_flag_is_masked_in_the_usage_error(mongo_uri: str) -> None:
    """Promise: a connection string typed where a flag was expected (`--uri` forgotten) is not
    echoed with its password in the usage error."""
    host = hosts_part(mongo_uri).split(",")[0]
    done = run_cli(["backup", "--to", "/tmp/nowhere", f"mongodb://backup:Typo{MARK}@{host}/"])
    assert done.returncode == 2, done.stderr
    assert not leaks(done.output), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "backup:***@" in done.stderr, done.stderr


def test_the_operator_never_writes_a_password(
    shapes: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Promise: whatever shape the connection string in a MongoBackup's Secret has, no part of
    its password appears in the object's status (error, conditions), in its Events or in the
    operator's log records; the backup fails with a specific reason."""
    caplog.set_level(logging.DEBUG)
    settings = replace(FAST, max_concurrent_runs=len(SHAPES))
    objects: dict[str, dict[str, Any]] = {}
    events: dict[str, list[dict[str, Any]]] = {}
    with KubeEmulator() as kube:
        kube.load_crds()
        with OperatorThread(kube.url, settings):
            for i, shape in enumerate(SHAPE_IDS):
                secret(kube, f"uri-{i}", {"uri": shapes[shape]})
                kube.apply(
                    backup_object(f"shape-{i}", str(tmp_path / "backups"), ["x.*"], secret_name=f"uri-{i}")
                )
            for i, shape in enumerate(SHAPE_IDS):
                objects[shape], events[shape] = _failed_with_event(kube, f"shape-{i}")

    for shape in SHAPE_IDS:
        status = objects[shape]["status"]
        assert not leaks(str(objects[shape])), f"{shape}: the status holds the password: {status}"
        assert not leaks(str(events[shape])), f"{shape}: an Event holds the password: {events[shape]}"
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] in ("InvalidURI", "MongoDBUnreachable", "MongoDBAuthenticationFailed"), status
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [formatter.format(record) for record in caplog.records]
    assert any("shape-" in line for line in logged)  # the operator did log about these objects
    leaked = [line for line in logged if leaks(line)]
    assert not leaked, f"the operator logged the password: {leaked[:3]}"


def _failed_with_event(kube: KubeEmulator, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The object once Failed, and its Events once the Failed one has been posted."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        obj = get(kube, "mongobackups", name) or {}
        if (obj.get("status") or {}).get("phase") in ("Completed", "Failed"):
            posted = events_of(kube, name)
            if any(e["reason"] == "Failed" for e in posted):
                assert obj["status"]["phase"] == "Failed", obj["status"]
                return obj, posted
        time.sleep(0.05)
    raise AssertionError(
        f"{name} did not fail with a Failed event within 60 s: {get(kube, 'mongobackups', name)}"
    )
