"""MongoBackup: a daemon runs the backup while the object is neither Completed nor Failed;
with `deletionPolicy: Delete`, deleting the object first deletes the stored backup: under the
backup name's lock, the manifest first, then exactly the objects it lists, then the lock."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import API_GROUP, API_VERSION, MONGO_BACKUP, MongoBackupSpec, SpecError, parse_spec
from ..engine.errors import IntegrityError
from ..engine.lock import LOCK_NAME, BackupLock, LockInfo, create_lock, read_lock
from ..engine.manifest import MANIFEST_NAME, BackupManifest, manifest_checksum
from ..redact import redact
from ..runner import BackupJob, Failure, SecretUnavailable
from ..storage import BucketNotFound, ObjectNotFound, Storage, StorageError
from .hosting import run_daemon, runnable
from .link import ResourceLink
from .settings import runtime_of

PLURAL = MONGO_BACKUP.plural
#: give up deleting stored objects after this many tries (a deletion must not hang forever)
DELETE_TRIES = 5


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


class _LockHeld(Exception):
    """Another run holds the backup name's lock: try the deletion again later."""


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL, id="delete-stored-backup", when=_deletes_data)
async def delete_stored_backup(
    body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, retry: int, logger: Any, **_: Any
) -> None:
    """Only the objects of this object's own completed backup go: the manifest must carry the
    checksum the status recorded (a name clash with someone else's backup deletes nothing),
    and only the objects that manifest lists are deleted, under the name's lock (so that no
    backup can be writing there meanwhile). A failed attempt's objects were already removed
    by the engine."""
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
        storage = job.open_storage()
        try:
            removed = await _delete_under_lock(storage, job.owner, checksum, link)
        finally:
            await storage.close()
    except _LockHeld as held:
        message = f"{storage.url} is in use by {held}: nothing deleted"
        if retry + 1 < DELETE_TRIES:
            link.post_event("Warning", "DeleteSkipped", f"{message}; trying again later")
            raise kopf.TemporaryError(message, delay=runtime.settings.wait_interval) from None
        link.post_event("Warning", "DeleteFailed", f"stored backup left in place: {message}")
        return
    except (SpecError, SecretUnavailable, StorageError, Failure) as exc:
        message = redact(getattr(exc, "message", None) or str(exc))
        if isinstance(exc, BucketNotFound | ObjectNotFound):
            return  # already gone
        if retry + 1 < DELETE_TRIES:
            raise kopf.TemporaryError(f"cannot delete the stored backup yet: {message}", delay=10) from None
        link.post_event("Warning", "DeleteFailed", f"stored backup left in place: {message}")
        return
    if removed is None:
        return
    logger.info("deleted %d stored objects of %s", removed, link.name)
    link.post_event("Normal", "Deleted", f"deleted {removed} stored objects at {storage.url}")


async def _delete_under_lock(storage: Storage, owner: str, checksum: str, link: ResourceLink) -> int | None:
    """The number of objects deleted, or None when there is nothing of ours to delete."""
    if not await storage.exists(MANIFEST_NAME):
        held = await read_lock(storage)
        if isinstance(held, LockInfo) and held.owner == owner:
            # An earlier try of this deletion removed the manifest, then failed: our lock still
            # proves that nobody else writes here, so what is left is ours to remove.
            lock = BackupLock(storage, held)
            removed = await lock.clear_leftovers()
            await storage.delete(LOCK_NAME)
            return removed + 1
        return None  # already gone
    created = await create_lock(storage, LockInfo.mine(owner, "delete"))
    if isinstance(created, BackupLock):
        lock = created
    elif created is not None and created.owner == owner:
        lock = BackupLock(storage, created)  # this object's own (its backup run left it)
    else:
        raise _LockHeld(created.describe() if created is not None else "another run")
    raw = await storage.read_bytes(MANIFEST_NAME)
    if manifest_checksum(raw) != checksum:
        await lock.release()
        link.post_event(
            "Warning",
            "DeleteSkipped",
            f"{storage.url} holds a different backup (checksum differs): nothing deleted",
        )
        return None
    try:
        manifest = BackupManifest.from_json(raw, f"{storage.url}/{MANIFEST_NAME}")
    except IntegrityError as exc:  # it has the recorded checksum: ours, yet unreadable now
        await lock.release()
        link.post_event("Warning", "DeleteFailed", f"stored backup left in place: {redact(str(exc))}")
        return None
    names = [obj.name for entry in manifest.collections for obj in entry.objects]
    # the manifest first: the backup stops being complete before its data goes
    await storage.delete(MANIFEST_NAME)
    for name in names:
        if name not in (MANIFEST_NAME, LOCK_NAME):
            await storage.delete(name)
    await storage.delete(LOCK_NAME)
    return len(names) + 1
