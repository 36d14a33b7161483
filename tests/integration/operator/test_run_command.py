"""`mongo-backup run` as the Deployment starts it: a process of its own that finds the API
server in its kubeconfig (in a pod: the service account), logs JSON, serves a health endpoint
and /metrics, backs up, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import backup_object, phase_is, wait_for
from tests.support.scrape import scrape_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def test_run_command_reconciles_with_json_logs(
    kube: KubeEmulator, mongo_secret: str, sync_mongo: MongoClient[Any], dbname: str, tmp_path: Path
) -> None:
    sync_mongo[dbname]["c"].insert_many([{"n": i} for i in range(30)])
    health = f"http://127.0.0.1:{free_port()}/healthz"
    metrics_port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "MONGO_BACKUP_NAMESPACES": "default"}
    log = tmp_path / "operator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "mongo_backup.cli", "run", "--log-format", "json"),
                *("--liveness", health, "--metrics-port", str(metrics_port)),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not healthy(health):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no health endpoint: " + log.read_text()
            time.sleep(0.1)
        kube.apply(backup_object("by-cli", str(tmp_path / "store"), [f"{dbname}.*"]))
        done = wait_for(kube, "mongobackups", "by-cli", phase_is("Completed", "Failed"))
        assert done["status"]["phase"] == "Completed", done["status"]
        scrape = scrape_url(f"http://127.0.0.1:{metrics_port}/metrics")
        by_cli = {"namespace": "default", "name": "by-cli", "kind": "backup"}
        assert scrape.value("mongobackup_runs_total", **by_cli, result="succeeded") == 1
        assert scrape.value("mongobackup_documents", **by_cli) == 30
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert records and all("message" in r for r in records)
    assert any(r.get("object", {}).get("name") == "by-cli" for r in records)


def test_a_metrics_port_in_use_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "MONGO_BACKUP_NAMESPACES": "default"}
        done = subprocess.run(
            [sys.executable, "-m", "mongo_backup.cli", "run", "--liveness", "", "--metrics-port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"mongo-backup run: --metrics-port: cannot serve metrics on 0.0.0.0:{port}: "), (
        line
    )
