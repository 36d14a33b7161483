"""The run's side of Job mode: `mongo-backup run-one KIND NAMESPACE/NAME --attempt N` in the
pod of the Job the operator made. It makes one attempt with the runner's own code and writes
the object's status itself, through the same status writer as an in-process run.

What the pod may reach is what its Role grants (see runner.jobspec.runner_role): a `get` of
its own object (and of the MongoBackup a restore names), a `patch` of its own status, Events.
Its Secrets are files mounted by the Job (`SECRETS_DIR_ENV`): it never reads a Secret object.

SIGTERM (the operator deleted the Job after a cancel, the node drains): the attempt stops and
undoes what it wrote, as a cancelled in-process run does; after a user's cancel it writes
phase Cancelled, saying what it undid."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..api import (
    CANCEL_ANNOTATION,
    MONGO_BACKUP,
    MONGO_RESTORE,
    TERMINAL_PHASES,
    RunStatus,
    SpecError,
    parse_spec,
)
from ..engine.errors import EXIT_INTERRUPTED
from ..redact import redact
from ..runner import (
    RESTORED_FIELD,
    BackupJob,
    EventType,
    Failure,
    RestoreJob,
    RunnerSettings,
    SecretUnavailable,
)
from ..runner.attempt import EXIT_FAILED, attempt_once
from ..runner.cluster import secret_key
from ..runner.jobspec import SECRETS_DIR_ENV, SECRETS_ROOT
from ..runner.lifecycle import Job
from ..runner.status import StatusWriter
from .kube import KubeApi

log = logging.getLogger(__name__)

#: the User-Agent of the pod's API requests (the RBAC tests tell them from the operator's)
RUNNER_AGENT = "mongo-backup-runner"
KINDS = {"backup": MONGO_BACKUP, "restore": MONGO_RESTORE}


class PodLink:
    """The runner's `ObjectLink` inside a run's pod: its own object through the API, its
    Secrets from the files the Job mounts."""

    def __init__(self, kube: KubeApi, body: Mapping[str, Any], plural: str, secrets_dir: Path) -> None:
        self.kube = kube
        self.body = body
        self.plural = plural
        self.secrets_dir = secrets_dir
        meta = body["metadata"]
        self.namespace = str(meta["namespace"])
        self.name = str(meta["name"])
        self._events: set[asyncio.Task[bool]] = set()

    async def patch_status(self, patch: Mapping[str, Any]) -> None:
        await self.kube.patch_status(self.plural, self.namespace, self.name, patch)

    def post_event(self, type: EventType, reason: str, message: str) -> None:
        reason, message = redact(reason), redact(message)
        log.log(logging.WARNING if type == "Warning" else logging.INFO, "%s: %s", reason, message)
        task = asyncio.ensure_future(self.kube.create(self._event(type, reason, message[:1024])))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def flush(self) -> None:
        """Wait for the Events still being posted (an Event lost on exit is a story cut short)."""
        results = await asyncio.gather(*self._events, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("an Event could not be posted: %s", redact(str(result)))

    def _event(self, type: EventType, reason: str, message: str) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = self.body["metadata"]
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": self.body.get("apiVersion"),
                "kind": self.body.get("kind"),
                "name": self.name,
                "namespace": self.namespace,
                "uid": meta.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message,
            "source": {"component": RUNNER_AGENT, "host": socket.gethostname()},
            "reportingComponent": RUNNER_AGENT,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    async def read_secret(self, name: str) -> dict[str, str]:
        folder = self.secrets_dir / name
        if not folder.is_dir():
            raise SecretUnavailable(
                "SecretNotFound", f"Secret {self.namespace}/{name} is not mounted in the run's pod"
            )
        # a mounted Secret also holds the kubelet's `..data` links: the keys are the other names
        return {
            path.name: path.read_text(encoding="utf-8")
            for path in folder.iterdir()
            if not path.name.startswith("..") and path.is_file()
        }

    async def read_secret_key(self, name: str, key: str) -> str:
        return secret_key(await self.read_secret(name), self.namespace, name, key)

    async def read_backup(self, name: str) -> Mapping[str, Any] | None:
        return await self.kube.get_object(MONGO_BACKUP.plural, self.namespace, name)


async def run_one(
    word: str, namespace: str, name: str, attempt: int, retry_in: float | None, settings: RunnerSettings
) -> int:
    """One attempt of the object's run; the exit code tells the operator how it ended."""
    resource = KINDS[word]
    kube = KubeApi.from_environment(user_agent=RUNNER_AGENT)
    try:
        body = await kube.get_object(resource.plural, namespace, name)
        if body is None:
            log.error("%s %s/%s does not exist (any more)", resource.kind, namespace, name)
            return EXIT_FAILED
        link = PodLink(kube, body, resource.plural, Path(os.environ.get(SECRETS_DIR_ENV, SECRETS_ROOT)))
        try:
            return await _run(link, body, word, attempt, retry_in, settings)
        finally:
            await link.flush()
    finally:
        kube.close()


async def _run(
    link: PodLink,
    body: Mapping[str, Any],
    word: str,
    attempt: int,
    retry_in: float | None,
    settings: RunnerSettings,
) -> int:
    resource = KINDS[word]
    status = dict(body.get("status") or {})
    meta = body["metadata"]
    assert issubclass(resource.status_model, RunStatus)
    writer = StatusWriter(link, resource.status_model, word, status, meta.get("generation"))
    if status.get("phase") in TERMINAL_PHASES:
        log.info("%s %s/%s is already %s", resource.kind, link.namespace, link.name, status["phase"])
        return 0
    uid = str(meta.get("uid"))
    job: Job
    try:
        if word == "backup":
            job = BackupJob(link, parse_spec(resource.spec_model, body), settings, owner=uid)  # type: ignore[arg-type]
        else:
            restored = list(status.get(RESTORED_FIELD) or [])
            job = RestoreJob(link, uid, parse_spec(resource.spec_model, body), restored, settings)  # type: ignore[arg-type]
    except SpecError as exc:
        await writer.mark_failed(Failure("InvalidSpec", str(exc)), None)
        return EXIT_FAILED
    task = asyncio.ensure_future(attempt_once(job, writer, attempt, retry_in, settings))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError as exc:
        left = str(exc) if exc.args else ""
        await _after_sigterm(link, writer, left)
        return EXIT_INTERRUPTED
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _after_sigterm(link: PodLink, writer: StatusWriter, left: str) -> None:
    """Stopped by SIGTERM, after the engine undid what it wrote: a user's cancel is recorded
    (phase Cancelled); otherwise (a drained node) the operator decides about the attempt."""
    with contextlib.suppress(Exception):
        current = await link.kube.get_object(link.plural, link.namespace, link.name)
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(CANCEL_ANNOTATION) == "true" and writer.phase not in TERMINAL_PHASES:
            elapsed = None if writer.started is None else time.monotonic() - writer.started
            await writer.mark_cancelled(left or "it was stopped before it wrote anything", elapsed)
