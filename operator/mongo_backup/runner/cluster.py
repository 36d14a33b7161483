"""What a run needs from the cluster, as a small interface the handlers implement.

The runner never talks to Kubernetes itself: the handlers (the only Kopf code) give it an
`ObjectLink` bound to one custom resource. This keeps the runner testable and the layering
one-way: handlers -> runner -> engine -> storage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

EventType = Literal["Normal", "Warning"]


class SecretUnavailable(Exception):
    """A referenced Secret or one of its keys is missing: the run waits until it appears."""

    def __init__(
        self, reason: Literal["SecretNotFound", "SecretKeyNotFound", "SecretForbidden"], message: str
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ObjectLink(Protocol):
    """The cluster as seen from one MongoBackup or MongoRestore (its own namespace)."""

    namespace: str
    name: str

    async def patch_status(self, patch: Mapping[str, Any]) -> None:
        """Merge-patch the object's status subresource."""

    def post_event(self, type: EventType, reason: str, message: str) -> None:
        """Post a Kubernetes Event about the object (fire and forget)."""

    async def read_secret_key(self, name: str, key: str) -> str:
        """The decoded value of one key of a Secret in the object's namespace.
        Raises SecretUnavailable when the Secret or the key is missing."""

    async def read_secret(self, name: str) -> dict[str, str]:
        """Every key of a Secret, decoded. Raises SecretUnavailable when it is missing."""

    async def read_backup(self, name: str) -> Mapping[str, Any] | None:
        """A MongoBackup of the object's namespace as a raw dict, or None when absent."""


def secret_key(secret: Mapping[str, str], namespace: str, name: str, key: str) -> str:
    """One key of a Secret's decoded data (`read_secret_key` of every ObjectLink)."""
    if key not in secret:
        raise SecretUnavailable("SecretKeyNotFound", f"Secret {namespace}/{name} has no key {key!r}")
    return secret[key]
