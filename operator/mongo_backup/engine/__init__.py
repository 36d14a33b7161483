"""Backup, restore and verify of MongoDB as streamed raw BSON. No Kubernetes in here.

Entry points (all async):
    run_backup(client, storage, options, progress=None) -> BackupResult
    run_restore(client, storage, options, progress=None) -> RestoreResult
    verify_backup(storage, progress=None) -> VerifyResult
    list_backups(storage) -> list[BackupListing]
`storage` is the backup's own root (e.g. `open_storage(url).child(name)`), except for
`list_backups`, which takes the parent location.
"""

from .backup import run_backup
from .listing import list_backups
from .model import (
    BackupListing,
    BackupNotFound,
    BackupOptions,
    BackupResult,
    CollectionProgress,
    CollectionResult,
    EngineError,
    IntegrityError,
    InvalidInput,
    Progress,
    ProgressCallback,
    RestoreConflict,
    RestoredCollection,
    RestoreOptions,
    RestoreResult,
    SourceUnavailable,
    VerifyResult,
)
from .restore import run_restore
from .source import mask_uri, open_client
from .verify import verify_backup

__all__ = [
    "BackupListing",
    "BackupNotFound",
    "BackupOptions",
    "BackupResult",
    "CollectionProgress",
    "CollectionResult",
    "EngineError",
    "IntegrityError",
    "InvalidInput",
    "Progress",
    "ProgressCallback",
    "RestoreConflict",
    "RestoreOptions",
    "RestoreResult",
    "RestoredCollection",
    "SourceUnavailable",
    "VerifyResult",
    "list_backups",
    "mask_uri",
    "open_client",
    "run_backup",
    "run_restore",
    "verify_backup",
]
