"""Connecting to MongoDB, and turning driver errors into one-line messages without secrets.

`open_client` checks the URI first (`engine.uri`), then remembers the client for the task
that opened it and every task that task starts later (a context variable: the engine's
`mongo_errors("reading db.c")` names what it was doing, not the client). When no server can
be selected, the message then names the hosts, how long we tried (the server selection
timeout) and each server's own reason, taken from what the driver's monitor heard
(heartbeat events) and from the client's topology description: never from the text of the
exception, whose topology dump spans lines and, with `directConnection=true`, blames a
replica set name when the server simply did not answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.server_description import ServerDescription
from pymongo.server_type import SERVER_TYPE

from ..redact import mask_uri, redact, register_uri
from .errors import EngineError, InvalidInput, SourceAccessDenied, SourceUnavailable
from .uri import check_uri, hosts_part

_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed
_MAX_REASON = 300

Address = tuple[str, int | None]


@dataclass
class Heard:
    """The last heartbeat of one server: its error, or the replica set its hello named."""

    error: Exception | None = None
    set_name: str | None = None


class ServerWatch(monitoring.ServerHeartbeatListener):
    """What the client's monitor last heard from each server."""

    def __init__(self) -> None:
        self.heard: dict[Address, Heard] = {}

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        self.heard[event.connection_id] = Heard(set_name=event.reply.replica_set_name)

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        self.heard[event.connection_id] = Heard(error=event.reply)


@dataclass(frozen=True)
class Connection:
    client: AsyncMongoClient[Any]
    #: the host list as the URI names it (no credentials)
    hosts: str
    watch: ServerWatch = field(default_factory=ServerWatch)


_connection: ContextVar[Connection | None] = ContextVar("mongo_backup_connection", default=None)


def open_client(
    uri: str, *, timeout_ms: int = 20_000, app_name: str = "mongo-backup"
) -> AsyncMongoClient[Any]:
    """A client for `uri`; a malformed URI is InvalidInput that shows the URI masked."""
    register_uri(uri)  # from here on, its password is masked in every message
    check_uri(uri)
    options: dict[str, Any] = {"appname": app_name, "tz_aware": True}
    lowered = uri.lower()
    # timeouts given in the URI win over our defaults
    if "serverselectiontimeoutms" not in lowered:
        options["serverSelectionTimeoutMS"] = timeout_ms
    if "connecttimeoutms" not in lowered:
        options["connectTimeoutMS"] = min(timeout_ms, 10_000)
    watch = ServerWatch()
    try:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, event_listeners=[watch], **options)
    except (ConfigurationError, ValueError, TypeError, OSError) as exc:  # InvalidURI is a ConfigurationError
        raise InvalidInput(f"invalid MongoDB URI {mask_uri(uri)!r}: {_one_line(exc)}") from None
    _connection.set(Connection(client, hosts_part(uri), watch))
    return client


@contextmanager
def mongo_errors(what: str) -> Iterator[None]:
    """Translate driver exceptions raised while doing `what` into EngineErrors."""
    try:
        yield
    except EngineError:
        raise
    except PyMongoError as exc:
        raise translate(exc, what) from None


def translate(exc: PyMongoError, what: str = "") -> EngineError:
    """The EngineError a driver exception means, in one line without secrets; `what` (e.g.
    "reading db.c") starts the message."""
    at = f"{what}: " if what else ""
    if isinstance(exc, ServerSelectionTimeoutError):
        return SourceUnavailable(f"{at}{unreachable()}")
    if isinstance(exc, ConnectionFailure):
        return SourceUnavailable(f"{at}connection to MongoDB lost: {_one_line(exc)}")
    if isinstance(exc, ConfigurationError):  # raised by a first operation: a mongodb+srv:// name
        # that does not resolve, a server this driver cannot talk to
        return SourceUnavailable(f"{at}MongoDB at {_hosts()} cannot be used: {_one_line(exc)}")
    if isinstance(exc, OperationFailure):
        reason = (exc.details or {}).get("errmsg") or f"code {exc.code}"
        if exc.code in _AUTH_CODES:
            return SourceAccessDenied(f"{at}MongoDB refused access ({exc.code}: {_one_line(reason)})")
        return EngineError(f"{at}MongoDB error {exc.code}: {_one_line(reason)}")
    return EngineError(f"{at}{_one_line(exc)}")


def _hosts() -> str:
    connection = _connection.get()
    return connection.hosts if connection is not None else "the URI's hosts"


def unreachable() -> str:
    """Why no server could be selected: the hosts, how long we tried, each server's reason."""
    connection = _connection.get()
    if connection is None:
        return "MongoDB could not be reached (no server answered in time)"
    client = connection.client
    wanted = client.options.replica_set_name
    descriptions = client.topology_description.server_descriptions()
    addresses = sorted({*descriptions, *connection.watch.heard}, key=str)
    reasons = [
        (address, _why(address, descriptions.get(address), connection.watch.heard.get(address), wanted))
        for address in addresses
    ]
    if not reasons:
        why = "no server answered"
    elif len(reasons) == 1:
        why = reasons[0][1]
    else:
        why = "; ".join(f"{_address(address)}: {reason}" for address, reason in reasons)
    timeout = client.options.server_selection_timeout
    return f"MongoDB at {connection.hosts} could not be reached within {timeout:g}s: {why}"


def _why(
    address: Address, description: ServerDescription | None, heard: Heard | None, wanted: str | None
) -> str:
    # The heartbeat first: with directConnection=true and a replicaSet, the topology
    # description replaces a network error by a "set named 'None'" mismatch.
    if heard is not None:
        if heard.error is not None:
            return _driver_reason(heard.error, address)
        if wanted is not None and heard.set_name != wanted:
            if heard.set_name is None:
                return f"it answered, but is not a member of replica set {wanted!r}"
            return f"it answered as a member of replica set {heard.set_name!r}, not {wanted!r}"
    if description is not None:
        if description.error is not None:
            return _driver_reason(description.error, address)
        if description.server_type != SERVER_TYPE.Unknown:
            return f"it answered as {description.server_type_name}, which cannot serve this operation"
    return "no answer in time"


def _driver_reason(error: Exception, address: Address) -> str:
    """The driver's own one-line reason for one server, without the address we print anyway
    and without its note of the configured timeouts (we print the one that mattered)."""
    text = _one_line(error).removeprefix(f"{_address(address)}: ")
    return text.split(" (configured timeouts:")[0]


def _address(address: Address) -> str:
    host, port = address
    return f"{host}:{port}" if port is not None else host


def _one_line(value: object) -> str:
    text = redact(str(value).strip())
    return text.splitlines()[0][:_MAX_REASON] if text else type(value).__name__
