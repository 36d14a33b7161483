"""One run of one custom resource from start to end: wait for its inputs, wait for a free
slot, attempt it (retrying what may pass), and have the status writer (`runner.status`)
record each step.

The phases a user sees: Pending (waiting for a Secret, a backup or a slot; the Ready
condition says why), Running (with progress), then Completed, Failed or Cancelled, which are
final. A cancellation by the operator's exit or the object's deletion leaves the status as it
is on purpose: the next operator sees phase Running and takes the run up again (`attempts` + 1);
a user's cancel (the annotation) is recorded by the host as Cancelled once the run has stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from ..api import TERMINAL_PHASES
from .cluster import SecretUnavailable
from .failures import Failure, classify
from .progress import ProgressReporter
from .settings import RunnerSettings
from .status import Outcome, StatusWriter

__all__ = ["TERMINAL_PHASES", "Job", "Outcome", "Slots", "Waiting", "drive"]

log = logging.getLogger(__name__)


class Waiting(Exception):
    """An input is not there yet (e.g. the MongoBackup to restore is still running)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Job(Protocol):
    """The kind-specific part of a run (backup or restore)."""

    #: "backup" or "restore": used in messages
    kind: str

    async def prepare(self) -> None:
        """Resolve the inputs; raise SecretUnavailable/Waiting to wait, Failure to fail."""

    async def attempt(self, resumed: bool, reporter: ProgressReporter) -> Outcome:
        """One attempt; `resumed` is True when an earlier attempt of this run was lost."""

    @property
    def restored_field(self) -> str | None:
        """Status field the reporter keeps the restored namespaces in (restores only)."""

    async def settle_lost_attempt(self) -> Outcome | str:
        """Cancelled after an attempt was lost with its operator: undo what that attempt left
        (a backup's objects, a restore's temporaries and swaps) and say what was done, in
        words; or, when that attempt turns out to have completed, its outcome."""


class Slots:
    """At most `limit` runs at once in this operator; the others wait in Pending."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._semaphore = asyncio.Semaphore(self.limit)

    def free(self) -> bool:
        return not self._semaphore.locked()

    async def __aenter__(self) -> Slots:
        await self._semaphore.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


Sleep = Callable[[float], Awaitable[None]]


async def drive(
    job: Job,
    writer: StatusWriter,
    status: Mapping[str, Any],
    settings: RunnerSettings,
    slots: Slots,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Run `job` to a final phase, unless cancelled; `writer` writes every step."""
    phase = status.get("phase")
    if phase in TERMINAL_PHASES:
        return
    attempts = int(status.get("attempts") or 0)
    retries = list(settings.retry_delays)
    try:
        while True:
            await _wait_for_inputs(job, writer, settings, sleep)
            if not slots.free():
                await writer.mark_pending("Queued", f"waiting for one of {slots.limit} run slots", warn=False)
            async with slots:
                try:  # Secrets may have changed while queued or between attempts
                    await job.prepare()
                except (SecretUnavailable, Waiting):
                    continue
                resumed = attempts > 0
                attempts += 1
                clock = time.monotonic()
                await writer.mark_running(attempts, resumed=resumed)
                try:
                    reporter = ProgressReporter(
                        writer.progress, settings.progress_interval, job.restored_field
                    )
                    async with reporter:
                        outcome = await job.attempt(resumed, reporter)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failure = classify(exc)
                    if failure.reason == "InternalError":
                        log.exception(
                            "%s %s/%s failed unexpectedly", job.kind, writer.link.namespace, writer.link.name
                        )
                    if not (failure.retryable and retries):
                        await _uninterrupted(writer.mark_failed(failure, time.monotonic() - clock))
                        return
                    delay = retries.pop(0)
                    await writer.mark_retrying(failure, delay)
                    await sleep(delay)
                    continue
            await _uninterrupted(writer.mark_completed(outcome, time.monotonic() - clock))
            return
    except Failure as failure:
        await _uninterrupted(writer.mark_failed(classify(failure), None))


async def _uninterrupted(final: Awaitable[None]) -> None:
    """Write a final phase to its end even when the run is cancelled meanwhile: a backup that
    completed must not lose its Completed status to a late cancel (which then sees a final
    phase and leaves it)."""
    task = asyncio.ensure_future(final)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _wait_for_inputs(job: Job, writer: StatusWriter, settings: RunnerSettings, sleep: Sleep) -> None:
    waiting_for: str | None = None
    while True:
        try:
            await job.prepare()
            return
        except (SecretUnavailable, Waiting) as exc:
            if exc.reason != waiting_for:
                await writer.mark_pending(exc.reason, exc.message)
                waiting_for = exc.reason
            await sleep(settings.wait_interval)
