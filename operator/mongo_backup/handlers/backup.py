"""MongoBackup: a daemon runs the backup while the object is neither Completed nor Failed;
with `deletionPolicy: Delete`, deleting the object first deletes the stored backup: under the
backup name's lock, the manifest first, then exactly the objects it lists, then the lock."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import API_GROUP, API_VERSION, MONGO_BACKUP, MongoBackupSpec, SpecError, parse_spec
from ..redact import redact
from ..runner import BackupJob, Failure, SecretUnavailable
from ..storage import BucketNotFound, ObjectNotFound, StorageError
from .hosting import run_daemon, runnable, watch_cancel_requests
from .link import ResourceLink
from .settings import runtime_of

PLURAL = MONGO_BACKUP.plural
#: give up deleting stored objects after this many tries (a deletion must not hang forever)
DELETE_TRIES = 5

watch_cancel_requests(PLURAL)


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, id="run", when=runnable, cancellation_timeout=60)
async def run(
    body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: Any, **_: Any
) -> None:
    await run_daemon(
        PLURAL,
        MongoBackupSpec,
        lambda link, spec, status, runtime: BackupJob(link, spec, runtime.settings, owner=meta.get("uid")),
        body,
        meta,
        memo,
        stopped,
        logger,
    )


def _deletes_data(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Delete"


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL, id="delete-stored-backup", when=_deletes_data)
async def delete_stored_backup(
    body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, retry: int, logger: Any, **_: Any
) -> None:
    """Only the objects of this object's own completed backup go (see BackupJob.delete_stored):
    a name clash with someone else's backup deletes nothing, and a backup name held by another
    run is retried later. A failed attempt's objects were already removed by the engine."""
    runtime = runtime_of(memo)
    assert runtime.kube is not None
    link = ResourceLink(runtime.kube, PLURAL, body, logger)
    status = body.get("status") or {}
    checksum = status.get("checksum")
    if status.get("phase") != "Completed" or not checksum:
        return
    try:
        spec = parse_spec(MongoBackupSpec, body)
        job = BackupJob(link, spec, runtime.settings, owner=meta.get("uid"))
        await job.prepare_storage()
        deletion = await job.delete_stored(checksum)
    except (SpecError, SecretUnavailable, StorageError, Failure) as exc:
        message = redact(getattr(exc, "message", None) or str(exc))
        if isinstance(exc, BucketNotFound | ObjectNotFound):
            return  # already gone
        if retry + 1 < DELETE_TRIES:
            raise kopf.TemporaryError(f"cannot delete the stored backup yet: {message}", delay=10) from None
        link.post_event("Warning", "DeleteFailed", f"stored backup left in place: {message}")
        return
    if deletion.held_by is not None:
        message = f"{deletion.location} is in use by {redact(deletion.held_by)}: nothing deleted"
        if retry + 1 < DELETE_TRIES:
            link.post_event("Warning", "DeleteSkipped", f"{message}; trying again later")
            raise kopf.TemporaryError(message, delay=runtime.settings.wait_interval)
        link.post_event("Warning", "DeleteFailed", f"stored backup left in place: {message}")
        return
    if deletion.skipped is not None:
        link.post_event("Warning", *deletion.skipped)
        return
    if deletion.removed:
        logger.info("deleted %d stored objects of %s", deletion.removed, link.name)
        link.post_event(
            "Normal", "Deleted", f"deleted {deletion.removed} stored objects at {deletion.location}"
        )
