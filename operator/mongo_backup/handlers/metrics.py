"""Keeps the metrics in step with the objects the runs do not see: the series of an object go
when it is deleted (scheduled backups get a new name each run: their series must not pile up),
and an object that finished before this operator started gets its series from its status
(after a restart, the last success of each schedule is known again without a run)."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import API_GROUP, API_VERSION, MONGO_BACKUP, MONGO_BACKUP_SCHEDULE, MONGO_RESTORE
from ..runner import TERMINAL_PHASES
from .hosting import run_kind, series_of
from .recording import record_final
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
    record_final(series_of(metrics, resource.plural, meta), status, count=False)


@kopf.on.event(API_GROUP, API_VERSION, MONGO_BACKUP_SCHEDULE.plural, id="metrics")
def follow_schedule(type: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """A deleted schedule's series go with it (its daemon records them while it runs)."""
    if type == "DELETED":
        runtime_of(memo).metrics.forget_schedule(str(meta.get("namespace")), str(meta.get("name")))
