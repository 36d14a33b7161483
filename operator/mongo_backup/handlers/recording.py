"""A run's final phase, read from its status, recorded in its metrics series: for runs whose
status this process did not write itself (a Job's pod wrote it, or an earlier operator)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..metrics import RunSeries
from ..runner.conditions import parse_time


def record_final(series: RunSeries, status: Mapping[str, Any], *, count: bool) -> None:
    """`count=False`: only the gauges (an object that finished before this process started)."""
    phase = status.get("phase")
    completed = _timestamp(status.get("completedAt"))
    started = _timestamp(status.get("startedAt"))
    duration = completed - started if completed is not None and started is not None else None
    if phase == "Completed":
        series.succeeded(duration, status.get("storedBytes"), status.get("documents"), completed, count=count)
    elif phase == "Failed":
        series.failed(duration, completed, count=count)
    elif phase == "Cancelled" and count:
        series.cancelled(duration)


def _timestamp(value: Any) -> float | None:
    when = parse_time(value)
    return None if when is None else when.timestamp()
