"""Backup, restore and verify of MongoDB as streamed raw BSON. No Kubernetes in here.

Entry points (all async):
    run_backup(client, storage, options, progress=None) -> BackupResult
    run_restore(client, storage, options, progress=None) -> RestoreResult
    verify_backup(storage, progress=None) -> VerifyResult
    list_backups(storage) -> list[BackupListing]
`storage` is the backup's own root (e.g. `open_storage(url).child(name)`), except for
`list_backups`, which takes the parent location.
"""

from ..redact import mask_uri
from .backup import run_backup
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
    "DocumentsRefused",
    "EngineError",
    "ErrorKind",
    "IncompleteBackup",
    "IntegrityError",
    "Interrupted",
    "InvalidInput",
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
    "SourceAccessDenied",
    "SourceUnavailable",
    "UsageError",
    "VerificationFailed",
    "VerifyResult",
    "kind_of",
    "list_backups",
    "mask_uri",
    "open_client",
    "run_backup",
    "run_restore",
    "verify_backup",
]
