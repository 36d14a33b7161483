"""Every error a run can end with, and ONE table of what each means to a user: the CLI's exit
code, the operator's status reason, and whether trying again may help.

Callers never look at an error's text: the CLI, the runner and the tests look up the type
(`kind_of(exc)`). A message is one line that names what is wrong and where (collection,
object, field); it never contains credentials (see `mongo_backup.redact`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import (
    BucketNotFound,
    InvalidStorageURL,
    ObjectExists,
    ObjectNotFound,
    StorageAccessDenied,
    StorageError,
    TransientStorageError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_INTEGRITY = 4
EXIT_NOT_FOUND = 5
EXIT_SOURCE = 6
EXIT_STORAGE = 7
EXIT_INTERRUPTED = 130


class EngineError(Exception):
    """A run failed for a reason the user can act on."""


class InvalidInput(EngineError):
    """An option, pattern, name or URI is malformed: fix the input, retrying will not help."""


class UsageError(InvalidInput):
    """The command line itself is wrong (a missing flag, a bad value)."""


class RestoreConflict(EngineError):
    """A target collection exists and is not empty, and the policy is `fail`; or it appeared
    while the restore ran. Nothing of it was replaced."""


class RestoreInProgress(RestoreConflict):
    """Another restore that is still alive is writing one of the targets."""


class IntegrityError(EngineError):
    """A stored object does not match the manifest (checksum, framing, count or digest)."""


class IncompleteBackup(IntegrityError):
    """The location holds our layout without a manifest: a backup that never finished."""


class ManifestInvalid(IntegrityError):
    """manifest.json does not satisfy the format's schema (types, bounds, totals)."""


class ManifestTampered(IntegrityError):
    """The manifest's authentication (its MAC under the backup's data key, or its signature)
    does not match its content: someone edited it."""


class EncryptionExpected(IntegrityError):
    """A key was given, but the backup is not encrypted (or not signed): a plain backup where an
    encrypted one was expected may have been put there in its place."""


class VerificationFailed(IntegrityError):
    """Restored data, read back, differs from the backup."""


class WrongKey(InvalidInput):
    """The key given does not open this backup's data key (another key wrapped it)."""


class KeyRequired(InvalidInput):
    """The backup is encrypted and no key was given to read it."""


class KmsError(EngineError):
    """A KMS refused a request (key not found, disabled, access denied)."""


class KmsUnavailable(KmsError):
    """A KMS could not be reached or asked us to slow down: a later attempt may succeed."""


class BackupNotFound(EngineError):
    """Nothing at that location: no manifest, no mongodump layout, no objects of ours."""


class BackupExists(EngineError):
    """The backup name already holds a complete backup: choose another name."""


class BackupNameInUse(EngineError):
    """Another run holds the backup name's lock: it is writing (or died writing) there."""


class PartialBackupInTheWay(EngineError):
    """The backup name holds objects but neither a manifest nor a lock (an older version's
    incomplete backup, or objects put there by hand): nothing proves whose they are, so they
    are never cleared automatically."""


class DocumentsRefused(EngineError):
    """The server refused documents of a restore (a validator, a duplicate key)."""


class SourceUnavailable(EngineError):
    """MongoDB cannot be reached or the connection was lost (network, timeout)."""


class SourceAccessDenied(SourceUnavailable):
    """MongoDB refused our credentials or lacks a privilege: retrying will not help."""


class Interrupted(EngineError):
    """The run was stopped on request (Ctrl-C, SIGTERM, cancel)."""


@dataclass(frozen=True)
class ErrorKind:
    #: the CLI's exit code (README, "Exit codes")
    exit_code: int
    #: the CamelCase reason of the operator's Failed condition and Warning event
    reason: str
    #: a later attempt may succeed without anyone changing anything
    retryable: bool = False


#: The one table. Looked up along the error's class hierarchy: the most specific entry wins.
ERROR_KINDS: dict[type[BaseException], ErrorKind] = {
    UsageError: ErrorKind(EXIT_USAGE, "InvalidInput"),
    InvalidInput: ErrorKind(EXIT_USAGE, "InvalidInput"),
    RestoreInProgress: ErrorKind(EXIT_CONFLICT, "RestoreInProgress", retryable=True),
    RestoreConflict: ErrorKind(EXIT_CONFLICT, "RestoreConflict"),
    IncompleteBackup: ErrorKind(EXIT_INTEGRITY, "IncompleteBackup"),
    ManifestInvalid: ErrorKind(EXIT_INTEGRITY, "ManifestInvalid"),
    VerificationFailed: ErrorKind(EXIT_INTEGRITY, "VerificationFailed"),
    ManifestTampered: ErrorKind(EXIT_INTEGRITY, "ManifestTampered"),
    EncryptionExpected: ErrorKind(EXIT_INTEGRITY, "EncryptionExpected"),
    WrongKey: ErrorKind(EXIT_USAGE, "WrongEncryptionKey"),
    KeyRequired: ErrorKind(EXIT_USAGE, "EncryptionKeyRequired"),
    KmsUnavailable: ErrorKind(EXIT_FAILED, "KmsUnavailable", retryable=True),
    KmsError: ErrorKind(EXIT_FAILED, "KmsError"),
    IntegrityError: ErrorKind(EXIT_INTEGRITY, "IntegrityError"),
    BackupNotFound: ErrorKind(EXIT_NOT_FOUND, "BackupNotFound"),
    BackupExists: ErrorKind(EXIT_FAILED, "BackupExists"),
    BackupNameInUse: ErrorKind(EXIT_FAILED, "BackupNameInUse"),
    PartialBackupInTheWay: ErrorKind(EXIT_FAILED, "PartialBackupInTheWay"),
    DocumentsRefused: ErrorKind(EXIT_FAILED, "DocumentsRefused"),
    SourceAccessDenied: ErrorKind(EXIT_SOURCE, "MongoDBAuthenticationFailed"),
    SourceUnavailable: ErrorKind(EXIT_SOURCE, "MongoDBUnreachable", retryable=True),
    Interrupted: ErrorKind(EXIT_INTERRUPTED, "Interrupted"),
    EngineError: ErrorKind(EXIT_FAILED, "EngineError"),
    InvalidStorageURL: ErrorKind(EXIT_USAGE, "InvalidStorage"),
    StorageAccessDenied: ErrorKind(EXIT_STORAGE, "StorageAccessDenied"),
    BucketNotFound: ErrorKind(EXIT_STORAGE, "BucketNotFound"),
    TransientStorageError: ErrorKind(EXIT_STORAGE, "StorageUnavailable", retryable=True),
    ObjectNotFound: ErrorKind(EXIT_STORAGE, "StorageError"),
    ObjectExists: ErrorKind(EXIT_STORAGE, "StorageError"),
    StorageError: ErrorKind(EXIT_STORAGE, "StorageError"),
    KeyboardInterrupt: ErrorKind(EXIT_INTERRUPTED, "Interrupted"),
}

UNEXPECTED = ErrorKind(EXIT_FAILED, "InternalError")


def kind_of(exc: BaseException) -> ErrorKind:
    """What `exc` means to a user; `UNEXPECTED` for anything not in the table (a bug)."""
    for cls in type(exc).__mro__:
        found = ERROR_KINDS.get(cls)
        if found is not None:
            return found
    return UNEXPECTED
