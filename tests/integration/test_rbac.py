"""Least privilege, proven: every API request the operator makes during its flows (the
emulator records them all) must be granted by the ClusterRoles of manifests/rbac.yaml, and
every granted (group, resource, verb) must have been used by some flow.

Two operators run: a cluster-wide one, and a namespaced one (namespaces=[default]), each with
Kopf peering switched on, so the peering rules are exercised too. A namespaced install binds
`mongo-backup-operator` per watched namespace only, so the namespaced operator's cluster-level
requests must be covered by `mongo-backup-operator-cluster` alone."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient

from mongo_backup.api import CANCEL_ANNOTATION
from mongo_backup.handlers.pod import RUNNER_AGENT
from mongo_backup_demo.kube import ApiRequest, KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    gone,
    install_peering,
    path_of,
    phase_is,
    restore_object,
    secret,
    wait_for,
    waiting_with,
)
from tests.integration.operator.scheduling import backups_of, completed, schedule_object, stamp
from tests.support.clock import ManualClock
from tests.support.job_runner import JobRunner

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac.yaml"
TESTING_AGENT = "mongo-backup-testing"
Grant = tuple[str, str, str]  # (group, resource[/subresource], verb)
FINAL = phase_is("Completed", "Failed", "Cancelled")
#: held so that the operator may grant it to a run's Role (the API server refuses a Role with
#: rules its creator does not hold); the operator itself reads a MongoRestore only when a
#: Job-mode attempt ended without writing a final phase
DELEGATED: set[Grant] = {("mongobackup.io", "mongorestores", "get")}


def cluster_roles() -> dict[str, list[dict[str, Any]]]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text(encoding="utf-8")) if d]
    return {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] == "ClusterRole"}


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def needed(request: ApiRequest) -> Grant:
    resource = request.resource + (f"/{request.subresource}" if request.subresource else "")
    return (request.group, resource, request.verb)


@pytest.fixture
def peered_kube() -> Iterator[KubeEmulator]:
    with KubeEmulator() as kube:
        kube.load_crds()
        install_peering(kube)
        yield kube


def operator_requests(kube: KubeEmulator) -> list[ApiRequest]:
    return [
        r
        for r in kube.requests
        if r.user_agent != TESTING_AGENT and not r.user_agent.startswith(RUNNER_AGENT)
    ]


def run_job_flows(kube: KubeEmulator, jobs: JobRunner, dbname: str, path: Path) -> None:
    """The same in Job mode, a cancel (the operator deletes the running Job) and a pod that
    dies (the operator reads it for the reason)."""
    kube.apply(backup_object("jobbed", str(path), [f"{dbname}.*"]))
    assert wait_for(kube, "mongobackups", "jobbed", FINAL)["status"]["phase"] == "Completed", jobs.logs()
    kube.apply(restore_object("jobbed", "jobbed", [{"from": f"{dbname}.*", "to": f"{dbname}_j.*"}]))
    assert wait_for(kube, "mongorestores", "jobbed", FINAL)["status"]["phase"] == "Completed", jobs.logs()
    (path / "failpoints").mkdir(parents=True)
    jobs.extra_env = {
        "MONGO_BACKUP_FAILPOINTS": "backup.data=pause",
        "MONGO_BACKUP_FAILPOINT_DIR": str(path / "failpoints"),
    }
    kube.apply(backup_object("cancelled", str(path), [f"{dbname}.*"]))
    deadline = time.monotonic() + 60
    while not (path / "failpoints" / "backup.data").exists():
        assert time.monotonic() < deadline, jobs.logs()
        time.sleep(0.05)
    kube.api(
        "PATCH",
        "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/cancelled",
        {"metadata": {"annotations": {CANCEL_ANNOTATION: "true"}}},
        "application/merge-patch+json",
    )
    assert wait_for(kube, "mongobackups", "cancelled", FINAL)["status"]["phase"] == "Cancelled"
    # a pod killed as by the OOM killer: the operator reads the pod for why, and retries
    (path / "failpoints" / "backup.data").unlink(missing_ok=True)
    kube.apply(backup_object("killed", str(path), [f"{dbname}.*"]))
    while not (path / "failpoints" / "backup.data").exists():
        assert time.monotonic() < deadline + 60, jobs.logs()
        time.sleep(0.05)
    jobs.extra_env = {}
    jobs.kill("killed-backup-1")
    assert wait_for(kube, "mongobackups", "killed", FINAL)["status"]["phase"] == "Completed", jobs.logs()


def run_flows(kube: KubeEmulator, mongo_uri: str, dbname: str, path: Path, clock: ManualClock) -> None:
    """What an operator does in a day: wait for a Secret, back up, restore, delete a backup,
    and a schedule's day: an immediate backup, the next one an hour later, retention."""
    kube.apply(
        backup_object("daily", str(path), [f"{dbname}.*"], secret_name="late", deletionPolicy="Delete")
    )
    wait_for(kube, "mongobackups", "daily", waiting_with("SecretNotFound"))
    secret(kube, "late", {"uri": mongo_uri})
    secret(kube, "mongo", {"uri": mongo_uri})
    assert (
        wait_for(kube, "mongobackups", "daily", phase_is("Completed", "Failed"))["status"]["phase"]
        == "Completed"
    )
    kube.apply(restore_object("back", "daily", [{"from": f"{dbname}.*", "to": f"{dbname}_r.*"}]))
    assert (
        wait_for(kube, "mongorestores", "back", phase_is("Completed", "Failed"))["status"]["phase"]
        == "Completed"
    )
    kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongobackups/daily")
    gone(kube, "mongobackups", "daily")

    start = clock()
    kube.apply(schedule_object("hourly", path, [f"{dbname}.*"], immediate=True, retention={"keepLast": 1}))
    first = f"hourly-{stamp(start)}"
    completed(kube, first)
    clock.set(start + timedelta(hours=1, seconds=1))
    completed(kube, f"hourly-{stamp(start + timedelta(hours=1))}")
    gone(kube, "mongobackups", first)  # retention deleted it
    kube.api("DELETE", path_of("mongobackupschedules", "hourly"))
    gone(kube, "mongobackupschedules", "hourly")
    # the emulator has no garbage collector: delete what Kubernetes would with its owner
    for name in backups_of(kube, "hourly"):
        kube.api("DELETE", path_of("mongobackups", name))
        gone(kube, "mongobackups", name)


def test_operator_requests_match_the_cluster_roles_exactly(
    peered_kube: KubeEmulator, mongo_uri: str, dbname: str, tmp_path: Path
) -> None:
    kube = peered_kube
    client: MongoClient[Any] = MongoClient(mongo_uri)
    try:
        for db in (dbname, dbname + "n"):
            client[db]["items"].insert_many([{"n": i} for i in range(100)])
    finally:
        client.close()

    clock = ManualClock()
    with OperatorThread(kube.url, standalone=False, priority=100, clock=clock):
        run_flows(kube, mongo_uri, dbname, tmp_path / "clusterwide", clock)
    with JobRunner(kube, tmp_path / "pods") as jobs:
        operator = OperatorThread(kube.url, standalone=False, priority=100)
        operator.runtime.run_mode = "Job"
        with operator:
            run_job_flows(kube, jobs, dbname, tmp_path / "jobs")
    clusterwide = operator_requests(kube)
    kube.requests.clear()
    clock = ManualClock()
    with OperatorThread(kube.url, standalone=False, priority=100, namespaces=["default"], clock=clock):
        kube.api("DELETE", "/api/v1/namespaces/default/secrets/late")
        kube.api("DELETE", "/apis/mongobackup.io/v1alpha1/namespaces/default/mongorestores/back")
        run_flows(kube, mongo_uri, dbname + "n", tmp_path / "namespaced", clock)
    namespaced = operator_requests(kube)

    roles = cluster_roles()
    granted = grants(rule for rules in roles.values() for rule in rules)
    cluster_level = grants(roles["mongo-backup-operator-cluster"])

    ungranted = sorted({needed(r) for r in clusterwide + namespaced} - granted)
    assert not ungranted, f"requests the ClusterRoles do not grant (group, resource, verb): {ungranted}"
    outside = sorted({needed(r) for r in namespaced if r.namespace is None} - cluster_level)
    assert not outside, f"cluster-level requests of a namespaced operator not in the -cluster role: {outside}"
    unused = sorted(granted - {needed(r) for r in clusterwide + namespaced} - DELEGATED)
    assert not unused, f"granted but never used by the operator (remove them): {unused}"


def test_secrets_are_read_one_by_one_never_listed(
    peered_kube: KubeEmulator, mongo_uri: str, dbname: str, tmp_path: Path
) -> None:
    kube = peered_kube
    secret(kube, "mongo", {"uri": mongo_uri})
    kube.apply(backup_object("one", str(tmp_path), ["nothing_here.*"]))
    with OperatorThread(kube.url):
        wait_for(kube, "mongobackups", "one", phase_is("Completed", "Failed"))
    reads = [r for r in operator_requests(kube) if r.resource == "secrets"]
    assert reads and all(r.verb == "get" and r.name for r in reads)


def test_a_job_mode_pod_makes_only_the_requests_its_role_grants(
    peered_kube: KubeEmulator, mongo_uri: str, dbname: str, tmp_path: Path
) -> None:
    """Each run's Role names its own object (resourceNames); the pod reads no Secret (they
    are mounted) and every rule of its Role is used."""
    kube = peered_kube
    client: MongoClient[Any] = MongoClient(mongo_uri)
    try:
        client[dbname]["items"].insert_many([{"n": i} for i in range(50)])
    finally:
        client.close()
    secret(kube, "mongo", {"uri": mongo_uri})
    with JobRunner(kube, tmp_path / "pods") as jobs:
        operator = OperatorThread(kube.url)
        operator.runtime.run_mode = "Job"
        with operator:
            kube.apply(backup_object("one", str(tmp_path), [f"{dbname}.*"]))
            assert wait_for(kube, "mongobackups", "one", FINAL)["status"]["phase"] == "Completed", jobs.logs()
            kube.apply(restore_object("two", "one", [{"from": f"{dbname}.*", "to": f"{dbname}_r.*"}]))
            assert wait_for(kube, "mongorestores", "two", FINAL)["status"]["phase"] == "Completed", (
                jobs.logs()
            )

    pod_requests = [r for r in kube.requests if r.user_agent.startswith(RUNNER_AGENT)]
    assert pod_requests, "no request came from a run's pod"
    for plural, name in (("mongobackups", "one"), ("mongorestores", "two")):
        kind = "backup" if plural == "mongobackups" else "restore"
        role = kube.api(
            "GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/{name}-{kind}-runner"
        )
        granted = {
            (group, resource, verb, name_)
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
            for name_ in rule.get("resourceNames") or [None]
        }
        own = [
            r for r in pod_requests if r.resource in ("events",) or (r.resource == plural and r.name == name)
        ]
        if kind == "restore":
            own += [
                r
                for r in pod_requests
                if r.resource == "mongobackups" and r.verb == "get" and r.name == "one"
            ]
        used = set()
        for r in own:
            resource = r.resource + (f"/{r.subresource}" if r.subresource else "")
            key = (r.group, resource, r.verb, r.name)
            loose = (r.group, resource, r.verb, None)
            assert key in granted or loose in granted, f"{kind} pod request not granted by its Role: {r}"
            used.add(key if key in granted else loose)
        assert used == granted, (
            f"{kind} Role grants more than its pod used: {sorted(granted - used, key=str)}"
        )
    assert not [r for r in pod_requests if r.resource == "secrets"]
    others = [r for r in pod_requests if r.resource not in ("events", "mongobackups", "mongorestores")]
    assert not others, others
