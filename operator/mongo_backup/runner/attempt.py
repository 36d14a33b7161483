"""One attempt of a run, alone: what a run's Job pod does (`mongo-backup run-one`). The same
steps and the same status writer as an attempt inside `drive`, so the status a user sees is
the same in both run modes; the operator that created the Job decides about the next one."""

from __future__ import annotations

import asyncio
import logging
import time

from .cluster import SecretUnavailable
from .failures import Failure, classify
from .jobspec import EXIT_RETRY
from .lifecycle import Job, Waiting
from .progress import ProgressReporter
from .settings import RunnerSettings
from .status import StatusWriter

log = logging.getLogger(__name__)

EXIT_COMPLETED = 0
EXIT_FAILED = 1


async def attempt_once(
    job: Job, writer: StatusWriter, attempt: int, retry_in: float | None, settings: RunnerSettings
) -> int:
    """Attempt number `attempt`; `retry_in` is the delay before the next one when this one
    fails in a way a retry may help (None: no attempt is left). Returns the exit code:
    0 completed (or failed for good, written Failed: 1), EXIT_RETRY when retried later."""
    try:
        await job.prepare()
    except (SecretUnavailable, Waiting) as exc:
        # the operator saw these inputs before it made the Job: they went away meanwhile
        return await _failed(writer, Failure(exc.reason, exc.message, retryable=True), retry_in, None)
    except Failure as given:
        await writer.mark_failed(classify(given), None)
        return EXIT_FAILED
    clock = time.monotonic()
    await writer.mark_running(attempt, resumed=attempt > 1)
    try:
        reporter = ProgressReporter(writer.progress, settings.progress_interval, job.restored_field)
        async with reporter:
            outcome = await job.attempt(attempt > 1, reporter)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        failure = classify(exc)
        if failure.reason == "InternalError":
            log.exception("%s %s/%s failed unexpectedly", job.kind, writer.link.namespace, writer.link.name)
        return await _failed(writer, failure, retry_in, time.monotonic() - clock)
    await writer.mark_completed(outcome, time.monotonic() - clock)
    return EXIT_FAILED if outcome.failure is not None else EXIT_COMPLETED


async def _failed(
    writer: StatusWriter, failure: Failure, retry_in: float | None, elapsed: float | None
) -> int:
    if failure.retryable and retry_in is not None:
        await writer.mark_retrying(failure, retry_in)
        return EXIT_RETRY
    await writer.mark_failed(failure, elapsed)
    return EXIT_FAILED
