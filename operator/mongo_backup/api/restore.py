"""The MongoRestore custom resource: one restore of a backup into a MongoDB deployment."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .common import (
    NAME_MAX,
    CustomResource,
    EncryptionSpec,
    MongoDBConnection,
    NamespaceFilter,
    NamespacePattern,
    PrinterColumn,
    RunStatus,
    SigningSpec,
    SpecModel,
    StatusModel,
    StorageSpec,
    parallelism_field,
)
from .runner import RunMode, RunnerSpec, runmode_field


class BackupRef(SpecModel):
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="Name of a MongoBackup in the same namespace."
    )


class RestoreSource(SpecModel):
    """A backup named by where it is stored, e.g. one made by another cluster."""

    storage: StorageSpec = Field(description="The storage folder holding the backup.")
    backup_name: str = Field(
        min_length=1,
        max_length=NAME_MAX,
        pattern=r"^[^/]+$",
        description="Name of the backup in that folder (the MongoBackup's name when it was made).",
    )
    format: Literal["mongo-backup", "mongodump"] = Field(
        default="mongo-backup",
        description=(
            "What the folder holds: a mongo-backup backup (verified against its manifest), or "
            "`mongodump`: a plain `mongodump --out` directory, restored without any verification "
            "(it has no manifest); a backup of ours is refused in that mode."
        ),
    )


class NamespaceRename(SpecModel):
    from_: NamespacePattern = Field(
        alias="from",
        description="Namespace pattern in the backup, e.g. `shop.*`; each `*` captures.",
    )
    to: NamespacePattern = Field(
        description="Target pattern, e.g. `shop_copy.*`; the captures fill its `*`s in order."
    )

    @model_validator(mode="after")
    def _same_wildcards(self) -> NamespaceRename:
        if self.from_.count("*") != self.to.count("*"):
            raise ValueError(f"rename {self.from_!r} -> {self.to!r}: both must have the same number of '*'")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.from.split('*').size() == self.to.split('*').size()",
                    "message": "from and to must have the same number of '*'",
                }
            ]
        }
    )


_ONE_SOURCE = "set exactly one of backupRef or source"


class MongoRestoreSpec(SpecModel):
    backup_ref: BackupRef | None = Field(
        default=None, description="Restore a Completed MongoBackup of this namespace."
    )
    source: RestoreSource | None = Field(
        default=None, description="Restore a backup found in storage (instead of backupRef)."
    )
    mongodb: MongoDBConnection = Field(description="The MongoDB deployment to restore into.")
    namespaces: NamespaceFilter = Field(
        default_factory=NamespaceFilter,
        description="Which namespaces of the backup to restore (names in the backup); all by default.",
    )
    rename: list[NamespaceRename] = Field(
        default_factory=list,
        max_length=100,
        description="Restore namespaces under other names (mongorestore's --nsFrom/--nsTo); first match wins.",
    )
    on_conflict: Literal["Fail", "Drop"] = Field(
        default="Fail",
        description=(
            "When a target collection already holds data: Fail (before anything is written) or "
            "Drop (replace it once its restored copy is complete)."
        ),
    )
    verify: bool = Field(
        default=True,
        description="Compare every restored collection with the backup's manifest (counts and digest).",
    )
    parallelism: int = parallelism_field()
    run_mode: RunMode | None = runmode_field()
    runner: RunnerSpec = Field(
        default_factory=RunnerSpec, description="The run's pod in Job mode: resources and placement."
    )
    encryption: EncryptionSpec | None = Field(
        default=None,
        description=(
            "The key of an encrypted backup (required to restore one; with it, a backup that is "
            "not encrypted is refused)."
        ),
    )
    signing: SigningSpec | None = Field(
        default=None,
        description="Restore only a backup whose manifest this Ed25519 key signed (public key from a Secret).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.backupRef) != has(self.source)", "message": _ONE_SOURCE},
            ]
        }
    )

    @model_validator(mode="after")
    def _one_source(self) -> MongoRestoreSpec:
        if (self.backup_ref is None) == (self.source is None):
            raise ValueError(_ONE_SOURCE)
        return self


class Verification(StatusModel):
    """The comparison of the restored collections with the backup's manifest."""

    checked: int = Field(default=0, ge=0, description="Collections compared with the manifest.")
    verified: int = Field(default=0, ge=0, description="Collections whose count and digest matched.")
    mismatches: list[str] = Field(
        default_factory=list, description="Target namespaces whose content differs from the backup."
    )


class RestoreTimings(StatusModel):
    """Seconds the last attempt spent in each phase, to tell where a restore's time goes.
    Per-collection phases are summed over collections (in parallel, they can exceed the
    run's wall time)."""

    plan: float = Field(
        default=0.0, ge=0, description="Reading the manifest and metadata, claiming the targets."
    )
    create: float = Field(default=0.0, ge=0, description="Creating the temporary collections.")
    insert: float = Field(default=0.0, ge=0, description="Streaming the documents in.")
    indexes: float = Field(default=0.0, ge=0, description="Building the indexes.")
    verify: float = Field(default=0.0, ge=0, description="Reading every restored document back.")
    swap: float = Field(default=0.0, ge=0, description="Renaming the staged collections into place.")
    drop_replaced: float = Field(default=0.0, ge=0, description="Dropping the replaced targets.")
    direct: float = Field(default=0.0, ge=0, description="Time-series collections and views.")
    cleanup: float = Field(default=0.0, ge=0, description="Dropping temporaries, leaving the journal.")


class MongoRestoreStatus(RunStatus):
    backup: str | None = Field(
        default=None,
        description="What was restored: the MongoBackup's name, or the backup's storage URL.",
    )
    verification: Verification | None = Field(
        default=None, description="Result of the verification (also the Verified condition)."
    )
    restored_collections: list[str] = Field(
        default_factory=list,
        description=(
            "Target namespaces (db.collection) swapped in and committed; an attempt after an "
            "operator restart skips them."
        ),
    )
    timings: RestoreTimings | None = Field(default=None, description="Seconds spent per phase.")


MONGO_RESTORE = CustomResource(
    kind="MongoRestore",
    plural="mongorestores",
    singular="mongorestore",
    short_names=("mrs",),
    spec_model=MongoRestoreSpec,
    status_model=MongoRestoreStatus,
    description=(
        "A restore of a backup into a MongoDB deployment, all or nothing: every collection is "
        "written to a temporary collection and verified, then all are swapped in together."
    ),
    printer_columns=(
        PrinterColumn(
            "Phase", "string", ".status.phase", "Pending, Running, Completed, Failed or Cancelled."
        ),
        PrinterColumn("Backup", "string", ".status.backup", "The backup restored."),
        PrinterColumn("Size", "string", ".status.size", "Stored size of the backup."),
        PrinterColumn("Documents", "integer", ".status.documents", "Documents restored."),
        PrinterColumn("Duration", "string", ".status.duration", "Run time.", priority=1),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
    ),
)
