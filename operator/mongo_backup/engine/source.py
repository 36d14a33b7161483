"""Connecting to MongoDB, and turning driver errors into one-line messages without secrets."""

from __future__ import annotations

import re
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

from .model import EngineError, InvalidInput, SourceUnavailable

_USERINFO = re.compile(r"(mongodb(?:\+srv)?://)([^@/]*)@")
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed


def _mask(found: re.Match[str]) -> str:
    user, colon, _password = found.group(2).partition(":")
    return f"{found.group(1)}{user}:***@" if colon else found.group(0)


def mask_uri(uri: str) -> str:
    """The URI with its password replaced by `***` (the user name stays: it helps debugging)."""
    return _USERINFO.sub(_mask, uri)


def scrub(text: str, uri: str | None = None) -> str:
    """Remove any credentials the driver may have echoed into an error message."""
    text = _USERINFO.sub(_mask, text)
    if uri:
        password = _password_of(uri)
        if password:
            text = text.replace(password, "***")
    return text


def _password_of(uri: str) -> str | None:
    found = _USERINFO.search(uri)
    if not found or ":" not in found.group(2):
        return None
    from urllib.parse import unquote

    return unquote(found.group(2).partition(":")[2]) or None


def open_client(
    uri: str, *, timeout_ms: int = 20_000, app_name: str = "mongo-backup"
) -> AsyncMongoClient[Any]:
    """A client for `uri`; a malformed URI is an EngineError that shows the URI masked."""
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
        raise InvalidInput(f"invalid MongoDB URI {mask_uri(uri)!r}: {scrub(str(exc), uri)}") from None


@contextmanager
def mongo_errors(what: str, uri: str | None = None) -> Iterator[None]:
    """Translate driver exceptions raised while doing `what` into EngineErrors."""
    try:
        yield
    except EngineError:
        raise
    except ServerSelectionTimeoutError as exc:
        raise SourceUnavailable(
            f"{what}: MongoDB is unreachable ({_first_line(scrub(str(exc), uri))})"
        ) from None
    except ConnectionFailure as exc:
        raise SourceUnavailable(f"{what}: connection to MongoDB lost ({scrub(str(exc), uri)})") from None
    except OperationFailure as exc:
        if exc.code in _AUTH_CODES:
            raise SourceUnavailable(f"{what}: MongoDB refused access ({exc.code}: {_reason(exc)})") from None
        raise EngineError(f"{what}: MongoDB error {exc.code}: {_reason(exc)}") from None
    except PyMongoError as exc:
        raise EngineError(f"{what}: {scrub(str(exc), uri)}") from None


def _reason(exc: OperationFailure) -> str:
    details = exc.details or {}
    return str(details.get("errmsg") or exc).split(", full error:")[0]


def _first_line(text: str) -> str:
    """The driver's own words, without its topology dump."""
    text = text.splitlines()[0] if text else text
    return text.split(" (configured timeouts")[0].split(", Timeout:")[0][:300]
