"""The Kubernetes API emulator (kmock 0.8 + mongo_backup_demo.kube) serves what the operator,
kubectl and the kubernetes client need. Each test proves one or more of TESTING.md's gaps fixed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from mongo_backup_demo.kube import KubeEmulator

GROUP, VERSION = "mongobackup.io", "v1alpha1"
BACKUPS = f"/apis/{GROUP}/{VERSION}/namespaces/default/mongobackups"
REPO = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).with_name("kubectl"))

BACKUP_YAML = """\
apiVersion: mongobackup.io/v1alpha1
kind: MongoBackup
metadata:
  name: {name}
  namespace: default
spec:
  mongodb: {{uriSecretRef: {{name: mongo, key: uri}}}}
  storage: {{filesystem: {{path: /backups}}}}
"""


def backup(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MongoBackup",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "mongodb": {"uriSecretRef": {"name": "mongo", "key": "uri"}},
            "storage": {"filesystem": {"path": "/backups"}},
            **spec,
        },
    }


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeEmulator]:
    with KubeEmulator(tmp_path) as emulator:
        emulator.load_crds(REPO / "crds")  # gap 8: created through the API, then served
        yield emulator


def kubectl(kube: KubeEmulator, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kube.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECACHEDIR": str(kube.workdir / "cache")},
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def wait_for(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    """Poll until `check()` returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# How Kopf is told where to look: everywhere (gap 3: it needs clusterwide=True, not
# namespaces=None), one namespace, or a pattern (then Kopf watches Namespaces: gap 4).
SCOPES = {
    "clusterwide": {"clusterwide": True},
    "namespace": {"namespaces": ["default"]},
    "pattern": {"namespaces": ["def*"]},
}


@pytest.fixture(params=list(SCOPES))
def operator(kube: KubeEmulator, request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """A tiny Kopf operator, in-process: sets the status on create, posts an Event, and
    records deletions; it holds its finalizer until the delete handler ran."""
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=kube.url, insecure=True)

    @kopf.on.create(GROUP, VERSION, "mongobackups", registry=registry)
    def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        kopf.info(body, reason="Started", message="backup started")
        patch.status["phase"] = "Completed"
        patch.status["documents"] = 3

    @kopf.on.delete(GROUP, VERSION, "mongobackups", registry=registry)
    def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = "mongobackup.io/test-finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="test.mongobackup.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="test.mongobackup.io")
    settings.posting.level = 20  # INFO events too
    settings.watching.reconnect_backoff = 0.1
    # Kopf in a thread and loop of its own: in the test's loop, Kopf takes the tasks pytest
    # creates after its start (the fixture's teardown) for hung ones and waits 5 s for them.
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=asyncio.run,
        args=(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                ready_flag=ready,
                stop_flag=stop,
                **SCOPES[request.param],
            ),
        ),
        daemon=True,
    )
    thread.start()
    assert ready.wait(30), "the operator did not start"
    try:
        yield request.param, deleted
    finally:
        stop.set()
        thread.join(30)


def test_kopf_reconciles_a_custom_resource_with_status_events_and_finalizer(
    kube: KubeEmulator, operator: tuple[str, list[str]]
) -> None:
    scope, deleted = operator
    kube.apply(backup("b1"))

    done = wait_for(
        lambda: (
            (obj := kube.api("GET", f"{BACKUPS}/b1")).get("status", {}).get("phase") == "Completed" and obj
        ),
        "the create handler's status",
    )
    # gap 1: Kopf's finalizer patch tests resourceVersion; it only works with stamped metadata
    assert "mongobackup.io/test-finalizer" in done["metadata"]["finalizers"]
    assert done["status"]["documents"] == 3
    assert done["metadata"]["generation"] == 1  # status and finalizers do not bump it

    # gap 5: Kopf posts Events with generateName
    events = wait_for(
        lambda: [
            e
            for e in kube.api("GET", "/api/v1/namespaces/default/events")["items"]
            if e.get("reason") == "Started" and e["involvedObject"]["name"] == "b1"
        ],
        "the Started event",
    )
    assert events[0]["metadata"]["name"].startswith("kopf-event-")

    # the status went through the status subresource, the rest through the object
    kopf_requests = {r.rbac for r in kube.requests if r.user_agent.startswith("kopf")}
    assert ("patch", GROUP, "mongobackups", "status", "default") in kopf_requests
    assert ("patch", GROUP, "mongobackups", None, "default") in kopf_requests
    watched_namespace = None if scope == "clusterwide" else "default"
    assert ("watch", GROUP, "mongobackups", None, watched_namespace) in kopf_requests
    if scope == "pattern":
        assert ("watch", "", "namespaces", None, None) in kopf_requests
    assert ("create", "", "events", None, "default") in kopf_requests

    # kubectl delete waits (a watch from the list's resourceVersion, gap 9) until Kopf has
    # run its delete handler and released the finalizer
    kubectl(kube, "delete", "mongobackup", "b1", "--timeout=30s")
    assert deleted == ["b1"]
    assert kube.get(f"{GROUP}/{VERSION}", "mongobackups", "b1") is None


def test_kubectl_get_apply_and_tables(kube: KubeEmulator) -> None:
    # gap 7: kubectl has no OpenAPI to validate against, hence --validate=false
    out = kubectl(kube, "apply", "--validate=false", "-f", "-", stdin=BACKUP_YAML.format(name="nightly"))
    assert "mongobackup.mongobackup.io/nightly created" in out
    out = kubectl(kube, "apply", "--validate=false", "-f", "-", stdin=BACKUP_YAML.format(name="nightly"))
    assert "unchanged" in out
    # status set by "the operator" through the subresource: kubectl shows the printer columns
    kube.api(
        "PATCH",
        f"{BACKUPS}/nightly/status",
        {"status": {"phase": "Completed", "size": "1.5 MiB", "documents": 42}},
        "application/merge-patch+json",
    )
    table = kubectl(kube, "get", "mbk")
    header, row = table.splitlines()
    assert header.split() == ["NAME", "PHASE", "SIZE", "DOCUMENTS", "AGE"]
    assert row.split()[:5] == ["nightly", "Completed", "1.5", "MiB", "42"]

    # gap 7: PUT (kubectl replace) is served; the spec change bumps the generation
    replaced = BACKUP_YAML.format(name="nightly") + "  parallelism: 2\n"
    assert "replaced" in kubectl(kube, "replace", "--validate=false", "-f", "-", stdin=replaced)

    obj = json.loads(kubectl(kube, "get", "mongobackup", "nightly", "-o", "json"))
    assert obj["spec"]["parallelism"] == 2 and obj["metadata"]["generation"] == 2
    assert obj["spec"]["storage"] == {"filesystem": {"path": "/backups"}}
    assert obj["status"]["phase"] == "Completed"

    # gaps 2, 4, 6: core resources are discovered and namespaces list
    assert "default" in kubectl(kube, "get", "namespaces")
    kubectl(
        kube,
        "apply",
        "--validate=false",
        "-f",
        "-",
        stdin="apiVersion: v1\nkind: Secret\nmetadata: {name: mongo}\nstringData: {uri: 'mongodb://db'}\n",
    )
    secret = json.loads(kubectl(kube, "get", "secret", "mongo", "-o", "json"))
    assert secret["data"] == {"uri": "bW9uZ29kYjovL2Ri"}  # stringData stored base64-encoded, as the API does
    assert "mongobackups.mongobackup.io" in kubectl(kube, "get", "crd")
    assert "nightly" in kubectl(kube, "get", "mongo-backup")  # the CRDs' category

    # kubectl describe finds the object's Events by field selectors on involvedObject
    kube.api(
        "POST",
        "/api/v1/namespaces/default/events",
        {
            "metadata": {"generateName": "nightly-"},
            "involvedObject": {
                "kind": "MongoBackup",
                "namespace": "default",
                "name": "nightly",
                "uid": obj["metadata"]["uid"],
            },
            "reason": "Completed",
            "message": "backup completed: 1.5 MiB in 2s",
            "type": "Normal",
        },
    )
    described = kubectl(kube, "describe", "mbk", "nightly")
    assert "Phase:      Completed" in described and "backup completed: 1.5 MiB in 2s" in described

    verbs = {(r.verb, r.resource) for r in kube.requests if r.user_agent.startswith("kubectl")}
    assert {("get", "mongobackups"), ("create", "mongobackups"), ("list", "mongobackups")} <= verbs
    assert ("update", "mongobackups") in verbs


def test_metadata_generation_and_preconditions(kube: KubeEmulator) -> None:
    created = kube.apply(backup("b2"))
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    rv1 = int(meta["resourceVersion"])

    patched = kube.api("PATCH", f"{BACKUPS}/b2", {"spec": {"parallelism": 2}}, "application/merge-patch+json")
    assert patched["metadata"]["generation"] == 2 and int(patched["metadata"]["resourceVersion"]) > rv1
    labelled = kube.api(
        "PATCH", f"{BACKUPS}/b2", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json"
    )
    assert labelled["metadata"]["generation"] == 2
    # status is written through /status only, and does not bump the generation
    ignored = kube.api(
        "PATCH", f"{BACKUPS}/b2", {"status": {"phase": "Failed"}}, "application/merge-patch+json"
    )
    assert "status" not in ignored
    status = kube.api(
        "PATCH", f"{BACKUPS}/b2/status", {"status": {"phase": "Running"}}, "application/merge-patch+json"
    )
    assert status["status"] == {"phase": "Running"} and status["metadata"]["generation"] == 2
    # a no-op patch is no new version
    same = kube.api("PATCH", f"{BACKUPS}/b2", {"spec": {"parallelism": 2}}, "application/merge-patch+json")
    assert same["metadata"]["resourceVersion"] == status["metadata"]["resourceVersion"]

    # gap 1: a JSON patch whose test fails is a 422 (Kopf re-reads and retries), not a 500
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": str(rv1)},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    with pytest.raises(RuntimeError, match="HTTP 422"):
        kube.api("PATCH", f"{BACKUPS}/b2", stale, "application/json-patch+json")
    with pytest.raises(RuntimeError, match="HTTP 409"):
        kube.api(
            "PATCH",
            f"{BACKUPS}/b2",
            {"metadata": {"resourceVersion": str(rv1)}, "spec": {"parallelism": 3}},
            "application/merge-patch+json",
        )
    with pytest.raises(RuntimeError, match="HTTP 409"):
        kube.api("POST", BACKUPS, backup("b2"))  # already exists

    # gap 5: generateName
    generated = kube.api("POST", BACKUPS, {**backup(""), "metadata": {"generateName": "nightly-"}})
    assert generated["metadata"]["name"].startswith("nightly-") and len(generated["metadata"]["name"]) == 13

    # gap 7: lists carry apiVersion, kind and a resourceVersion
    assert {o["metadata"]["name"] for o in kube.list_objects(f"{GROUP}/{VERSION}", "mongobackups")} == {
        "b2",
        generated["metadata"]["name"],
    }
    listing = kube.api("GET", BACKUPS)
    assert listing["apiVersion"] == f"{GROUP}/{VERSION}" and listing["kind"] == "MongoBackupList"
    assert {o["metadata"]["name"] for o in listing["items"]} == {"b2", generated["metadata"]["name"]}
    # gap 4: namespaces list; gap 6: core discovery
    assert kube.api("GET", "/api/v1/namespaces")["items"][0]["metadata"]["name"] == "default"
    assert kube.api("GET", "/api/v1/namespaces/default")["kind"] == "Namespace"
    assert kube.api("GET", "/api/v1")["groupVersion"] == "v1"
    names = {r["name"] for r in kube.api("GET", f"/apis/{GROUP}/{VERSION}")["resources"]}
    assert {"mongobackups", "mongobackups/status", "mongorestores", "mongorestores/status"} <= names


def read_events(url: str, count: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("application/json")  # gap 7
        return [json.loads(stream.readline()) for _ in range(count)]


def test_watch_resumes_from_a_resource_version(kube: KubeEmulator) -> None:
    kube.apply(backup("a"))
    since = kube.api("GET", BACKUPS)["metadata"]["resourceVersion"]
    kube.apply(backup("b"))
    kube.api("PATCH", f"{BACKUPS}/a", {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json")
    kube.delete(f"{GROUP}/{VERSION}", "mongobackups", "b")

    # gap 9: only what happened after `since`, in order; no replay of "a" as ADDED
    events = read_events(f"{kube.url}{BACKUPS}?watch=true&resourceVersion={since}", 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(since)

    # without a resourceVersion: the current objects as ADDED, then changes as they happen
    first = read_events(f"{kube.url}{BACKUPS}?watch=true", 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [("ADDED", "a")]
    # a field selector narrows a watch to one object, as `kubectl delete --wait` uses it
    kube.apply(backup("c"))
    only_c = read_events(
        f"{kube.url}{BACKUPS}?watch=true&resourceVersion={since}&fieldSelector=metadata.name%3Dc", 1
    )
    assert only_c[0]["object"]["metadata"]["name"] == "c"


def test_the_kubernetes_client_reads_the_kubeconfig(kube: KubeEmulator) -> None:
    from kubernetes import client, config

    # loading the CRDs again (here from the models themselves) updates them in place
    assert kube.load_crds() == [
        "mongobackups.mongobackup.io",
        "mongorestores.mongobackup.io",
        "mongobackupschedules.mongobackup.io",
    ]
    kube.apply(backup("via-client"))
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kube.kubeconfig)))
    listing = api.list_namespaced_custom_object(GROUP, VERSION, "default", "mongobackups")
    assert [o["metadata"]["name"] for o in listing["items"]] == ["via-client"]
    assert any(r.user_agent.startswith("OpenAPI-Generator") for r in kube.requests)
