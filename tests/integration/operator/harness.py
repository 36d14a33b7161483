"""Running the operator in-process against the Kubernetes API emulator, and the few helpers
the operator tests share (Secrets, objects, waiting for a phase)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from typing import Any

from mongo_backup.handlers.settings import PEERING_NAME
from mongo_backup.runner import RunnerSettings
from mongo_backup_demo import operator_thread
from mongo_backup_demo.kube import KubeApiError, KubeEmulator

GROUP_VERSION = "mongobackup.io/v1alpha1"
NAMESPACE = "default"

#: short timings: tests wait for seconds, not minutes
FAST = RunnerSettings(
    max_concurrent_runs=2,
    progress_interval=0.2,
    wait_interval=0.3,
    retry_delays=(0.2, 0.3),
    mongo_timeout_ms=800,
    schedule_interval=0.05,
)


class OperatorThread(operator_thread.OperatorThread):
    """The operator in its own thread, with the tests' short timings by default."""

    def __init__(self, server: str, settings: RunnerSettings = FAST, **options: Any) -> None:
        super().__init__(server, settings, **options)


def secret(kube: KubeEmulator, name: str, data: Mapping[str, str], namespace: str = NAMESPACE) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": encoded,
        }
    )


def backup_object(
    name: str, path: str, include: list[str], *, secret_name: str = "mongo", key: str = "uri", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "MongoBackup",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "mongodb": {"uriSecretRef": {"name": secret_name, "key": key}},
            "storage": {"filesystem": {"path": path}},
            "namespaces": {"include": include},
            **spec,
        },
    }


def restore_object(
    name: str,
    backup: str,
    rename: list[dict[str, str]] | None = None,
    *,
    secret_name: str = "mongo",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "MongoRestore",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "backupRef": {"name": backup},
            "mongodb": {"uriSecretRef": {"name": secret_name, "key": "uri"}},
            "rename": rename or [],
            **spec,
        },
    }


def path_of(plural: str, name: str, namespace: str = NAMESPACE) -> str:
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{plural}/{name}"


def get(kube: KubeEmulator, plural: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(kube.api("GET", path_of(plural, name)))
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise


def wait_for(
    kube: KubeEmulator,
    plural: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
    what: str = "",
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        obj = get(kube, plural, name)
        if obj is not None and check(obj):
            return obj
        time.sleep(0.05)
    raise AssertionError(f"{plural}/{name}: timed out waiting for {what or check}; last seen: {obj}")


def phase_is(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("phase") in phases


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def waiting_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        return ready is not None and ready["status"] == "False" and ready["reason"] == reason

    return check


def gone(kube: KubeEmulator, plural: str, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(kube, plural, name) is None:
            return
        time.sleep(0.05)
    raise AssertionError(f"{plural}/{name} was not deleted within {timeout}s")


def events_of(kube: KubeEmulator, name: str) -> list[dict[str, Any]]:
    events = kube.api("GET", f"/api/v1/namespaces/{NAMESPACE}/events")["items"]
    return [e for e in events if (e.get("involvedObject") or {}).get("name") == name]


def peering_crd(plural: str, kind: str, scope: str) -> dict[str, Any]:
    """Kopf's peering CRD (as in Kopf's docs), schema-less status."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def install_peering(kube: KubeEmulator) -> None:
    """Kopf's peering CRDs and the peering objects the operator uses (what a cluster with
    more than one replica needs), cluster-wide and in `default`."""
    kube.load_crds([peering_crd("clusterkopfpeerings", "ClusterKopfPeering", "Cluster")])
    kube.load_crds([peering_crd("kopfpeerings", "KopfPeering", "Namespaced")])
    kube.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING_NAME}}
    )
    kube.apply(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": PEERING_NAME, "namespace": NAMESPACE},
        }
    )
