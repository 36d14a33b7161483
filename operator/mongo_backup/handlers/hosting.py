"""Running a run inside a Kopf daemon: the run is a task of its own, cancelled as soon as Kopf
asks the daemon to stop (object deleted, operator exiting or paused by a peer). The status
is left as it is then: the next operator process takes the run up again.

A user's cancel (annotation `mongobackup.io/cancel=true`) stops the run the same way: the run
undoes what it wrote before its task ends (the engine waits for its in-flight writes first),
and then the phase becomes Cancelled, final, saying what was undone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel

from ..api import (
    API_GROUP,
    API_VERSION,
    CANCEL_ANNOTATION,
    RESOURCES,
    TERMINAL_PHASES,
    CustomResource,
    RunStatus,
    SpecError,
    parse_spec,
)
from ..metrics import SCHEDULE_LABEL, Metrics, RunKind, RunSeries
from ..runner import Failure, SecretUnavailable, Waiting, drive
from ..runner.jobspec import Owner
from ..runner.lifecycle import Job, Outcome
from ..runner.status import StatusWriter
from .jobs import JobRun, run_as_jobs, run_mode_of
from .link import ResourceLink
from .recording import record_final
from .runtime import Runtime
from .settings import runtime_of

SpecT = TypeVar("SpecT", bound=BaseModel)
NOT_STARTED = "it had not started: nothing was written"


async def run_daemon(
    plural: str,
    spec_model: type[SpecT],
    make_job: Callable[[ResourceLink, SpecT, dict[str, Any], Runtime], Job],
    body: kopf.Body,
    meta: kopf.Meta,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: Any,
) -> None:
    """What each kind's daemon does: parse the spec (a bad one fails at once), make the job,
    and host its run until it ends or Kopf stops the daemon."""
    runtime = runtime_of(memo)
    assert runtime.kube is not None and runtime.slots is not None
    link = ResourceLink(runtime.kube, plural, body, logger)
    status = dict(body.get("status") or {})
    resource = _resource(plural)
    assert issubclass(resource.status_model, RunStatus)
    series = series_of(runtime.metrics, plural, meta)
    writer = StatusWriter(
        link, resource.status_model, _run_word(resource), status, meta.get("generation"), series
    )
    try:
        spec = parse_spec(spec_model, body)
    except SpecError as exc:  # a spec that can never run: Failed without an attempt
        await writer.mark_failed(Failure("InvalidSpec", str(exc)), None)
        return
    job = make_job(link, spec, status, runtime)
    uid = str(meta.get("uid"))
    cancel = runtime.cancels.setdefault(uid, asyncio.Event())
    try:
        if cancel_requested(meta):  # after registering: a request between the two is not lost
            cancel.set()
        owner = Owner(resource.kind, plural, link.namespace, link.name, uid)
        if await run_mode_of(spec, status, owner, runtime) == "Job":
            run = JobRun(link, owner, spec, job, resource.status_model, runtime, logger)  # type: ignore[arg-type]
            try:
                stopped_writer = await run_as_jobs(run, writer, status, stopped, cancel)
            finally:
                # The pod writes the final phase, and Kopf stops this daemon as soon as it sees it
                # (the object is no longer runnable): the metrics are recorded from it here.
                final = dict(body.get("status") or {})
                if not series.finished and final.get("phase") in TERMINAL_PHASES:
                    record_final(series, final, count=True)
            if stopped_writer is not None and stopped_writer.phase not in TERMINAL_PHASES:
                await _cancel_unstarted(job, stopped_writer, {"phase": stopped_writer.phase}, logger)
            return
        if cancel.is_set():
            await _cancel_unstarted(job, writer, status, logger)
            return
        left = await host(
            drive(job, writer, status, runtime.settings, runtime.slots), stopped, logger, cancel
        )
        if left is not None and writer.phase not in TERMINAL_PHASES:
            if not left:  # stopped between the engine's steps, or before any attempt
                left = NOT_STARTED if writer.started is None else "it was stopped before it wrote anything"
            await writer.mark_cancelled(left, _elapsed(writer))
        elif left is not None:
            logger.info("the cancel came too late: the %s was already %s", writer.kind, writer.phase)
    finally:
        runtime.cancels.pop(uid, None)
        series.stopped()  # stopped with its status left Running (the next operator takes it up)


def cancel_requested(meta: Any) -> bool:
    return (meta.get("annotations") or {}).get(CANCEL_ANNOTATION) == "true"


async def _cancel_unstarted(job: Job, writer: StatusWriter, status: dict[str, Any], logger: Any) -> None:
    """Cancelled while no run of it is live here: before its first attempt, or after its
    operator was lost mid-attempt (phase Running), whose leftovers are undone first."""
    if status.get("phase") != "Running":
        await writer.mark_cancelled(NOT_STARTED, None)
        return
    try:
        await job.prepare()
        settled = await job.settle_lost_attempt()
    except (SecretUnavailable, Waiting, Failure) as exc:
        settled = f"what the lost attempt left could not be checked: {exc}"
    if isinstance(settled, Outcome):
        logger.info("the cancel came too late: a lost attempt had completed the %s", writer.kind)
        await writer.mark_completed(settled, 0.0)
        return
    await writer.mark_cancelled(settled, None)


def _elapsed(writer: StatusWriter) -> float | None:
    return None if writer.started is None else time.monotonic() - writer.started


def series_of(metrics: Metrics, plural: str, meta: Mapping[str, Any]) -> RunSeries:
    """The metrics series of one MongoBackup/MongoRestore (labelled with its schedule)."""
    labels = meta.get("labels") or {}
    return metrics.run(
        run_kind(plural), str(meta.get("namespace")), str(meta.get("name")), labels.get(SCHEDULE_LABEL)
    )


def run_kind(plural: str) -> RunKind:
    return "backup" if _run_word(_resource(plural)) == "backup" else "restore"


def _resource(plural: str) -> CustomResource:
    return next(r for r in RESOURCES if r.plural == plural)


def _run_word(resource: CustomResource) -> str:
    """ "backup" for MongoBackup, "restore" for MongoRestore: the word of events and messages."""
    return resource.kind.removeprefix("Mongo").lower()


async def host(
    run: Coroutine[Any, Any, None], stopped: kopf.DaemonStopped, logger: Any, cancel: asyncio.Event
) -> str | None:
    """Run `run` until it ends, Kopf stops the daemon, or `cancel` is set. After a cancel,
    what the stopped run left, in words ("" when the engine said nothing; None when the run
    was not cancelled)."""
    task = asyncio.create_task(run)
    stopping = asyncio.ensure_future(stopped.wait())
    cancelling = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({task, stopping, cancelling}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        cancelling.cancel()
        if not task.done():
            logger.info(
                "stopping the run: %s", "cancelled by the user" if cancel.is_set() else stopped.reason
            )
            task.cancel()
    try:
        await task
    except asyncio.CancelledError as exc:
        if cancel.is_set():
            return str(exc) if exc.args else ""
    return None


def runnable(status: Any, **_: Any) -> bool:
    """Objects in a final phase (Completed, Failed, Cancelled) are never run again."""
    return (status or {}).get("phase") not in TERMINAL_PHASES


def watch_cancel_requests(plural: str) -> None:
    """Register the handler that hands a user's cancel (the annotation) to the run hosted here."""

    @kopf.on.event(API_GROUP, API_VERSION, plural, id="cancel", annotations={CANCEL_ANNOTATION: "true"})
    async def request_cancel(uid: str, memo: kopf.Memo, **_: Any) -> None:
        runtime_of(memo).request_cancel(uid)
