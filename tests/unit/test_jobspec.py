"""The Job of a Job-mode attempt and what a finished Job says about it (runner.jobspec)."""

from __future__ import annotations

from typing import Any

import pytest

from mongo_backup.api import MongoBackupSpec, RunnerSpec
from mongo_backup.runner.jobspec import (
    JobSettings,
    Owner,
    job_end,
    job_manifest,
    job_name,
    merge_secrets,
    runner_role,
    storage_secrets,
)

OWNER = Owner("MongoBackup", "mongobackups", "shop", "nightly", "0b7e-uid")


def test_job_names_fit_in_63_characters_and_stay_apart() -> None:
    assert job_name(OWNER, 3) == "nightly-backup-3"
    long_a = Owner("MongoBackup", "mongobackups", "ns", "x" * 200, "uid-a")
    long_b = Owner("MongoBackup", "mongobackups", "ns", "x" * 200, "uid-b")
    assert len(job_name(long_a, 12)) <= 63 and job_name(long_a, 12).endswith("-backup-12")
    assert job_name(long_a, 1) != job_name(long_b, 1)


def test_the_job_runs_one_attempt_restricted_with_secrets_only_mounted() -> None:
    spec = MongoBackupSpec.model_validate(
        {
            "mongodb": {"uriSecretRef": {"name": "mongo", "key": "uri"}},
            "storage": {"s3": {"bucket": "bkt", "credentialsSecretRef": {"name": "s3"}}},
            "runner": {"resources": {"limits": {"memory": "2Gi"}}, "activeDeadlineSeconds": 600},
        }
    )
    secrets = merge_secrets({"mongo": {"uri"}}, storage_secrets(spec.storage))
    job = job_manifest(OWNER, 2, spec.runner, JobSettings(image="img:1"), secrets, service_account="sa")
    assert job["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 600
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:6] == ["mongo-backup", "run-one", "backup", "shop/nightly", "--attempt", "2"]
    assert container["resources"] == {"limits": {"memory": "2Gi"}}
    assert all("valueFrom" not in env for env in container["env"])
    sources = {v["secret"]["secretName"]: v["secret"].get("items") for v in pod["volumes"] if "secret" in v}
    assert sources == {"mongo": [{"key": "uri", "path": "uri"}], "s3": None}


def test_the_runners_role_names_its_own_object_only() -> None:
    rules = runner_role(OWNER)["rules"]
    assert {
        "apiGroups": ["mongobackup.io"],
        "resources": ["mongobackups/status"],
        "verbs": ["patch"],
        "resourceNames": ["nightly"],
    } in rules
    assert all(r.get("resourceNames") == ["nightly"] for r in rules if r["apiGroups"] == ["mongobackup.io"])
    assert not any("secrets" in r["resources"] for r in rules)
    assert RunnerSpec().service_account_name is None


def pod(terminated: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    state = (
        {"containerStatuses": [{"name": "run", "state": {"terminated": terminated}}]} if terminated else {}
    )
    return {
        "metadata": {"name": "nightly-backup-1-abcde", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {**state, **status},
    }


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "nightly-backup-1"},
        "status": {"conditions": [{"type": t, "status": "True", "reason": r} for t, r in conditions]},
    }


@pytest.mark.parametrize(
    ("the_job", "pods", "reason"),
    [
        (
            job(("Failed", "BackoffLimitExceeded")),
            [pod({"exitCode": 137, "reason": "OOMKilled"})],
            "OOMKilled",
        ),
        (job(("Failed", "BackoffLimitExceeded")), [pod({"exitCode": 137, "reason": "Error"})], "OOMKilled"),
        (job(("Failed", "DeadlineExceeded")), [pod({"exitCode": 143})], "DeadlineExceeded"),
        (
            job(("Failed", "BackoffLimitExceeded")),
            [pod(reason="Evicted", message="low on memory")],
            "PodEvicted",
        ),
        (
            job(("Failed", "PodFailurePolicy")),
            [pod({"exitCode": 143}, conditions=[{"type": "DisruptionTarget", "status": "True"}])],
            "PodEvicted",
        ),
        (job(("Failed", "BackoffLimitExceeded")), [pod({"exitCode": 2})], "JobFailed"),
        (job(("Failed", "BackoffLimitExceeded")), [], "JobFailed"),
    ],
)
def test_a_failed_job_says_why_and_names_its_pod(
    the_job: dict[str, Any], pods: list[dict[str, Any]], reason: str
) -> None:
    end = job_end(the_job, pods)
    assert end is not None and not end.succeeded and end.reason == reason
    assert ("nightly-backup-1-abcde" if pods else "nightly-backup-1") in end.message


def test_a_running_job_has_not_ended_and_a_complete_one_succeeded() -> None:
    assert job_end(job(), []) is None
    end = job_end(job(("Complete", "Completed")), [])
    assert end is not None and end.succeeded
