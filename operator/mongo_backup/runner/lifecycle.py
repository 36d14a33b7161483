"""One run of one custom resource from start to end: wait for its inputs, wait for a free
slot, attempt it (retrying what may pass), and write each step to the status.

The phases a user sees: Pending (waiting for a Secret, a backup or a slot; the Ready
condition says why), Running (with progress), then Completed or Failed, which are final.
Cancellation (operator exit, object deletion) leaves the status as it is on purpose: the next
operator sees phase Running and takes the run up again (`attempts` + 1)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .cluster import ObjectLink, SecretUnavailable
from .conditions import ConditionStatus, now_iso, set_condition
from .failures import Failure, classify
from .progress import ProgressReporter
from .settings import RunnerSettings
from .units import human_duration

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Completed", "Failed")


class Waiting(Exception):
    """An input is not there yet (e.g. the MongoBackup to restore is still running)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Outcome:
    """What a successful attempt writes: status fields (camelCase), extra conditions and the
    Completed event's message; `failure` turns a finished run into a Failed one (e.g. the
    verification found a difference)."""

    status: dict[str, Any]
    event_message: str
    conditions: list[tuple[str, ConditionStatus, str, str]] = field(default_factory=list)
    failure: Failure | None = None


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


class StatusWriter:
    """Merge patches of one object's status; keeps the conditions list, which a merge patch
    replaces as a whole."""

    def __init__(self, link: ObjectLink, status: Mapping[str, Any], generation: int | None) -> None:
        self.link = link
        self.generation = generation
        self.conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]

    def condition(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.conditions = set_condition(self.conditions, type_, status, reason, message, self.generation)

    async def patch(self, fields: Mapping[str, Any]) -> None:
        body = {**fields, "conditions": self.conditions}
        if self.generation is not None:
            body["observedGeneration"] = self.generation
        await self.link.patch_status(body)

    async def patch_fields(self, fields: Mapping[str, Any]) -> None:
        """A patch that leaves the conditions alone (progress)."""
        await self.link.patch_status(fields)


Sleep = Callable[[float], Awaitable[None]]


async def drive(
    job: Job,
    link: ObjectLink,
    status: Mapping[str, Any],
    generation: int | None,
    settings: RunnerSettings,
    slots: Slots,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Run `job` to a final phase, unless cancelled."""
    phase = status.get("phase")
    if phase in TERMINAL_PHASES:
        return
    attempts = int(status.get("attempts") or 0)
    writer = StatusWriter(link, status, generation)
    retries = list(settings.retry_delays)
    try:
        while True:
            await _wait_for_inputs(job, writer, settings, sleep)
            if not slots.free():
                writer.condition("Ready", "False", "Queued", f"waiting for one of {slots.limit} run slots")
                await writer.patch({"phase": "Pending"})
            async with slots:
                try:  # Secrets may have changed while queued or between attempts
                    await job.prepare()
                except (SecretUnavailable, Waiting):
                    continue
                resumed = attempts > 0
                attempts += 1
                started = datetime.now(UTC)
                clock = time.monotonic()
                writer.condition("Ready", "True", "InputsResolved", "")
                writer.condition("Running", "True", "Attempt", f"attempt {attempts} started")
                await writer.patch(
                    {
                        "phase": "Running",
                        "attempts": attempts,
                        "startedAt": _iso(started),
                        "error": None,
                        "progress": None,
                    }
                )
                note = ", taking up a lost attempt" if resumed else ""
                link.post_event("Normal", "Started", f"{job.kind} started (attempt {attempts}{note})")
                try:
                    reporter = ProgressReporter(
                        writer.patch_fields, settings.progress_interval, job.restored_field
                    )
                    async with reporter:
                        outcome = await job.attempt(resumed, reporter)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failure = classify(exc)
                    if failure.reason == "InternalError":
                        log.exception("%s %s/%s failed unexpectedly", job.kind, link.namespace, link.name)
                    if not (failure.retryable and retries):
                        await _fail(job, writer, failure, time.monotonic() - clock)
                        return
                    delay = retries.pop(0)
                    message = f"{failure.message}; retrying in {delay:g}s"
                    writer.condition("Running", "False", failure.reason, message)
                    await writer.patch({"phase": "Pending", "error": message})
                    link.post_event("Warning", failure.reason, message)
                    await sleep(delay)
                    continue
            await _finish(job, writer, outcome, time.monotonic() - clock)
            return
    except Failure as failure:
        await _fail(job, writer, failure, None)


async def _wait_for_inputs(job: Job, writer: StatusWriter, settings: RunnerSettings, sleep: Sleep) -> None:
    waiting_for: str | None = None
    while True:
        try:
            await job.prepare()
            return
        except (SecretUnavailable, Waiting) as exc:
            if exc.reason != waiting_for:
                writer.condition("Ready", "False", exc.reason, exc.message)
                await writer.patch({"phase": "Pending", "error": exc.message})
                writer.link.post_event("Warning", exc.reason, exc.message)
                waiting_for = exc.reason
            await sleep(settings.wait_interval)


async def _fail(job: Job, writer: StatusWriter, failure: Failure, elapsed: float | None) -> None:
    writer.condition("Running", "False", failure.reason, failure.message)
    writer.condition("Completed", "False", failure.reason, failure.message)
    writer.condition("Failed", "True", failure.reason, failure.message)
    fields: dict[str, Any] = {"phase": "Failed", "error": failure.message, "completedAt": now_iso()}
    if elapsed is not None:
        fields["duration"] = human_duration(elapsed)
    writer.link.post_event("Warning", "Failed", f"{job.kind} failed: {failure.reason}: {failure.message}")
    await writer.patch(fields)


async def _finish(job: Job, writer: StatusWriter, outcome: Outcome, elapsed: float) -> None:
    if outcome.failure is not None:
        for type_, status, reason, message in outcome.conditions:
            writer.condition(type_, status, reason, message)
        await writer.patch(outcome.status)
        await _fail(job, writer, outcome.failure, elapsed)
        return
    writer.condition("Running", "False", "Finished", f"{job.kind} finished")
    writer.condition("Failed", "False", "Completed", "")
    writer.condition("Completed", "True", "Completed", outcome.event_message)
    for type_, status, reason, message in outcome.conditions:
        writer.condition(type_, status, reason, message)
    fields = {
        "phase": "Completed",
        "completedAt": now_iso(),
        "duration": human_duration(elapsed),
        "error": None,
        **outcome.status,
    }
    writer.link.post_event("Normal", "Completed", outcome.event_message)
    await writer.patch(fields)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
