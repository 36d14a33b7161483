"""A MongoBackup's run: resolve the Secrets, stream the backup, report the result.

The run's owner in the backup name's lock is the MongoBackup's uid: a later attempt of the
same object (after an operator restart) takes over the lock of its lost predecessor, and
deletes what that attempt left; a MongoBackup of the same name in another namespace, with
the same storage folder, has another uid and fails with BackupNameInUse."""

from __future__ import annotations

import contextlib
from typing import Any

from ..api import MongoBackupSpec
from ..engine import BackupOptions, BackupResult, EngineError, open_client, run_backup
from ..engine.deletion import Deletion, delete_backup
from ..engine.encryption import KeyEncryptionKey
from ..engine.lock import BackupLock, LockInfo, lock_backup_root, read_lock
from ..engine.manifest import LOCK_NAME, MANIFEST_NAME, BackupManifest, manifest_checksum
from ..engine.signing import Signer
from ..storage import Storage, StorageError, StorageSettings, open_storage
from . import sources
from .cluster import ObjectLink
from .failures import Failure
from .lifecycle import Outcome
from .progress import ProgressReporter, progress_status
from .settings import RunnerSettings
from .units import count, human_bytes, human_duration


class BackupJob:
    kind = "backup"
    restored_field: str | None = None

    def __init__(
        self, link: ObjectLink, spec: MongoBackupSpec, settings: RunnerSettings, owner: str | None = None
    ) -> None:
        self.link = link
        self.spec = spec
        self.settings = settings
        #: who this run is in the backup's lock (the object's uid)
        self.owner = owner or f"{link.namespace}/{link.name}"
        self._uri = ""
        self._storage_settings = StorageSettings()
        self._key: KeyEncryptionKey | None = None
        self._signer: Signer | None = None

    async def prepare(self) -> None:
        self._uri = await sources.mongo_uri(self.link, self.spec.mongodb.uri_secret_ref)
        self._key = await sources.encryption_key(self.link, self.spec.encryption)
        self._signer = await sources.signer(self.link, self.spec.signing)
        await self.prepare_storage()

    async def prepare_storage(self) -> None:
        """Only what reaching the stored backup needs (deleting it needs no MongoDB)."""
        self._storage_settings = await sources.storage_settings(self.link, self.spec.storage)

    def open_storage(self) -> Storage:
        try:
            return open_storage(self.spec.storage.url(), self._storage_settings).child(self.link.name)
        except StorageError as exc:
            raise Failure("InvalidStorage", str(exc)) from None

    async def delete_stored(self, checksum: str) -> Deletion:
        """Delete this object's own stored backup (its manifest has the `checksum` the status
        recorded), under the backup name's lock: the manifest first, then exactly the objects
        it lists, then the lock. Needs only the storage (`prepare_storage`), not MongoDB."""
        storage = self.open_storage()
        try:
            return await delete_backup(storage, self.owner, checksum)
        finally:
            await storage.close()

    async def settle_lost_attempt(self) -> Outcome | str:
        """Cancelled after the operator lost an attempt: a backup that attempt completed is
        adopted (the cancel came too late); anything else it wrote is deleted, under the lock
        it left (taken over as a resumed attempt does: the owner is this object's uid)."""
        storage = self.open_storage()
        try:
            adopted = await _adopt_complete(storage, self.owner)
            if adopted is not None:
                return adopted
            left = [i.name async for i in storage.list(partial=True) if i.name != LOCK_NAME]
            lock = await lock_backup_root(storage, self.owner, take_over_own=True)
            await lock.release()
        except (EngineError, StorageError) as exc:
            return f"what an earlier, lost attempt wrote was left in place: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await storage.close()
        if left:
            return f"the {len(left)} objects an earlier, lost attempt wrote were deleted"
        return "an earlier, lost attempt had left nothing behind"

    async def attempt(self, resumed: bool, reporter: ProgressReporter) -> Outcome:
        try:
            client = open_client(self._uri, timeout_ms=self.settings.mongo_timeout_ms)
        except EngineError as exc:  # the only EngineError of open_client: a malformed URI (masked)
            raise Failure("InvalidURI", str(exc)) from None
        storage = self.open_storage()
        try:
            if resumed:
                # The lost attempt may have finished writing: then it only missed its status.
                adopted = await _adopt_complete(storage, self.owner)
                if adopted is not None:
                    return adopted
            options = BackupOptions(
                compression=self.spec.compression.type,
                level=self.spec.compression.level,
                include=tuple(self.spec.namespaces.include),
                exclude=tuple(self.spec.namespaces.exclude),
                parallel=self.spec.parallelism,
                owner=self.owner,
                replace_partial=resumed,
                encryption_key=self._key,
                signer=self._signer,
            )
            result = await run_backup(client, storage, options, progress=reporter)
            stored = sum([info.size async for info in storage.list()])
            return backup_outcome(result, stored, reporter)
        finally:
            with contextlib.suppress(Exception):
                await client.close()
            with contextlib.suppress(Exception):
                await storage.close()


def backup_outcome(result: BackupResult, stored_bytes: int, reporter: ProgressReporter) -> Outcome:
    size = human_bytes(stored_bytes)
    status: dict[str, Any] = {
        "location": result.location,
        "checksum": result.checksum,
        "storedBytes": stored_bytes,
        "size": size,
        "dataBytes": result.data_bytes,
        "documents": result.documents,
        "collections": len(result.collections),
        "serverVersion": result.server_version,
        "startedAt": _iso(result),
    }
    if result.key_fingerprint is not None:
        status["encryption"] = {"keyFingerprint": result.key_fingerprint, "keySource": result.key_source}
    if result.signer_fingerprint is not None:
        status["signing"] = {"signerFingerprint": result.signer_fingerprint}
    if reporter.latest is not None:
        status["progress"] = progress_status(reporter.latest)
    message = (
        f"backup completed: {size} stored, {count(result.documents, 'document')} in "
        f"{count(len(result.collections), 'collection')}, took {human_duration(result.duration)}, "
        f"at {result.location}"
    )
    return Outcome(status=status, event_message=message)


def _iso(result: BackupResult) -> str:
    return result.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _adopt_complete(storage: Storage, owner: str) -> Outcome | None:
    if not await storage.exists(MANIFEST_NAME):
        return None
    raw = await storage.read_bytes(MANIFEST_NAME)
    manifest = BackupManifest.from_json(raw, f"{storage.url}/{MANIFEST_NAME}")
    if manifest.options.get("owner") != owner:
        return None  # someone else's backup under this name: the attempt fails with BackupExists
    held = await read_lock(storage)
    if isinstance(held, LockInfo) and held.owner == owner:
        # the lost attempt wrote the manifest and died before removing its lock
        await BackupLock(storage, held).release()
    stored = sum([info.size async for info in storage.list()])
    size = human_bytes(stored)
    status: dict[str, Any] = {
        "location": storage.url,
        "checksum": manifest_checksum(raw),
        "storedBytes": stored,
        "size": size,
        "dataBytes": manifest.data_bytes,
        "documents": manifest.documents,
        "collections": len(manifest.collections),
        "serverVersion": manifest.server_version,
        "startedAt": manifest.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if manifest.encryption is not None:
        key = manifest.encryption.key
        status["encryption"] = {"keyFingerprint": key.fingerprint, "keySource": key.source}
    if manifest.signature is not None:
        status["signing"] = {"signerFingerprint": manifest.signature.public_key_fingerprint}
    message = (
        "backup completed before the operator restarted: "
        f"{size} stored, {count(manifest.documents, 'document')} "
        f"at {storage.url}"
    )
    return Outcome(status=status, event_message=message)
