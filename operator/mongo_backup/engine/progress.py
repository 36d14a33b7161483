"""Keeps a run's Progress up to date and hands snapshots to the caller's callback."""

from __future__ import annotations

import inspect
import time
from typing import Literal

from .model import CollectionProgress, Progress, ProgressCallback


class ProgressTracker:
    def __init__(
        self, phase: Literal["backup", "restore", "verify"], callback: ProgressCallback | None
    ) -> None:
        self.state = Progress(phase=phase, started=time.monotonic())
        self._callback = callback

    def add_collection(self, namespace: str, documents: int, data_bytes: int) -> CollectionProgress:
        entry = CollectionProgress(namespace, documents_total=documents, bytes_total=data_bytes)
        self.state.collections[namespace] = entry
        self.state.documents_total += documents
        self.state.bytes_total += data_bytes
        return entry

    async def advance(self, entry: CollectionProgress, documents: int, data_bytes: int) -> None:
        entry.documents_done += documents
        entry.bytes_done += data_bytes
        self.state.documents_done += documents
        self.state.bytes_done += data_bytes
        await self.emit()

    async def finish(self, entry: CollectionProgress, restored_as: str | None = None) -> None:
        entry.finished = True
        # estimates (collStats) are corrected by what was really seen
        self.state.documents_total += entry.documents_done - entry.documents_total
        self.state.bytes_total += entry.bytes_done - entry.bytes_total
        entry.documents_total, entry.bytes_total = entry.documents_done, entry.bytes_done
        if restored_as:
            self.state.restored.append(restored_as)
        await self.emit()

    async def emit(self) -> None:
        self.state.elapsed = time.monotonic() - self.state.started
        if self._callback is None:
            return
        outcome = self._callback(self.state)
        if inspect.isawaitable(outcome):
            await outcome
