"""The runner's `ObjectLink` for one custom resource: status patches and reads through
`KubeApi`, events through Kopf (which fills in the involved object and the reporter)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes

from ..api import MONGO_BACKUP
from ..redact import redact
from ..runner import EventType, SecretUnavailable
from ..runner.cluster import secret_key
from .kube import KubeApi


class ResourceLink:
    def __init__(self, kube: KubeApi, plural: str, body: kopf.Body, logger: Any = None) -> None:
        self.kube = kube
        #: Kopf's logger bound to the object (its JSON records name the object)
        self.logger = logger
        self.plural = plural
        self.body = body
        self.namespace = str(body.metadata.namespace)
        self.name = str(body.metadata.name)

    async def patch_status(self, patch: Mapping[str, Any]) -> None:
        await self.kube.patch_status(self.plural, self.namespace, self.name, patch)

    def post_event(self, type: EventType, reason: str, message: str) -> None:
        """Every Event about the object goes out here, masked."""
        reason, message = redact(reason), redact(message)
        kopf.event(self.body, type=type, reason=reason, message=message[:1024])
        if self.logger is not None:  # the same story in the operator's log
            self.logger.log(logging.WARNING if type == "Warning" else logging.INFO, "%s: %s", reason, message)

    async def read_secret(self, name: str) -> dict[str, str]:
        try:
            data = await self.kube.read_secret(self.namespace, name)
        except kubernetes.client.ApiException as exc:
            if exc.status != 403:
                raise
            raise SecretUnavailable(
                "SecretForbidden",
                f"the operator may not read Secret {self.namespace}/{name}: is the namespace watched "
                "and bound to its role?",
            ) from None
        if data is None:
            raise SecretUnavailable("SecretNotFound", f"Secret {self.namespace}/{name} does not exist")
        return data

    async def read_secret_key(self, name: str, key: str) -> str:
        return secret_key(await self.read_secret(name), self.namespace, name, key)

    async def read_backup(self, name: str) -> Mapping[str, Any] | None:
        return await self.kube.get_object(MONGO_BACKUP.plural, self.namespace, name)
