"""Turning what went wrong into a status reason: a CamelCase word a user can search for, a
one-line message without secrets, and whether trying again may help."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..engine.model import BackupNotFound, EngineError, IntegrityError, RestoreConflict, SourceUnavailable
from ..storage import StorageAccessDenied, StorageError, TransientStorageError

_USERINFO = re.compile(r"((?:mongodb(?:\+srv)?|https?|s3|gs|azure)://)([^@/\s]*)@")


def scrub(text: str) -> str:
    """Mask credentials embedded in any URL of a message (`scheme://user:***@host`)."""

    def _mask(found: re.Match[str]) -> str:
        user, sep, _ = found.group(2).partition(":")
        return f"{found.group(1)}{user}:***@" if sep else found.group(0)

    return _USERINFO.sub(_mask, text)


@dataclass(frozen=True)
class Failure(Exception):
    """A run that cannot go on: phase Failed with this reason and message."""

    reason: str
    message: str
    #: trying again later may help (network, unreachable server)
    retryable: bool = False

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, Failure):
        return exc
    text = str(exc).strip()
    message = scrub(text.splitlines()[0]) if text else type(exc).__name__
    # The engine may wrap a storage error; the cause tells what really happened.
    cause = exc.__cause__ if isinstance(exc, EngineError) and exc.__cause__ is not None else exc
    if isinstance(exc, RestoreConflict):
        return Failure("RestoreConflict", message)
    if isinstance(exc, BackupNotFound):
        return Failure("BackupNotFound", message)
    if isinstance(exc, IntegrityError):
        return Failure("IntegrityError", message)
    if isinstance(exc, SourceUnavailable):
        if re.search(r"auth|unauthori[sz]ed|not authori[sz]ed", message, re.IGNORECASE):
            return Failure("MongoDBAuthenticationFailed", message)
        return Failure("MongoDBUnreachable", message, retryable=True)
    if isinstance(cause, StorageAccessDenied):
        return Failure("StorageAccessDenied", message)
    if isinstance(cause, TransientStorageError):
        return Failure("StorageUnavailable", message, retryable=True)
    if isinstance(cause, StorageError):
        return Failure("StorageError", message)
    if isinstance(exc, EngineError):
        return Failure("EngineError", message)
    return Failure("InternalError", f"{type(exc).__name__}: {message}")
