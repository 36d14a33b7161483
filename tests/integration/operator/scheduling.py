"""What the MongoBackupSchedule tests share: a schedule object, its backups (by label, as a
user selects them), bounded polling, and the status and events a user reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mongo_backup.api import SCHEDULE_LABEL
from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    GROUP_VERSION,
    NAMESPACE,
    events_of,
    get,
    path_of,
    phase_is,
    wait_for,
)

SCHEDULES = "mongobackupschedules"
BACKUPS = "mongobackups"


def stamp(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y%m%d%H%M%S}"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_object(
    name: str, path: Path, include: list[str], schedule: str = "@hourly", **spec: Any
) -> dict[str, Any]:
    template = {
        "mongodb": {"uriSecretRef": {"name": "mongo", "key": "uri"}},
        "storage": {"filesystem": {"path": str(path)}},
        "namespaces": {"include": include},
        **spec.pop("template", {}),
    }
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "MongoBackupSchedule",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"schedule": schedule, "backupTemplate": template, **spec},
    }


def backups_of(kube: KubeEmulator, schedule: str) -> dict[str, dict[str, Any]]:
    """The schedule's MongoBackups by name (selected by its label, as a user would)."""
    items = kube.api("GET", f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/{BACKUPS}")["items"]
    return {
        o["metadata"]["name"]: o
        for o in items
        if (o["metadata"].get("labels") or {}).get(SCHEDULE_LABEL) == schedule
    }


def eventually(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def edit_schedule(kube: KubeEmulator, name: str, spec: dict[str, Any]) -> None:
    """Merge-patch a schedule's spec, and wait until the operator has evaluated the edited
    spec (status.observedGeneration): a clock moved next meets the new spec, not the old one
    (its watch event can arrive after the clock's move on a loaded machine)."""
    edited = kube.api("PATCH", path_of(SCHEDULES, name), {"spec": spec}, "application/merge-patch+json")
    generation = edited["metadata"]["generation"]
    eventually(
        lambda: (status_of(kube, name).get("observedGeneration") or 0) >= generation,
        f"schedule {name} evaluated at generation {generation}",
    )


def status_of(kube: KubeEmulator, name: str) -> dict[str, Any]:
    obj = get(kube, SCHEDULES, name) or {}
    return dict(obj.get("status") or {})


def reasons(kube: KubeEmulator, name: str) -> list[str]:
    return [e["reason"] for e in events_of(kube, name)]


def event_messages(kube: KubeEmulator, name: str, reason: str) -> list[str]:
    return [e["message"] for e in events_of(kube, name) if e["reason"] == reason]


def completed(kube: KubeEmulator, name: str) -> dict[str, Any]:
    """The backup `name` completed, and its schedule has seen it complete: the schedule learns
    it through its own watch, a moment after the API server has it, and a run due before then
    finds it still running (and is skipped under concurrencyPolicy Forbid, as a CronJob's is).
    A test that moves the clock on waits for this first: never a race against the watch."""
    done = wait_for(kube, BACKUPS, name, phase_is("Completed", "Failed"), what=f"{name} finished")
    assert done["status"]["phase"] == "Completed", done["status"]
    schedule = (done["metadata"].get("labels") or {}).get(SCHEDULE_LABEL)
    if schedule:
        eventually(
            lambda: ((status_of(kube, schedule).get("lastSuccessfulBackup") or {}).get("name") or "") >= name,
            f"schedule {schedule} seeing {name} completed",
        )
    return done
