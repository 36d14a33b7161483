"""Keeps the metrics in step with the objects the runs do not see: the series of an object go
when it is deleted (scheduled backups get a new name each run: their series must not pile up),
and an object that finished before this operator started gets its series from its status
(after a restart, the last success of each schedule is known again without a run)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import kopf

from ..api import API_GROUP, API_VERSION, MONGO_BACKUP, MONGO_BACKUP_SCHEDULE, MONGO_RESTORE
from ..runner import TERMINAL_PHASES
from .hosting import run_kind, series_of
from .settings import runtime_of


@kopf.on.event(API_GROUP, API_VERSION, MONGO_BACKUP.plural, id="metrics")
@kopf.on.event(API_GROUP, API_VERSION, MONGO_RESTORE.plural, id="metrics")
def follow(
    type: str | None, meta: kopf.Meta, status: kopf.Status, resource: kopf.Resource, memo: kopf.Memo, **_: Any
) -> None:
    metrics = runtime_of(memo).metrics
    kind = run_kind(resource.plural)
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    if type == "DELETED":
        metrics.forget_run(kind, namespace, name)
        return
    phase = status.get("phase")
    if phase not in TERMINAL_PHASES or phase == "Cancelled" or metrics.knows_run(kind, namespace, name):
        return  # a Cancelled run is neither a success nor a failure: nothing to rebuild
    completed = _timestamp(status.get("completedAt"))
    started = _timestamp(status.get("startedAt"))
    duration = completed - started if completed is not None and started is not None else None
    series = series_of(metrics, resource.plural, meta)
    if phase == "Completed":
        series.succeeded(duration, status.get("storedBytes"), status.get("documents"), completed, count=False)
    else:
        series.failed(duration, completed, count=False)


@kopf.on.event(API_GROUP, API_VERSION, MONGO_BACKUP_SCHEDULE.plural, id="metrics")
def follow_schedule(type: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """A deleted schedule's series go with it (its daemon records them while it runs)."""
    if type == "DELETED":
        runtime_of(memo).metrics.forget_schedule(str(meta.get("namespace")), str(meta.get("name")))


def _timestamp(value: Any) -> float | None:
    """A status time (RFC 3339, e.g. 2026-12-05T10:00:00Z) as Unix time; None when absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
