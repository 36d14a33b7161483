"""runMode Job: each attempt of a run is a Kubernetes Job whose pod (`mongo-backup run-one`)
writes the object's status itself. The emulator has no Job controller and no kubelet: the
test stand-in (tests/support/job_runner.py) runs each Job's command as a local process."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    condition,
    events_of,
    gone,
    path_of,
    phase_is,
    restore_object,
    secret,
    wait_for,
)
from tests.integration.operator.scheduling import eventually
from tests.integration.operator.test_cancel import assert_as_it_was, cancel, old_targets, stored_files
from tests.support.job_runner import JobRunner
from tests.support.scrape import scrape_url

FINAL = phase_is("Completed", "Failed", "Cancelled")
JOBS = "/apis/batch/v1/namespaces/default/jobs"


@pytest.fixture
def jobs(kube: KubeEmulator, tmp_path: Path) -> Iterator[JobRunner]:
    with JobRunner(kube, tmp_path / "pods") as runner:
        yield runner


def job_operator(kube: KubeEmulator, **options: Any) -> OperatorThread:
    operator = OperatorThread(kube.url, **options)
    operator.runtime.run_mode = "Job"
    return operator


@pytest.fixture
def job_mode(kube: KubeEmulator, jobs: JobRunner) -> Iterator[OperatorThread]:
    with job_operator(kube) as operator:
        yield operator


@pytest.fixture
def source_db(sync_mongo: MongoClient[Any], dbname: str) -> str:
    for coll in ("a", "b"):
        sync_mongo[dbname][coll].insert_many([{"_id": i, "coll": coll, "pad": "x" * 50} for i in range(200)])
    return dbname


def final(kube: KubeEmulator, plural: str, name: str, jobs: JobRunner) -> dict[str, Any]:
    try:
        obj = wait_for(kube, plural, name, FINAL, what="a final phase")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{jobs.logs()}") from None
    assert jobs.error is None, jobs.error
    return obj


def shape(status: dict[str, Any]) -> dict[str, Any]:
    """What must be the same in both run modes: the fields, the conditions, the figures."""
    return {
        "fields": sorted(status),
        "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status["conditions"]),
        **{k: status.get(k) for k in ("phase", "documents", "collections", "dataBytes", "attempts")},
    }


def job_objects(kube: KubeEmulator) -> list[dict[str, Any]]:
    return list(kube.api("GET", JOBS)["items"])


def jobs_gone(kube: KubeEmulator, timeout: float = 30) -> None:
    """The pod may write its Cancelled status before its Job is gone: the Job goes soon after."""
    deadline = time.monotonic() + timeout
    while job_objects(kube):
        assert time.monotonic() < deadline, f"Jobs still there: {job_objects(kube)}"
        time.sleep(0.05)


def test_a_backup_and_a_restore_run_as_jobs_with_the_status_of_in_process_runs(
    kube: KubeEmulator,
    jobs: JobRunner,
    mongo_secret: str,
    mongo_uri: str,
    source_db: str,
    sync_mongo: MongoClient[Any],
    tmp_path: Path,
) -> None:
    with OperatorThread(kube.url):  # the same runs in-process, to compare with
        kube.apply(backup_object("inproc", str(tmp_path), [f"{source_db}.*"]))
        inproc = wait_for(kube, "mongobackups", "inproc", FINAL)["status"]
        kube.apply(
            restore_object("inproc-r", "inproc", [{"from": f"{source_db}.*", "to": f"{source_db}_i.*"}])
        )
        inproc_r = wait_for(kube, "mongorestores", "inproc-r", FINAL)["status"]
    assert inproc["phase"] == inproc_r["phase"] == "Completed", (inproc, inproc_r)

    with job_operator(kube, metrics_port=0) as operator:
        kube.apply(backup_object("nightly", str(tmp_path), [f"{source_db}.*"], runMode="Job"))
        backup = final(kube, "mongobackups", "nightly", jobs)["status"]
        kube.apply(
            restore_object(
                "back", "nightly", [{"from": f"{source_db}.*", "to": f"{source_db}_j.*"}], runMode="Job"
            )
        )
        restore = final(kube, "mongorestores", "back", jobs)["status"]
        # the pod wrote the final status; the operator's metrics have it all the same
        nightly = {"namespace": "default", "name": "nightly", "kind": "backup"}
        scraped = eventually(
            lambda: (
                (s := scrape_url(operator.metrics_url)).value(
                    "mongobackup_runs_total", **nightly, result="succeeded"
                )
                and s
            ),
            "the Job-mode backup counted",
        )
        assert scraped.value("mongobackup_stored_bytes", **nightly) == backup["storedBytes"]
        assert scraped.value("mongobackup_documents", **nightly) == backup["documents"]
        assert scraped.value("mongobackup_runs_in_progress", **nightly) == 0

    assert backup["phase"] == "Completed", backup
    assert shape(backup) == shape(inproc)
    assert (tmp_path / "nightly" / "manifest.json").exists()
    assert restore["phase"] == "Completed", restore
    assert shape(restore) == shape(inproc_r)
    assert condition({"status": restore}, "Verified")["status"] == "True"  # type: ignore[index]
    assert sync_mongo[f"{source_db}_j"]["a"].count_documents({}) == 200
    assert [name for _, name in jobs.started] == ["nightly-backup-1", "back-restore-1"]

    # the pod told its story as the operator would: the same events, from the pod
    reasons = [e["reason"] for e in events_of(kube, "nightly")]
    assert "Started" in reasons and "Completed" in reasons, reasons

    # the Job and its pod: owned by the object, restricted, no secret value anywhere in it
    (job,) = [j for j in job_objects(kube) if j["metadata"]["name"] == "nightly-backup-1"]
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "MongoBackup" and owner["name"] == "nightly" and owner["controller"] is True
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    text = json.dumps(job)
    assert mongo_uri not in text and "mongodb://" not in text
    assert {"secretName": "mongo", "defaultMode": 0o440, "items": [{"key": "uri", "path": "uri"}]} in [
        v.get("secret") for v in pod["volumes"]
    ]


def pause_at(jobs: JobRunner, point: str, folder: Path) -> Path:
    """The next Jobs' processes stop at failpoint `point` (the marker file says they are there)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs.extra_env = {"MONGO_BACKUP_FAILPOINTS": f"{point}=pause", "MONGO_BACKUP_FAILPOINT_DIR": str(folder)}
    return folder / point


def reached(marker: Path, jobs: JobRunner, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, f"no process reached {marker.name}\n{jobs.logs()}"
        time.sleep(0.05)


def test_an_oom_killed_pod_fails_its_attempt_which_is_retried_by_a_new_job(
    kube: KubeEmulator,
    jobs: JobRunner,
    job_mode: OperatorThread,
    mongo_secret: str,
    source_db: str,
    tmp_path: Path,
) -> None:
    marker = pause_at(jobs, "backup.data", tmp_path / "failpoints")
    kube.apply(backup_object("big", str(tmp_path / "store"), [f"{source_db}.*"], parallelism=1))
    reached(marker, jobs)
    jobs.extra_env = {}  # the next attempt runs through
    jobs.kill("big-backup-1")  # SIGKILL: exit code 137, as the OOM killer leaves a container

    status = final(kube, "mongobackups", "big", jobs)["status"]
    assert status["phase"] == "Completed", status
    assert status["attempts"] == 2
    assert [name for _, name in jobs.started] == ["big-backup-1", "big-backup-2"]
    oom = [e for e in events_of(kube, "big") if e["reason"] == "OOMKilled"]
    assert len(oom) == 1 and oom[0]["type"] == "Warning", oom
    assert jobs.runs["default", "big-backup-1"].pod in oom[0]["message"]
    assert "retrying" in oom[0]["message"]
    assert sorted(p.name for p in (tmp_path / "store" / "big").iterdir()) == ["manifest.json", source_db]


def test_an_attempt_over_its_deadline_fails_with_deadline_exceeded(
    kube: KubeEmulator,
    jobs: JobRunner,
    job_mode: OperatorThread,
    mongo_secret: str,
    source_db: str,
    tmp_path: Path,
) -> None:
    """Every attempt is held past activeDeadlineSeconds: each is stopped, the last one fails the run."""
    pause_at(jobs, "backup.data", tmp_path / "failpoints")
    kube.apply(
        backup_object(
            "slow",
            str(tmp_path / "store"),
            [f"{source_db}.*"],
            parallelism=1,
            runner={"activeDeadlineSeconds": 1},
        )
    )
    status = final(kube, "mongobackups", "slow", jobs)["status"]
    assert status["phase"] == "Failed", status
    failed = condition({"status": status}, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded", status["conditions"]
    assert "activeDeadlineSeconds" in status["error"] and "slow-backup-3-" in status["error"]
    # retried under the retry delays (two of them in these tests), each by a Job of its own
    assert status["attempts"] == 3
    assert [name for _, name in jobs.started] == ["slow-backup-1", "slow-backup-2", "slow-backup-3"]
    assert not list((tmp_path / "store" / "slow").rglob("*.bson.zst")), "a stopped attempt left data"


@pytest.mark.parametrize("restarted_as", ["Job", "InProcess"])
def test_an_operator_restarted_while_a_job_runs_adopts_it(
    kube: KubeEmulator, jobs: JobRunner, mongo_secret: str, source_db: str, tmp_path: Path, restarted_as: str
) -> None:
    """Also when the operator's setting changed meanwhile: a run never has two live attempts."""
    marker = pause_at(jobs, "backup.data", tmp_path / "failpoints")
    with job_operator(kube):
        kube.apply(backup_object("steady", str(tmp_path / "store"), [f"{source_db}.*"], parallelism=1))
        reached(marker, jobs)
    assert wait_for(kube, "mongobackups", "steady", phase_is("Running"))["status"]["attempts"] == 1
    restarted = OperatorThread(kube.url)
    restarted.runtime.run_mode = restarted_as  # type: ignore[assignment]
    with restarted:
        marker.unlink()  # the Job's pod goes on, under the new operator
        status = final(kube, "mongobackups", "steady", jobs)["status"]
    assert status["phase"] == "Completed", status
    assert status["attempts"] == 1
    assert [name for _, name in jobs.started] == ["steady-backup-1"]
    assert [j["metadata"]["name"] for j in job_objects(kube)] == ["steady-backup-1"]


def test_a_cancelled_job_mode_backup_leaves_nothing_stored(
    kube: KubeEmulator,
    jobs: JobRunner,
    job_mode: OperatorThread,
    mongo_secret: str,
    source_db: str,
    tmp_path: Path,
) -> None:
    marker = pause_at(jobs, "backup.data", tmp_path / "failpoints")
    store = tmp_path / "store"
    kube.apply(backup_object("nightly", str(store), [f"{source_db}.*"], parallelism=1))
    reached(marker, jobs)
    assert stored_files(store / "nightly"), "the held run had written nothing yet"
    cancel(kube, "mongobackups", "nightly")
    status = final(kube, "mongobackups", "nightly", jobs)["status"]
    assert status["phase"] == "Cancelled", status
    assert "were deleted" in condition({"status": status}, "Cancelled")["message"]  # type: ignore[index]
    assert stored_files(store / "nightly") == []
    jobs_gone(kube)
    assert [e["reason"] for e in events_of(kube, "nightly")].count("Cancelled") == 1


def test_a_cancelled_job_mode_restore_leaves_every_target_as_it_was(
    kube: KubeEmulator,
    jobs: JobRunner,
    job_mode: OperatorThread,
    mongo_secret: str,
    sync_mongo: MongoClient[Any],
    source_db: str,
    tmp_path: Path,
) -> None:
    kube.apply(backup_object("full", str(tmp_path / "store"), [f"{source_db}.*"]))
    assert final(kube, "mongobackups", "full", jobs)["status"]["phase"] == "Completed"
    target = f"{source_db}_t"
    before = old_targets(sync_mongo, target)

    marker = pause_at(jobs, "restore.swap@2", tmp_path / "failpoints")  # a swapped in, b not yet
    kube.apply(
        restore_object("over", "full", [{"from": f"{source_db}.*", "to": f"{target}.*"}], onConflict="Drop")
    )
    reached(marker.with_name("restore.swap"), jobs)
    cancel(kube, "mongorestores", "over")
    status = final(kube, "mongorestores", "over", jobs)["status"]
    assert status["phase"] == "Cancelled", status
    assert "every target is as it was" in condition({"status": status}, "Cancelled")["message"]  # type: ignore[index]
    assert_as_it_was(sync_mongo, target, before)


def test_deleting_a_running_job_mode_backup_stops_its_job_and_deletes_what_it_wrote(
    kube: KubeEmulator,
    jobs: JobRunner,
    job_mode: OperatorThread,
    mongo_secret: str,
    source_db: str,
    tmp_path: Path,
) -> None:
    marker = pause_at(jobs, "backup.data", tmp_path / "failpoints")
    store = tmp_path / "store"
    kube.apply(backup_object("doomed", str(store), [f"{source_db}.*"], parallelism=1))
    reached(marker, jobs)
    assert stored_files(store / "doomed")
    kube.api("DELETE", path_of("mongobackups", "doomed"))
    gone(kube, "mongobackups", "doomed", timeout=60)
    assert stored_files(store / "doomed") == []
    assert jobs.runs["default", "doomed-backup-1"].process.poll() is not None


def test_an_attempt_the_pod_may_retry_is_retried_by_a_new_job_then_fails(
    kube: KubeEmulator, jobs: JobRunner, job_mode: OperatorThread, tmp_path: Path
) -> None:
    """MongoDB is unreachable: each pod says so and when the next attempt comes; the last fails."""
    secret(kube, "nowhere", {"uri": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300"})
    kube.apply(backup_object("lost", str(tmp_path), ["db.*"], secret_name="nowhere"))
    status = final(kube, "mongobackups", "lost", jobs)["status"]
    assert status["phase"] == "Failed", status
    assert condition({"status": status}, "Failed")["reason"] == "MongoDBUnreachable"  # type: ignore[index]
    assert status["attempts"] == 3
    assert [name for _, name in jobs.started] == ["lost-backup-1", "lost-backup-2", "lost-backup-3"]
    retrying = [e for e in events_of(kube, "lost") if e["reason"] == "MongoDBUnreachable"]
    assert len(retrying) == 2 and all("retrying in" in e["message"] for e in retrying), retrying


def test_a_job_mode_run_shows_its_progress_while_it_runs(
    kube: KubeEmulator,
    jobs: JobRunner,
    job_mode: OperatorThread,
    mongo_secret: str,
    source_db: str,
    tmp_path: Path,
) -> None:
    """Held at its second collection: the first one's documents are in status.progress."""
    marker = pause_at(jobs, "backup.data@2", tmp_path / "failpoints")
    kube.apply(backup_object("watched", str(tmp_path / "store"), [f"{source_db}.*"], parallelism=1))
    reached(marker.with_name("backup.data"), jobs)

    def progressed(obj: dict[str, Any]) -> bool:
        progress = (obj.get("status") or {}).get("progress") or {}
        return obj["status"].get("phase") == "Running" and (progress.get("documentsDone") or 0) >= 200

    wait_for(kube, "mongobackups", "watched", progressed, what="progress of the first collection")
    marker.with_name("backup.data").unlink()
    assert final(kube, "mongobackups", "watched", jobs)["status"]["phase"] == "Completed"
    assert mongo_secret_value_absent(jobs, kube)


def mongo_secret_value_absent(jobs: JobRunner, kube: KubeEmulator) -> bool:
    """The pod's own output never shows the connection string."""
    uri = base64.b64decode(
        kube.api("GET", "/api/v1/namespaces/default/secrets/mongo")["data"]["uri"]
    ).decode()
    return uri not in jobs.logs()


def test_an_encrypted_backup_runs_as_a_job_with_only_its_key_mounted(
    kube: KubeEmulator,
    jobs: JobRunner,
    job_mode: OperatorThread,
    mongo_secret: str,
    source_db: str,
    sync_mongo: MongoClient[Any],
    tmp_path: Path,
) -> None:
    """The key Secret reaches the run's pod as a mounted file (never in the Job), and the
    restore in Job mode reads the backup with it."""
    key = base64.b64encode(os.urandom(32)).decode()
    secret(kube, "backup-key", {"key": key, "unrelated": "not for the pod"})
    encryption = {"keySecretRef": {"name": "backup-key", "key": "key"}}
    kube.apply(
        backup_object("sealed", str(tmp_path), [f"{source_db}.*"], runMode="Job", encryption=encryption)
    )
    backup = final(kube, "mongobackups", "sealed", jobs)["status"]
    assert backup["phase"] == "Completed", backup
    assert backup["encryption"]["keySource"] == "secret:backup-key"
    (job,) = [j for j in job_objects(kube) if j["metadata"]["name"] == "sealed-backup-1"]
    volumes = [v.get("secret") for v in job["spec"]["template"]["spec"]["volumes"]]
    assert {
        "secretName": "backup-key",
        "defaultMode": 0o440,
        "items": [{"key": "key", "path": "key"}],
    } in volumes
    assert key not in json.dumps(job)

    rename = [{"from": f"{source_db}.*", "to": f"{source_db}_s.*"}]
    kube.apply(restore_object("unsealed", "sealed", rename, runMode="Job", encryption=encryption))
    restore = final(kube, "mongorestores", "unsealed", jobs)["status"]
    assert restore["phase"] == "Completed", restore
    assert sync_mongo[f"{source_db}_s"]["a"].count_documents({}) == 200
