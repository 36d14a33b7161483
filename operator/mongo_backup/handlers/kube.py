"""The few Kubernetes API calls the operator makes itself (Kopf makes the others): read a
Secret, read a MongoBackup, merge-patch a status subresource, and for schedules create and
delete MongoBackups.

The synchronous `kubernetes` client runs in worker threads (`asyncio.to_thread`), configured
the way Kopf's own login is (in-cluster service account, else kubeconfig), or pointed at an
explicit API server (tests and the demo)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes

from ..api import API_GROUP, API_VERSION


class KubeApi:
    def __init__(self, configuration: Any, user_agent: str | None = None) -> None:
        self._client = kubernetes.client.ApiClient(configuration)
        if user_agent:
            self._client.user_agent = user_agent
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._custom = kubernetes.client.CustomObjectsApi(self._client)
        self._batch = kubernetes.client.BatchV1Api(self._client)
        self._rbac = kubernetes.client.RbacAuthorizationV1Api(self._client)

    @classmethod
    def from_environment(cls, user_agent: str | None = None) -> KubeApi:
        """As Kopf logs in: the pod's service account, else the kubeconfig ($KUBECONFIG)."""
        configuration = kubernetes.client.Configuration()
        config: Any = kubernetes.config  # its loaders carry no type hints
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        return cls(configuration, user_agent)

    @classmethod
    def for_server(cls, server: str) -> KubeApi:
        """An unauthenticated client of an API server (the local emulator)."""
        configuration = kubernetes.client.Configuration()
        configuration.host = server
        configuration.verify_ssl = False
        return cls(configuration)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None when the Secret does not exist."""
        secret = await self._read_json(self._core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        data: Mapping[str, str] = secret.get("data") or {}
        decoded = {key: base64.b64decode(value).decode() for key, value in data.items() if value is not None}
        # stringData is write-only on a real API server; an emulator may keep it as it is
        decoded.update(secret.get("stringData") or {})
        return decoded

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read_json(
            self._custom.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, plural, name
        )

    async def create_object(self, plural: str, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a custom object; False when one of that name exists already."""
        try:
            await asyncio.to_thread(
                self._custom.create_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                plural,
                dict(body),
                _preload_content=False,
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_object(self, plural: str, namespace: str, name: str) -> bool:
        """Ask for a custom object's deletion (finalizers run first); False when it is gone."""
        try:
            await asyncio.to_thread(
                self._custom.delete_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                plural,
                name,
                _preload_content=False,
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _read_json(self, method: Callable[..., Any], *args: str) -> dict[str, Any] | None:
        """The raw JSON of a GET (no model conversion); None on 404."""
        try:
            response = await asyncio.to_thread(method, *args, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body: dict[str, Any] = json.loads(response.data)
        return body

    async def patch_status(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch `status` (a dict body is sent as application/merge-patch+json)."""
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_status,
            API_GROUP,
            API_VERSION,
            namespace,
            plural,
            name,
            {"status": dict(patch)},
            _preload_content=False,
        )

    # ----- Job mode ---------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any]) -> bool:
        """Create a Job, ServiceAccount, Role, RoleBinding or Event; False when it exists."""
        namespace = obj["metadata"]["namespace"]
        methods: dict[str, Callable[..., Any]] = {
            "Job": self._batch.create_namespaced_job,
            "ServiceAccount": self._core.create_namespaced_service_account,
            "Role": self._rbac.create_namespaced_role,
            "RoleBinding": self._rbac.create_namespaced_role_binding,
            "Event": self._core.create_namespaced_event,
        }
        method = methods[obj["kind"]]
        try:
            await asyncio.to_thread(method, namespace, dict(obj), _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read_json(self._batch.read_namespaced_job, name, namespace)

    async def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return await self._list_json(self._batch.list_namespaced_job, namespace, label_selector)

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return await self._list_json(self._core.list_namespaced_pod, namespace, label_selector)

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, first, its pods (foreground: the Job is gone once they are)."""
        try:
            await asyncio.to_thread(
                self._batch.delete_namespaced_job,
                name,
                namespace,
                body=kubernetes.client.V1DeleteOptions(propagation_policy="Foreground"),
                _preload_content=False,
            )
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise

    async def _list_json(
        self, method: Callable[..., Any], namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        response = await asyncio.to_thread(method, namespace, label_selector=selector, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items
