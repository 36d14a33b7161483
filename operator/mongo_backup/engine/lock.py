"""The backup name's lock: `lock.json`, the first object a run writes under a backup root, with
the store's create-if-absent precondition (O_EXCL/link, `ifGenerationMatch=0`,
`IfNoneMatch="*"`, `If-None-Match: *`). Exactly one run can create it; any other run that
finds it stops at once, before writing or deleting anything. docs/FORMAT.md section 3a.

The lock names its `owner`: a random run id for the CLI, the MongoBackup's uid for the
operator, so that a later attempt of the same object recognises the lock of its lost
predecessor and may take it over (and clear what that attempt left).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from .. import __version__
from ..storage import ObjectExists, ObjectNotFound, Storage, StorageError, TransientStorageError
from .cancellation import clean_up
from .errors import BackupExists, BackupNameInUse, PartialBackupInTheWay
from .manifest import LOCK_NAME, MANIFEST_NAME

log = logging.getLogger(__name__)

LOCK_FORMAT = "mongo-backup-lock"
#: a value read from a lock is shown in messages: at most this long, one line
_SHOWN = 120
#: a run that could not finish taking the name gives its lock back within this long
RELEASE_TIMEOUT = 30.0

Purpose = Literal["backup", "delete"]


def new_run_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class LockInfo:
    owner: str
    purpose: str
    host: str
    pid: int
    engine_version: str
    started_at: datetime

    @classmethod
    def mine(cls, owner: str, purpose: Purpose) -> LockInfo:
        return cls(owner, purpose, socket.gethostname(), os.getpid(), __version__, datetime.now(UTC))

    def to_json(self) -> bytes:
        doc = {
            "format": LOCK_FORMAT,
            "owner": self.owner,
            "purpose": self.purpose,
            "host": self.host,
            "pid": self.pid,
            "engineVersion": self.engine_version,
            "startedAt": self.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LockInfo | None:
        """The lock's content, or None when it is not a lock of ours (then nobody owns it)."""
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("format") != LOCK_FORMAT:
                return None
            return cls(
                owner=_text(doc["owner"]),
                purpose=_text(doc.get("purpose", "backup")),
                host=_text(doc.get("host", "?")),
                pid=int(doc.get("pid", 0)),
                engine_version=_text(doc.get("engineVersion", "?")),
                started_at=datetime.strptime(str(doc["startedAt"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
            )
        except (ValueError, KeyError, TypeError, OverflowError):
            return None

    def describe(self) -> str:
        started = self.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{self.purpose} run {self.owner} on host {self.host} (pid {self.pid}), started {started}"


def _text(value: Any) -> str:
    """A string from storage, made safe to print on one line."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


async def read_lock(storage: Storage) -> LockInfo | Literal["absent"] | None:
    try:
        raw = await storage.read_bytes(LOCK_NAME)
    except ObjectNotFound:
        return "absent"
    return LockInfo.from_json(raw)


def _in_use(storage: Storage, held: LockInfo | None) -> BackupNameInUse:
    who = held.describe() if held is not None else "another run (its lock is unreadable or kept changing)"
    return BackupNameInUse(
        f"{storage.url} is in use: {who} holds its {LOCK_NAME}; if that run is dead "
        f"(killed, its machine gone), delete {storage.url} (the folder or prefix) and run again"
    )


class BackupLock:
    """The lock of one backup root, held by this run."""

    def __init__(self, storage: Storage, info: LockInfo) -> None:
        self.storage = storage
        self.info = info

    async def still_mine(self) -> bool:
        held = await read_lock(self.storage)
        return isinstance(held, LockInfo) and held.owner == self.info.owner

    async def release(self) -> None:
        """Delete the lock, unless it is no longer ours (someone removed the root by hand and
        another run took the name: its lock is not ours to delete)."""
        held = await read_lock(self.storage)
        if isinstance(held, LockInfo) and held.owner == self.info.owner:
            await self.storage.delete(LOCK_NAME)
        elif held != "absent":
            log.warning("the lock of %s is no longer this run's: left in place", self.storage.url)

    async def clear_leftovers(self) -> int:
        """Delete every object under the root but the lock, unfinished writes included: the
        lock proves that no other run writes here."""
        names = [i.name async for i in self.storage.list(partial=True) if i.name != LOCK_NAME]
        for name in names:
            await self.storage.delete(name)
        return len(names)


async def create_lock(storage: Storage, info: LockInfo) -> BackupLock | LockInfo | None:
    """Create the lock: the lock on success, else what holds it (None: unreadable)."""
    for _ in range(3):
        try:
            await storage.write_bytes(LOCK_NAME, info.to_json())
        except ObjectExists:
            held = await read_lock(storage)
            if held == "absent":
                continue  # its holder released it meanwhile: try again
            return held
        except TransientStorageError:
            await _give_back(BackupLock(storage, info))
            raise
        except StorageError:
            raise  # refused outright (access, a file in the way): nothing was written
        except BaseException:
            # Cancelled or failed while the lock may have been written all the same.
            await _give_back(BackupLock(storage, info))
            raise
        return BackupLock(storage, info)
    return None


async def _give_back(lock: BackupLock) -> None:
    await clean_up(lock.release(), f"the lock of {lock.storage.url}", RELEASE_TIMEOUT)


async def lock_backup_root(storage: Storage, owner: str, *, take_over_own: bool) -> BackupLock:
    """Take the backup name for a new backup, or refuse before writing anything:
    BackupExists (a complete backup is there), BackupNameInUse (another run holds the lock),
    PartialBackupInTheWay (objects without a lock: an older version's, or put there by hand).
    With `take_over_own`, a lock of the same `owner` (a lost attempt of this very run) is
    taken over and what that attempt left is deleted."""
    info = LockInfo.mine(owner, "backup")
    found = [i.name async for i in storage.list(partial=True)]
    if MANIFEST_NAME in found:
        raise BackupExists(f"{storage.url} already holds a complete backup: choose another name")
    if found and LOCK_NAME not in found:
        raise _in_the_way(storage, len(found))
    created = await create_lock(storage, info)
    if not isinstance(created, BackupLock):
        if created is not None and created.owner == owner and take_over_own:
            return await _take_over(storage, info, created)
        raise _in_use(storage, created)
    try:
        # A run may have finished (manifest) or left objects between our listing and our lock.
        others = [i.name async for i in storage.list(partial=True) if i.name != LOCK_NAME]
    except BaseException:
        await _give_back(created)
        raise
    if others:
        await _give_back(created)
        if MANIFEST_NAME in others:
            raise BackupExists(f"{storage.url} already holds a complete backup: choose another name")
        raise _in_the_way(storage, len(others))
    return created


async def _take_over(storage: Storage, info: LockInfo, held: LockInfo) -> BackupLock:
    log.info("taking over the lock of a lost attempt at %s (%s)", storage.url, held.describe())
    # Kept in place, never released in between; rewritten so that it names the live process.
    await storage.write_bytes(LOCK_NAME, info.to_json(), overwrite=True)
    lock = BackupLock(storage, info)
    removed = await lock.clear_leftovers()
    if removed:
        log.info("removed %d objects of the lost attempt at %s", removed, storage.url)
    return lock


def _in_the_way(storage: Storage, count: int) -> PartialBackupInTheWay:
    return PartialBackupInTheWay(
        f"{storage.url} holds {count} objects of an incomplete backup (no manifest.json, no "
        f"{LOCK_NAME}: written by an older version or by hand): delete them or choose another name"
    )
