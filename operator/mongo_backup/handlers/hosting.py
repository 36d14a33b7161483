"""Running a run inside a Kopf daemon: the run is a task of its own, cancelled as soon as Kopf
asks the daemon to stop (object deleted, operator exiting or paused by a peer). The status
is left as it is then: the next operator process takes the run up again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel

from ..api import RESOURCES, CustomResource, RunStatus, SpecError, parse_spec
from ..metrics import SCHEDULE_LABEL, Metrics, RunKind, RunSeries
from ..runner import Failure, drive
from ..runner.lifecycle import Job
from ..runner.status import StatusWriter
from .link import ResourceLink
from .runtime import Runtime
from .settings import runtime_of

SpecT = TypeVar("SpecT", bound=BaseModel)


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
    try:
        await host(drive(job, writer, status, runtime.settings, runtime.slots), stopped, logger)
    finally:  # stopped with its status left Running (the next operator takes it up): not running here
        series.stopped()


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


async def host(run: Coroutine[Any, Any, None], stopped: kopf.DaemonStopped, logger: Any) -> None:
    task = asyncio.create_task(run)
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            logger.info("stopping the run: %s", stopped.reason)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def runnable(status: Any, **_: Any) -> bool:
    """Completed and Failed objects are never run again."""
    return (status or {}).get("phase") not in ("Completed", "Failed")
