"""The MongoBackup custom resource: one backup of a MongoDB deployment to storage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    CompressionSpec,
    CustomResource,
    EncryptionSpec,
    MongoDBConnection,
    NamespaceFilter,
    PrinterColumn,
    RunStatus,
    SigningSpec,
    SpecModel,
    StorageSpec,
    parallelism_field,
)
from .runner import RunMode, RunnerSpec, runmode_field


class MongoBackupSpec(SpecModel):
    mongodb: MongoDBConnection = Field(description="The MongoDB deployment to back up.")
    storage: StorageSpec = Field(
        description="Where the backup goes: it is stored under <storage folder>/<metadata.name>/."
    )
    compression: CompressionSpec = Field(
        default_factory=CompressionSpec, description="How stored BSON is compressed (zstd by default)."
    )
    namespaces: NamespaceFilter = Field(
        default_factory=NamespaceFilter,
        description="Which namespaces to back up; all user databases by default.",
    )
    parallelism: int = parallelism_field()
    run_mode: RunMode | None = runmode_field()
    runner: RunnerSpec = Field(
        default_factory=RunnerSpec, description="The run's pod in Job mode: resources and placement."
    )
    encryption: EncryptionSpec | None = Field(
        default=None,
        description=(
            "Encrypt every stored object (AES-256-GCM) under a fresh data key wrapped by a key "
            "from a Secret, and authenticate the manifest; unset: stored in clear."
        ),
    )
    signing: SigningSpec | None = Field(
        default=None,
        description="Sign the manifest with an Ed25519 private key from a Secret; unset: not signed.",
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description=(
            "What happens to the stored backup when this object is deleted: Retain keeps it, "
            "Delete removes it from storage first."
        ),
    )


class MongoBackupStatus(RunStatus):
    """Status of a MongoBackup (all fields are shared with MongoRestore's status)."""


MONGO_BACKUP = CustomResource(
    kind="MongoBackup",
    plural="mongobackups",
    singular="mongobackup",
    short_names=("mbk",),
    spec_model=MongoBackupSpec,
    status_model=MongoBackupStatus,
    description=(
        "A backup of a MongoDB deployment: the operator streams every selected collection as "
        "raw BSON into storage, in mongodump's directory layout, and reports the result here."
    ),
    printer_columns=(
        PrinterColumn(
            "Phase", "string", ".status.phase", "Pending, Running, Completed, Failed or Cancelled."
        ),
        PrinterColumn("Size", "string", ".status.size", "Stored size."),
        PrinterColumn("Documents", "integer", ".status.documents", "Documents backed up."),
        PrinterColumn("Duration", "string", ".status.duration", "Run time.", priority=1),
        PrinterColumn("Location", "string", ".status.location", "Storage URL.", priority=1),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
    ),
)
