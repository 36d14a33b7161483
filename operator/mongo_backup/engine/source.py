"""Connecting to MongoDB, and turning driver errors into one-line messages without secrets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from ..redact import mask_uri, redact, register_uri
from .errors import EngineError, InvalidInput, SourceAccessDenied, SourceUnavailable

_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed


def open_client(
    uri: str, *, timeout_ms: int = 20_000, app_name: str = "mongo-backup"
) -> AsyncMongoClient[Any]:
    """A client for `uri`; a malformed URI is an EngineError that shows the URI masked."""
    register_uri(uri)  # from here on, its password is masked in every message
    options: dict[str, Any] = {"appname": app_name, "tz_aware": True}
    lowered = uri.lower()
    # timeouts given in the URI win over our defaults
    if "serverselectiontimeoutms" not in lowered:
        options["serverSelectionTimeoutMS"] = timeout_ms
    if "connecttimeoutms" not in lowered:
        options["connectTimeoutMS"] = min(timeout_ms, 10_000)
    if not lowered.startswith(("mongodb://", "mongodb+srv://")):
        raise InvalidInput(
            f"invalid MongoDB URI {mask_uri(uri)!r}: it must start with mongodb:// or mongodb+srv://"
        )
    try:
        return AsyncMongoClient(uri, **options)
    except (InvalidURI, ConfigurationError, ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid MongoDB URI {mask_uri(uri)!r}: {redact(str(exc))}") from None


@contextmanager
def mongo_errors(what: str, uri: str | None = None) -> Iterator[None]:
    """Translate driver exceptions raised while doing `what` into EngineErrors."""
    try:
        yield
    except EngineError:
        raise
    except ServerSelectionTimeoutError as exc:
        raise SourceUnavailable(f"{what}: MongoDB is unreachable ({_first_line(redact(str(exc)))})") from None
    except ConnectionFailure as exc:
        raise SourceUnavailable(f"{what}: connection to MongoDB lost ({redact(str(exc))})") from None
    except OperationFailure as exc:
        if exc.code in _AUTH_CODES:
            raise SourceAccessDenied(f"{what}: MongoDB refused access ({exc.code}: {_reason(exc)})") from None
        raise EngineError(f"{what}: MongoDB error {exc.code}: {_reason(exc)}") from None
    except PyMongoError as exc:
        raise EngineError(f"{what}: {redact(str(exc))}") from None


def _reason(exc: OperationFailure) -> str:
    details = exc.details or {}
    return redact(str(details.get("errmsg") or exc).split(", full error:")[0])


def _first_line(text: str) -> str:
    """The driver's own words, without its topology dump."""
    text = text.splitlines()[0] if text else text
    return text.split(" (configured timeouts")[0].split(", Timeout:")[0][:300]
