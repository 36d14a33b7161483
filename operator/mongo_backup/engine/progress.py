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
        #: collections whose totals come from a count given after add_collection: their byte
        #: total is estimated from the average document seen so far, until they finish
        self._counted: set[str] = set()
        #: unfinished collections whose size is not known yet (not counted, or counted but no
        #: document seen to estimate bytes from): while any is left, `totals_known` is False
        self._unknown: set[str] = set()

    def add_collection(
        self, namespace: str, documents: int, data_bytes: int, *, known: bool = True
    ) -> CollectionProgress:
        """`known=False`: the totals come later (`set_totals`) or at the collection's end."""
        entry = CollectionProgress(namespace, documents_total=documents, bytes_total=data_bytes)
        self.state.collections[namespace] = entry
        self.state.documents_total += documents
        self.state.bytes_total += data_bytes
        if not known:
            self._unknown.add(namespace)
            self.state.totals_known = False
        return entry

    def _known(self, entry: CollectionProgress) -> None:
        """The entry's size is known, or estimated from what was seen of it."""
        if entry.namespace in self._unknown and (
            entry.finished
            or (entry.namespace in self._counted and (entry.documents_done or not entry.documents_total))
        ):
            self._unknown.discard(entry.namespace)
            self.state.totals_known = not self._unknown

    async def set_totals(self, entry: CollectionProgress, documents: int) -> None:
        """A collection's document count, known after add_collection (a backup counts in the
        background, while the collection may already be streaming). The byte total follows
        from the average document seen so far (0, unknown, before the first batch). A finished
        collection keeps what was really seen; a total is never below what is done."""
        if entry.finished:
            return
        entry_documents = max(documents, entry.documents_done)
        self._counted.add(entry.namespace)
        self._set(entry, entry_documents, self._bytes_estimate(entry, entry_documents))
        self._known(entry)
        await self.emit()

    async def advance(self, entry: CollectionProgress, documents: int, data_bytes: int) -> None:
        entry.documents_done += documents
        entry.bytes_done += data_bytes
        self.state.documents_done += documents
        self.state.bytes_done += data_bytes
        if entry.namespace in self._counted:
            total = max(entry.documents_total, entry.documents_done)
            self._set(entry, total, self._bytes_estimate(entry, total))
            self._known(entry)
        await self.emit()

    async def finish(self, entry: CollectionProgress, restored_as: str | None = None) -> None:
        entry.finished = True
        self._counted.discard(entry.namespace)
        # estimates (counts, sizes from the manifest) are corrected by what was really seen
        self._set(entry, entry.documents_done, entry.bytes_done)
        self._known(entry)
        if restored_as:
            self.state.restored.append(restored_as)
        await self.emit()

    @staticmethod
    def _bytes_estimate(entry: CollectionProgress, documents: int) -> int:
        if not entry.documents_done:
            return 0
        return max(entry.bytes_done, round(documents * entry.bytes_done / entry.documents_done))

    def _set(self, entry: CollectionProgress, documents: int, data_bytes: int) -> None:
        self.state.documents_total += documents - entry.documents_total
        self.state.bytes_total += data_bytes - entry.bytes_total
        entry.documents_total, entry.bytes_total = documents, data_bytes

    async def emit(self) -> None:
        self.state.elapsed = time.monotonic() - self.state.started
        if self._callback is None:
            return
        outcome = self._callback(self.state)
        if inspect.isawaitable(outcome):
            await outcome
