"""Backup, restore and verify of MongoDB as streamed raw BSON. No Kubernetes in here.

Entry points (all async):
    run_backup(client, storage, options, progress=None) -> BackupResult
    run_restore(client, storage, options, progress=None) -> RestoreResult
    verify_backup(storage, progress=None) -> VerifyResult
    list_backups(storage) -> list[BackupListing]
    delete_backup(storage, owner, checksum=None) -> Deletion        (under the name's lock)
    delete_incomplete(storage, owner) -> Deletion
`storage` is the backup's own root (e.g. `open_storage(url).child(name)`), except for
`list_backups`, which takes the parent location.

Retention (pure, no I/O; the CLI's `prune` and the schedules use it):
    apply_retention(items, policy, tz=UTC) -> list[Decision]
"""

from ..redact import mask_uri
from .backup import run_backup
from .deletion import Deletion, delete_backup, delete_incomplete
from .errors import (
    BackupExists,
    BackupNameInUse,
    BackupNotFound,
    DocumentsRefused,
    EngineError,
    ErrorKind,
    IncompleteBackup,
    IntegrityError,
    Interrupted,
    InvalidInput,
    ManifestInvalid,
    PartialBackupInTheWay,
    RestoreConflict,
    RestoreInProgress,
    SourceAccessDenied,
    SourceUnavailable,
    UsageError,
    VerificationFailed,
    kind_of,
)
from .listing import list_backups
from .model import (
    BackupListing,
    BackupOptions,
    BackupResult,
    CollectionProgress,
    CollectionResult,
    Progress,
    ProgressCallback,
    RestoredCollection,
    RestoreOptions,
    RestoreResult,
    RestoreTimings,
    VerifyResult,
)
from .restore import run_restore
from .retention import (
    Decision,
    KeepReason,
    RetentionItem,
    RetentionPolicy,
    apply_retention,
    time_zone,
)
from .source import open_client
from .verify import verify_backup

__all__ = [
    "BackupExists",
    "BackupListing",
    "BackupNameInUse",
    "BackupNotFound",
    "BackupOptions",
    "BackupResult",
    "CollectionProgress",
    "CollectionResult",
    "Decision",
    "Deletion",
    "DocumentsRefused",
    "EngineError",
    "ErrorKind",
    "IncompleteBackup",
    "IntegrityError",
    "Interrupted",
    "InvalidInput",
    "KeepReason",
    "ManifestInvalid",
    "PartialBackupInTheWay",
    "Progress",
    "ProgressCallback",
    "RestoreConflict",
    "RestoreInProgress",
    "RestoreOptions",
    "RestoreResult",
    "RestoreTimings",
    "RestoredCollection",
    "RetentionItem",
    "RetentionPolicy",
    "SourceAccessDenied",
    "SourceUnavailable",
    "UsageError",
    "VerificationFailed",
    "VerifyResult",
    "apply_retention",
    "delete_backup",
    "delete_incomplete",
    "kind_of",
    "list_backups",
    "mask_uri",
    "open_client",
    "run_backup",
    "run_restore",
    "time_zone",
    "verify_backup",
]
