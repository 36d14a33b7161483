"""MongoRestore: a daemon runs the restore while the object is neither Completed nor Failed.
No finalizer is kept once it is done: a restore leaves nothing to clean up."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import API_GROUP, API_VERSION, MONGO_RESTORE, MongoRestoreSpec, SpecError, parse_spec
from ..runner import RESTORED_FIELD, Failure, RestoreJob, drive
from .hosting import fail_at_once, host, runnable
from .link import ResourceLink
from .settings import runtime_of

PLURAL = MONGO_RESTORE.plural


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, id="run", when=runnable, cancellation_timeout=60)
async def run(
    body: kopf.Body,
    meta: kopf.Meta,
    uid: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: Any,
    **_: Any,
) -> None:
    runtime = runtime_of(memo)
    assert runtime.kube is not None and runtime.slots is not None
    link = ResourceLink(runtime.kube, PLURAL, body, logger)
    status = dict(body.get("status") or {})
    try:
        spec = parse_spec(MongoRestoreSpec, body)
    except SpecError as exc:
        await fail_at_once(link, status, Failure("InvalidSpec", str(exc)))
        return
    already = list(status.get(RESTORED_FIELD) or [])
    job = RestoreJob(link, uid, spec, already, runtime.settings)
    await host(
        drive(job, link, status, meta.get("generation"), runtime.settings, runtime.slots), stopped, logger
    )
