"""Turning what went wrong into a status reason: a CamelCase word a user can search for, a
one-line message without secrets, and whether trying again may help. The reason and the
retry decision come from the engine's one error table (`engine.errors.ERROR_KINDS`)."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.errors import PyMongoError

from ..engine.errors import UNEXPECTED, kind_of
from ..engine.source import translate
from ..redact import redact


@dataclass(frozen=True)
class Failure(Exception):
    """A run that cannot go on: phase Failed with this reason and message."""

    reason: str
    message: str
    #: trying again later may help (network, unreachable server)
    retryable: bool = False

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def one_line(exc: BaseException) -> str:
    """The error's message, first line only, with every secret masked."""
    text = redact(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, Failure):
        return Failure(exc.reason, one_line(Exception(exc.message)), exc.retryable)
    if isinstance(exc, PyMongoError):  # one the engine did not translate: the same words
        exc = translate(exc)
    kind = kind_of(exc)
    message = one_line(exc)
    if kind is UNEXPECTED:
        message = f"{type(exc).__name__}: {message}"
    return Failure(kind.reason, message, kind.retryable)
