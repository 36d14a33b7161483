"""Engine progress -> status, throttled: the engine reports every batch, the status gets a
merge patch at most every `interval` seconds (and at once when a restored namespace is
added, because a restart resumes from that list). The patches go through the status writer
(`runner.status.StatusWriter.progress`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..engine.model import Progress
from .failures import one_line
from .units import human_duration, human_rate

log = logging.getLogger(__name__)

PatchFn = Callable[[dict[str, Any]], Awaitable[None]]


def progress_status(snapshot: Progress) -> dict[str, Any]:
    eta, percent = snapshot.eta, snapshot.percent
    return {
        "percent": round(percent, 1) if percent is not None else None,
        "totalsKnown": snapshot.totals_known,
        "documentsDone": snapshot.documents_done,
        "documentsTotal": snapshot.documents_total,
        "bytesDone": snapshot.bytes_done,
        "bytesTotal": snapshot.bytes_total,
        "rate": human_rate(snapshot.rate),
        "eta": human_duration(eta) if eta is not None else None,
        "current": sorted(snapshot.current),
    }


class ProgressReporter:
    """Receives engine snapshots (cheap: stores the latest) and patches the status from a
    background task. Use as an async context manager around the engine call."""

    def __init__(self, patch: PatchFn, interval: float, restored_field: str | None = None) -> None:
        self._patch = patch
        self._interval = interval
        self._restored_field = restored_field
        self._latest: Progress | None = None
        self._sent: dict[str, Any] | None = None
        self._restored: list[str] = []
        self._restored_sent = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __call__(self, snapshot: Progress) -> None:
        self._latest = snapshot
        if len(snapshot.restored) > len(self._restored):
            self._restored = list(snapshot.restored)
            self._wakeup.set()

    async def __aenter__(self) -> ProgressReporter:
        self._task = asyncio.create_task(self._loop(), name="status-progress")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # What was restored must be on record even when the run failed part-way.
        if self._restored_field and len(self._restored) > self._restored_sent:
            with contextlib.suppress(Exception):
                await self._patch({self._restored_field: list(self._restored)})

    @property
    def latest(self) -> Progress | None:
        return self._latest

    @property
    def restored(self) -> list[str]:
        return list(self._restored)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._interval)
            self._wakeup.clear()
            await self._flush()

    async def _flush(self) -> None:
        patch: dict[str, Any] = {}
        if self._latest is not None:
            progress = progress_status(self._latest)
            if progress != self._sent:
                patch["progress"] = progress
        restored_count = len(self._restored)
        if self._restored_field and restored_count > self._restored_sent:
            patch[self._restored_field] = list(self._restored)
        if not patch:
            return
        try:
            await self._patch(patch)
        except Exception as exc:  # a lost progress patch is not worth failing the run
            log.warning("progress patch failed: %s", one_line(exc))
            return
        self._sent = patch.get("progress", self._sent)
        self._restored_sent = max(self._restored_sent, restored_count)
