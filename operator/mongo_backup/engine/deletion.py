"""Deleting a stored backup, always under its name's lock (docs/FORMAT.md section 3a): the
operator (`deletionPolicy: Delete`) and `mongo-backup prune` share it.

- `delete_backup`: a complete backup. The lock (`purpose: delete`) first, then
  `manifest.json` (the backup stops being complete before its data goes), then exactly the
  objects the manifest lists, then the lock. Never a prefix: an object the manifest does not
  list stays.
- `delete_incomplete`: a root of ours without manifest and without lock (a run that died
  before the lock existed, or an older version's). Under a new lock, every object under it.

A lock held by someone else deletes nothing (`Deletion.held_by`): the caller tries again
later or says so. A failure before anything was deleted gives the lock back; after, the lock
stays, and the next try of the same owner finishes the deletion.

Failpoint (mongo_backup.engine.failpoints): `delete.locked`, once the lock is taken and
before anything is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..redact import redact
from ..storage import Storage
from .cancellation import clean_up
from .catalog import RootContents
from .errors import IntegrityError
from .failpoints import failpoint
from .lock import RELEASE_TIMEOUT, BackupLock, LockInfo, create_lock, read_lock
from .manifest import LOCK_NAME, MANIFEST_NAME, BackupManifest, manifest_checksum


@dataclass(frozen=True)
class Deletion:
    """What deleting a stored backup did."""

    location: str
    #: objects deleted (0: nothing was there, or nothing of ours)
    removed: int = 0
    #: another run holds the name's lock (who): nothing deleted, try again later
    held_by: str | None = None
    #: nothing deleted, for good: the reason and message of the Warning to post
    skipped: tuple[str, str] | None = None


async def delete_backup(storage: Storage, owner: str, checksum: str | None = None) -> Deletion:
    """Delete the complete backup at `storage` (its own root) under its lock, taken as `owner`.
    With `checksum`, only if its manifest has that checksum (the backup someone recorded, not
    another one written under the same name since); None: whatever complete backup is there."""
    done = Deletion(storage.url)
    if not await storage.exists(MANIFEST_NAME):
        held = await read_lock(storage)
        if isinstance(held, LockInfo) and held.owner == owner:
            # An earlier try of this deletion removed the manifest, then failed: our lock still
            # proves that nobody else writes here, so what is left is ours to remove.
            removed = await BackupLock(storage, held).clear_leftovers()
            await storage.delete(LOCK_NAME)
            return Deletion(storage.url, removed=removed + 1)
        return done  # already gone
    created = await create_lock(storage, LockInfo.mine(owner, "delete"))
    if isinstance(created, BackupLock):
        lock = created
    elif created is not None and created.owner == owner:
        lock = BackupLock(storage, created)  # this object's own (its backup run left it)
    else:
        return Deletion(storage.url, held_by=created.describe() if created is not None else "another run")
    try:
        await failpoint("delete.locked", location=storage.url)
        listed = await _listed_objects(storage, checksum)
        if isinstance(listed, Deletion):
            await lock.release()
            return listed
        # the manifest first: the backup stops being complete before its data goes
        await storage.delete(MANIFEST_NAME)
    except BaseException:
        # Nothing deleted yet: give the name back, so that a failed deletion blocks nothing.
        await clean_up(lock.release(), f"the lock of {storage.url}", RELEASE_TIMEOUT)
        raise
    # From here a failed try keeps the lock: the next one (or a user) finishes the deletion.
    for name in listed:
        if name not in (MANIFEST_NAME, LOCK_NAME):
            await storage.delete(name)
    await storage.delete(LOCK_NAME)
    return Deletion(storage.url, removed=len(listed) + 1)


async def _listed_objects(storage: Storage, checksum: str | None) -> list[str] | Deletion:
    """The objects of the backup to delete, or why nothing is deleted (the backup there is
    another one than the caller's, or unreadable)."""
    raw = await storage.read_bytes(MANIFEST_NAME)
    if checksum is not None and manifest_checksum(raw) != checksum:
        message = f"{storage.url} holds a different backup (checksum differs): nothing deleted"
        return Deletion(storage.url, skipped=("DeleteSkipped", message))
    try:
        manifest = BackupManifest.from_json(raw, f"{storage.url}/{MANIFEST_NAME}")
    except IntegrityError as exc:  # it has the recorded checksum: ours, yet unreadable now
        message = f"stored backup left in place: {redact(str(exc))}"
        return Deletion(storage.url, skipped=("DeleteFailed", message))
    return [obj.name for entry in manifest.collections for obj in entry.objects]


async def delete_incomplete(storage: Storage, owner: str) -> Deletion:
    """Delete an incomplete backup of ours that no run holds (no manifest, no lock, and at
    least one object only mongo-backup writes), under a new lock taken as `owner`: every
    object under its root, unfinished writes included. Anything else deletes nothing: a
    lock there (a run may be live: `held_by`), a manifest (complete now: `skipped`), or no
    object of ours (a mongodump directory or someone's files: `skipped`)."""
    contents = await RootContents.scan(storage)
    if not contents.ours and not contents.mongodump and not contents.others:
        return Deletion(storage.url)  # already gone
    if not contents.ours:
        return _not_ours(storage)
    created = await create_lock(storage, LockInfo.mine(owner, "delete"))
    if not isinstance(created, BackupLock):
        return Deletion(storage.url, held_by=created.describe() if created is not None else "another run")
    lock = created
    try:
        await failpoint("delete.locked", location=storage.url)
        # What is there now, under our lock: a run that finished meanwhile made it complete.
        contents = await RootContents.scan(storage)
        names = [o.name for o in (*contents.ours, *contents.mongodump, *contents.others)]
        names = [n for n in names if n != LOCK_NAME]
        skipped = None
        if MANIFEST_NAME in names:
            message = f"{storage.url} is a complete backup now: nothing deleted"
            skipped = Deletion(storage.url, skipped=("DeleteSkipped", message))
        elif not any(o.name != LOCK_NAME for o in contents.ours):
            skipped = _not_ours(storage)
        if skipped is not None:
            await lock.release()
            return skipped
    except BaseException:
        await clean_up(lock.release(), f"the lock of {storage.url}", RELEASE_TIMEOUT)
        raise
    for name in names:
        await storage.delete(name)
    await storage.delete(LOCK_NAME)
    return Deletion(storage.url, removed=len(names))


def _not_ours(storage: Storage) -> Deletion:
    message = (
        f"{storage.url} holds no object only mongo-backup writes (not a backup of ours): nothing deleted"
    )
    return Deletion(storage.url, skipped=("DeleteSkipped", message))
