"""Hosting a run as Kubernetes Jobs (runMode Job): one Job per attempt, from the operator's
own image, running `mongo-backup run-one` (handlers/pod.py), which writes the object's status
itself. The operator waits for the inputs as in-process runs do (phase Pending), makes the
run's ServiceAccount, Role and RoleBinding (owned by the object), creates the attempt's Job
(owned by the object: deleting the object deletes it), and reads how it ended:

- the pod wrote a final phase (Completed, Failed): nothing more to do;
- the pod failed an attempt that may be retried (exit EXIT_RETRY, phase Pending): the next
  Job comes after the delay it wrote;
- the pod died (OOMKilled, evicted, activeDeadlineSeconds, any other exit): the attempt
  failed with that reason and a message naming the pod, retried under the retry delays.

An operator that restarts adopts the object's newest Job (found by the object's uid label)
instead of creating another. A user's cancel deletes the running Job (foreground: its pod is
stopped first and undoes what it wrote), then settles what is left as an in-process cancel
does. An operator that merely exits leaves the Job running: the next one adopts it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes

from ..api import TERMINAL_PHASES, MongoBackupSpec, MongoRestoreSpec, RunStatus
from ..metrics import RunSeries
from ..runner import BackupJob, Failure, RestoreJob, SecretUnavailable, Waiting
from ..runner.jobspec import (
    EXIT_RETRY,
    JOB_NAME_LABEL,
    UID_LABEL,
    JobEnd,
    JobSettings,
    Owner,
    attempt_of,
    job_end,
    job_manifest,
    key_secrets,
    merge_secrets,
    runner_account,
    runner_account_name,
    runner_binding,
    runner_role,
    storage_secrets,
)
from ..runner.lifecycle import Job
from ..runner.status import StatusWriter
from .kube import KubeApi
from .link import ResourceLink
from .recording import record_final
from .runtime import Runtime

#: how long a cancel waits for the Job's pod to stop and clean up before settling anyway
CANCEL_WAIT = 300.0


class JobRun:
    def __init__(
        self,
        link: ResourceLink,
        owner: Owner,
        spec: MongoBackupSpec | MongoRestoreSpec,
        job: Job,
        status_model: type[RunStatus],
        runtime: Runtime,
        logger: Any,
    ) -> None:
        assert runtime.kube is not None
        self.kube: KubeApi = runtime.kube
        self.link = link
        self.owner = owner
        self.spec = spec
        self.job = job
        self.status_model = status_model
        self.settings = runtime.settings
        self.jobs: JobSettings = runtime.jobs
        self.logger = logger
        #: the object's metrics series (the pod's own writes reach the metrics through here)
        self.series: RunSeries | None = None

    async def run(
        self,
        writer: StatusWriter,
        status: Mapping[str, Any],
        stopped: kopf.DaemonStopped,
        cancel: asyncio.Event,
    ) -> StatusWriter | None:
        """Run to a final phase. On a cancel (or the object's deletion), the Job is stopped and
        the writer of the current status is returned: the caller settles and records it."""
        self.series = writer.series
        attempts = int(status.get("attempts") or 0)
        current = await self._newest_job()
        if current is not None:
            attempts = max(attempts, attempt_of(current))
            self.logger.info("adopting Job %s of attempt %d", current["metadata"]["name"], attempts)
        while True:
            if current is None:
                if cancel.is_set() or not await self._wait_for_inputs(writer, stopped, cancel):
                    return await self._stop(None, stopped, cancel)
                attempts += 1
                current = await self._create_job(writer, attempts)
            name = current["metadata"]["name"]
            end = await self._wait_for_end(name, stopped, cancel)
            if end is None:
                return await self._stop(name, stopped, cancel)
            writer, delay = await self._settle(end, attempt_of(current) or attempts, name)
            if delay is None:
                return None
            if await _wait_any(stopped, cancel, delay):
                return await self._stop(None, stopped, cancel)
            current = None

    # ----- steps ----------------------------------------------------------------------------

    async def _wait_for_inputs(
        self, writer: StatusWriter, stopped: kopf.DaemonStopped, cancel: asyncio.Event
    ) -> bool:
        """As an in-process run: phase Pending while a Secret or the backup is missing."""
        waiting_for: str | None = None
        while True:
            try:
                await self.job.prepare()
                return True
            except (SecretUnavailable, Waiting) as exc:
                if exc.reason != waiting_for:
                    await writer.mark_pending(exc.reason, exc.message)
                    waiting_for = exc.reason
            except Failure as failure:
                await writer.mark_failed(failure, None)
                raise _Over() from None
            if await _wait_any(stopped, cancel, self.settings.wait_interval):
                return False

    async def _create_job(self, writer: StatusWriter, attempt: int) -> dict[str, Any]:
        try:
            return await self._create_objects(writer, attempt)
        except kubernetes.client.ApiException as exc:
            if exc.status in (400, 403, 422):  # invalid (the runner's tolerations...) or forbidden
                failure = Failure("JobRejected", f"the API server refused the run's Job: {_api_message(exc)}")
                await writer.mark_failed(failure, None)
                raise _Over() from None
            raise

    async def _create_objects(self, writer: StatusWriter, attempt: int) -> dict[str, Any]:
        account = self.spec.runner.service_account_name
        if account is None:
            account = runner_account_name(self.owner)
            await self.kube.create(runner_account(self.owner))
        backups = (
            [self.spec.backup_ref.name]
            if isinstance(self.spec, MongoRestoreSpec) and self.spec.backup_ref
            else []
        )
        await self.kube.create(runner_role(self.owner, backups))
        await self.kube.create(runner_binding(self.owner, account))
        uri = self.spec.mongodb.uri_secret_ref
        storage = self._storage()
        delays = self.settings.retry_delays
        run_args = [
            "--progress-interval",
            f"{self.settings.progress_interval:g}",
            "--mongo-timeout-ms",
            str(self.settings.mongo_timeout_ms),
        ]
        if attempt <= len(delays):
            run_args += ["--retry-in", f"{delays[attempt - 1]:g}"]
        manifest = job_manifest(
            self.owner,
            attempt,
            self.spec.runner,
            self.jobs,
            merge_secrets({uri.name: {uri.key}}, storage_secrets(storage), key_secrets(self.spec)),
            storages=[storage],
            service_account=account,
            run_args=run_args,
        )
        name = manifest["metadata"]["name"]
        await writer.mark_attempt(attempt)  # before the Job: its pod writes after this, never before
        if not await self.kube.create(manifest):
            self.logger.info("Job %s exists already: adopting it", name)
        else:
            self.link.post_event("Normal", "JobCreated", f"attempt {attempt} runs as Job {name}")
        return manifest

    def _storage(self) -> Any:
        if isinstance(self.job, RestoreJob):
            assert self.job.storage is not None
            return self.job.storage
        assert isinstance(self.job, BackupJob)
        return self.job.spec.storage

    async def _wait_for_end(
        self, name: str, stopped: kopf.DaemonStopped, cancel: asyncio.Event
    ) -> JobEnd | None:
        """How the Job ended; None when stopped or cancelled first. A Job that vanished (deleted
        by hand) ended in failure."""
        while True:
            body = await self.kube.read_job(self.owner.namespace, name)
            if body is None:
                return JobEnd(False, "JobFailed", f"Job {name} was deleted before it ended")
            end = job_end(body, [])
            if end is not None and not end.succeeded:  # its pod says why (read only then)
                pods = await self.kube.list_pods(self.owner.namespace, f"{JOB_NAME_LABEL}={name}")
                end = job_end(body, pods)
            if end is not None:
                return end
            if await _wait_any(stopped, cancel, self.settings.wait_interval):
                return None

    async def _settle(self, end: JobEnd, attempt: int, name: str) -> tuple[StatusWriter, float | None]:
        """The writer of the object's current status, and the delay before the next attempt
        (None: the run is over)."""
        body = await self.kube.get_object(self.owner.plural, self.owner.namespace, self.owner.name) or {}
        status = dict(body.get("status") or {})
        writer = StatusWriter(
            self.link,
            self.status_model,
            self.owner.word,
            status,
            (body.get("metadata") or {}).get("generation"),
            self.series,
        )
        delays = self.settings.retry_delays
        delay = delays[attempt - 1] if attempt <= len(delays) else None
        if status.get("phase") in TERMINAL_PHASES:
            if self.series is not None and not self.series.finished:  # the pod wrote it
                record_final(self.series, status, count=True)
            return writer, None
        if end.exit_code == EXIT_RETRY and delay is not None:
            return writer, delay  # the pod wrote why and when (mark_retrying)
        failure = Failure(
            end.reason or "JobFailed", end.message or f"Job {name} ended without a result", True
        )
        if end.succeeded:
            failure = Failure(
                "JobFailed", f"Job {name} succeeded without writing the {self.owner.word}'s result", True
            )
        if delay is None:
            await writer.mark_failed(failure, None)
            return writer, None
        await writer.mark_retrying(failure, delay)
        return writer, delay

    async def _stop(
        self, name: str | None, stopped: kopf.DaemonStopped, cancel: asyncio.Event
    ) -> StatusWriter | None:
        """Stopped by Kopf or cancelled: after a cancel or the object's deletion, the Job is
        deleted and waited for; an operator that exits leaves it running (to be adopted)."""
        reason = stopped.reason if stopped.is_set() else None
        deleted = reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in reason
        if not (cancel.is_set() or deleted):
            return None
        if name is not None:
            await self.kube.delete_job(self.owner.namespace, name)
            deadline = time.monotonic() + CANCEL_WAIT
            while (  # noqa: ASYNC110 - polling the API server: there is no event to wait on
                time.monotonic() < deadline
                and await self.kube.read_job(self.owner.namespace, name) is not None
            ):
                await asyncio.sleep(self.settings.wait_interval)
        body = await self.kube.get_object(self.owner.plural, self.owner.namespace, self.owner.name) or {}
        return StatusWriter(
            self.link,
            self.status_model,
            self.owner.word,
            dict(body.get("status") or {}),
            (body.get("metadata") or {}).get("generation"),
        )

    async def _newest_job(self) -> dict[str, Any] | None:
        jobs = await self.kube.list_jobs(self.owner.namespace, f"{UID_LABEL}={self.owner.uid}")
        jobs = [
            j for j in jobs if (j.get("metadata") or {}).get("labels", {}).get(UID_LABEL) == self.owner.uid
        ]
        return max(jobs, key=attempt_of, default=None)


async def run_mode_of(spec: Any, status: Mapping[str, Any], owner: Owner, runtime: Runtime) -> str:
    """The object's runMode, else the operator's; but a run whose Job still runs (the
    operator's setting changed while it ran) stays a Job: two live attempts must never be."""
    mode = getattr(spec, "run_mode", None)
    if mode is not None:
        return str(mode)
    if runtime.run_mode != "Job" and status.get("phase") == "Running" and runtime.kube is not None:
        jobs = await runtime.kube.list_jobs(owner.namespace, f"{UID_LABEL}={owner.uid}")
        if any(job_end(job, []) is None for job in jobs):
            return "Job"
    return runtime.run_mode


def _api_message(exc: Any) -> str:
    """The API server's one-line reason (its Status message), not the whole HTTP exchange."""
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


class _Over(Exception):
    """The run ended (Failed) while waiting for its inputs."""


async def run_as_jobs(
    run: JobRun,
    writer: StatusWriter,
    status: Mapping[str, Any],
    stopped: kopf.DaemonStopped,
    cancel: asyncio.Event,
) -> StatusWriter | None:
    try:
        return await run.run(writer, status, stopped, cancel)
    except _Over:
        return None


async def _wait_any(stopped: kopf.DaemonStopped, cancel: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`; True when stopped or cancelled first."""
    if stopped.is_set() or cancel.is_set():
        return True
    waits = {asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(cancel.wait())}
    try:
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    return bool(done)
