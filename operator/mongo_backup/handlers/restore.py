"""MongoRestore: a daemon runs the restore while the object is neither Completed nor Failed.
No finalizer is kept once it is done: a restore leaves nothing to clean up."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import API_GROUP, API_VERSION, MONGO_RESTORE, MongoRestoreSpec
from ..runner import RESTORED_FIELD, RestoreJob
from .hosting import run_daemon, runnable, watch_cancel_requests

PLURAL = MONGO_RESTORE.plural

watch_cancel_requests(PLURAL)


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
    await run_daemon(
        PLURAL,
        MongoRestoreSpec,
        lambda link, spec, status, runtime: RestoreJob(
            link, uid, spec, list(status.get(RESTORED_FIELD) or []), runtime.settings
        ),
        body,
        meta,
        memo,
        stopped,
        logger,
    )
