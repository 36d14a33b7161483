"""A MongoRestore's run: find the backup (a MongoBackup of the namespace, or a storage
location), restore it through temporary collections, verify it, report the result."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from pydantic.alias_generators import to_camel

from ..api import MongoBackupSpec, MongoRestoreSpec, SpecError, StorageSpec, parse_spec
from ..engine import EngineError, RestoreOptions, RestoreResult, open_client, run_restore
from ..engine.encryption import KeyEncryptionKey
from ..engine.journal import RestoreJournal
from ..engine.signing import SignatureChecker
from ..storage import Storage, StorageError, StorageSettings, open_storage
from . import sources
from .cluster import ObjectLink
from .failures import Failure
from .lifecycle import Outcome, Waiting
from .progress import ProgressReporter, progress_status
from .settings import RunnerSettings
from .units import count, human_bytes, human_duration

RESTORED_FIELD = "restoredCollections"


def run_id_of(uid: str) -> str:
    """A short id, stable across operator restarts, that names the temporary collections."""
    return re.sub(r"[^0-9a-zA-Z]", "", uid)[:16] or "restore"


class RestoreJob:
    kind = "restore"
    restored_field: str | None = RESTORED_FIELD

    def __init__(
        self,
        link: ObjectLink,
        uid: str,
        spec: MongoRestoreSpec,
        already_restored: Sequence[str],
        settings: RunnerSettings,
    ) -> None:
        self.link = link
        self.uid = uid
        self.spec = spec
        self.settings = settings
        self.restored: list[str] = list(already_restored)
        self._uri = ""
        self._storage: StorageSpec | None = None
        self._storage_settings = StorageSettings()
        self._backup_name = ""
        self._backup_label = ""
        self._backup_status: dict[str, Any] = {}
        self._key: KeyEncryptionKey | None = None
        self._public_key: SignatureChecker | None = None

    @property
    def storage(self) -> StorageSpec | None:
        """The storage of the backup to restore, once `prepare` found it."""
        return self._storage

    async def prepare(self) -> None:
        if self.spec.backup_ref is not None:
            await self._find_backup(self.spec.backup_ref.name)
        else:
            assert self.spec.source is not None
            self._storage = self.spec.source.storage
            self._backup_name = self.spec.source.backup_name
            self._backup_label = f"{self._storage.url()}/{self._backup_name}"
        assert self._storage is not None
        self._uri = await sources.mongo_uri(self.link, self.spec.mongodb.uri_secret_ref)
        self._storage_settings = await sources.storage_settings(self.link, self._storage)
        self._key = await sources.encryption_key(self.link, self.spec.encryption)
        self._public_key = await sources.signature_checker(self.link, self.spec.signing)

    async def _find_backup(self, name: str) -> None:
        where = f"MongoBackup {self.link.namespace}/{name}"
        body = await self.link.read_backup(name)
        if body is None:
            raise Waiting("BackupNotFound", f"{where} does not exist")
        status = dict(body.get("status") or {})
        phase = status.get("phase") or "Pending"
        if phase == "Failed":
            raise Failure("BackupNotComplete", f"{where} failed: {status.get('error') or 'no reason given'}")
        if phase == "Cancelled":
            raise Failure("BackupNotComplete", f"{where} was cancelled: it holds no backup")
        if phase != "Completed":
            raise Waiting("BackupNotComplete", f"{where} is {phase}, not Completed yet")
        try:
            backup_spec = parse_spec(MongoBackupSpec, body)
        except SpecError as exc:
            raise Failure("InvalidBackupRef", f"{where}: {exc}") from None
        self._storage = backup_spec.storage
        self._backup_name = name
        self._backup_label = name
        self._backup_status = status

    def open_storage(self) -> Storage:
        assert self._storage is not None
        try:
            return open_storage(self._storage.url(), self._storage_settings).child(self._backup_name)
        except StorageError as exc:
            raise Failure("InvalidStorage", str(exc)) from None

    def options(self, resumed: bool = False) -> RestoreOptions:
        return RestoreOptions(
            include=tuple(self.spec.namespaces.include),
            exclude=tuple(self.spec.namespaces.exclude),
            ns_from=tuple(r.from_ for r in self.spec.rename),
            ns_to=tuple(r.to for r in self.spec.rename),
            on_conflict="drop" if self.spec.on_conflict == "Drop" else "fail",
            parallel=self.spec.parallelism,
            verify=self.spec.verify,
            source_format=self.spec.source.format if self.spec.source else "mongo-backup",
            run_id=run_id_of(self.uid),
            already_restored=tuple(self.restored),
            resume=resumed,
            key=self._key,
            public_key=self._public_key,
        )

    async def settle_lost_attempt(self) -> Outcome | str:
        """Cancelled after the operator lost an attempt: settle that attempt from the restore
        journal, as the next restore into its databases would (roll back, or forward once
        committed), and drop its temporary collections."""
        try:
            client = open_client(self._uri, timeout_ms=self.settings.mongo_timeout_ms)
        except EngineError as exc:
            return f"what the lost attempt left could not be checked: {exc}"
        try:
            settled = await RestoreJournal(client, run_id_of(self.uid), "cancel").settle_lost_attempt()
        except EngineError as exc:
            return f"what the lost attempt left could not be settled now: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        if settled is None:
            return "no target was changed"
        if settled.committed:
            return f"an earlier, lost attempt had committed its swaps: they stay restored ({settled.what})"
        return f"an earlier, lost attempt was {settled.what}: every target is as it was"

    async def attempt(self, resumed: bool, reporter: ProgressReporter) -> Outcome:
        try:
            client = open_client(self._uri, timeout_ms=self.settings.mongo_timeout_ms)
        except EngineError as exc:  # the only EngineError of open_client: a malformed URI (masked)
            raise Failure("InvalidURI", str(exc)) from None
        storage = self.open_storage()
        try:
            try:
                result = await run_restore(client, storage, self.options(resumed), progress=reporter)
            finally:
                self.restored += [ns for ns in reporter.restored if ns not in self.restored]
            if self.spec.source is not None and self.spec.source.format == "mongodump":
                self.link.post_event(
                    "Warning",
                    "Unverifiable",
                    f"{storage.url} was restored as a plain mongodump directory: it has no manifest, "
                    "so what was restored cannot be verified against a backup",
                )
            server_version = await _server_version(client)
            stored = self._backup_status.get("storedBytes")
            if stored is None:
                stored = sum([info.size async for info in storage.list()])
            return self.outcome(result, int(stored), storage.url, server_version, reporter)
        finally:
            with contextlib.suppress(Exception):
                await client.close()
            with contextlib.suppress(Exception):
                await storage.close()

    def outcome(
        self,
        result: RestoreResult,
        stored_bytes: int,
        location: str,
        server_version: str | None,
        reporter: ProgressReporter,
    ) -> Outcome:
        documents = sum(c.documents for c in result.collections)
        restored = sorted({*self.restored, *(c.target for c in result.collections)})
        status: dict[str, Any] = {
            "backup": self._backup_label,
            "location": location,
            "checksum": result.backup_checksum,
            "storedBytes": stored_bytes,
            "size": human_bytes(stored_bytes),
            "dataBytes": result.data_bytes,
            "documents": documents,
            "collections": len(result.collections),
            "startedAt": result.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "verification": {
                "checked": result.checked,
                "verified": result.verified,
                "mismatches": list(result.mismatches),
            },
            RESTORED_FIELD: restored,
            "timings": {to_camel(k): round(v, 2) for k, v in dataclasses.asdict(result.timings).items()},
        }
        if server_version:
            status["serverVersion"] = server_version
        if result.key_fingerprint is not None and self._key is not None:
            status["encryption"] = {"keyFingerprint": result.key_fingerprint, "keySource": self._key.source}
        if result.signer_fingerprint is not None:
            status["signing"] = {"signerFingerprint": result.signer_fingerprint}
        if reporter.latest is not None:
            status["progress"] = progress_status(reporter.latest)
        conditions: list[Any] = []
        failure: Failure | None = None
        if not self.spec.verify:
            conditions.append(("Verified", "Unknown", "NotRequested", "spec.verify is false"))
        elif result.mismatches:
            message = "restored data differs from the backup in " + ", ".join(result.mismatches)
            conditions.append(("Verified", "False", "Mismatch", message))
            failure = Failure("VerificationFailed", message)
        else:
            message = f"{result.verified} of {result.checked} collections match the backup (count and digest)"
            conditions.append(("Verified", "True", "Verified", message))
        message = (
            f"restore completed: {count(documents, 'document')} in "
            f"{count(len(result.collections), 'collection')} from "
            f"{self._backup_label}, took {human_duration(result.duration)}"
        )
        if self.spec.verify and not result.mismatches:
            message += f", verified {result.verified}/{result.checked}"
        return Outcome(status=status, event_message=message, conditions=conditions, failure=failure)


async def _server_version(client: Any) -> str | None:
    with contextlib.suppress(Exception):
        info = await client.server_info()
        return str(info.get("version"))
    return None
