"""A stand-in for the Job controller and the kubelet, for Job-mode tests against the Kubernetes
API emulator (which runs no controllers: a Job never gets a pod there).

It watches Jobs (by listing them often) and runs each new Job's container command as a local
process, as a kubelet would run its pod:
- the pod's environment, `secretKeyRef` values read from the emulator's Secrets;
- each mounted Secret written as files under a temporary root, and every environment value
  that names a mounted folder (or a parent of one) pointed at that root; other volumes (a
  filesystem storage path) are used in place;
- the emulator as its API server (a kubeconfig), `mongo-backup` from this virtualenv.
A Pod object records the run; when the process ends, the Pod's and the Job's status say how
(Succeeded/Complete; Failed with the exit code; exit 137 as OOMKilled; activeDeadlineSeconds
as DeadlineExceeded, after which the process is stopped).

Deletion: each Job gets the `foregroundDeletion` finalizer when its pod starts (the API
server adds it only when a deletion asks for it; the stand-in has no other way to learn of a
foreground deletion in time): a deleted Job's process gets SIGTERM, and the Job goes away once
the process has exited. Test support only: never part of the shipped package."""

from __future__ import annotations

import base64
import os
import random
import signal
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mongo_backup_demo.kube import KubeApiError, KubeEmulator

JOBS = "/apis/batch/v1/jobs"
FOREGROUND = "foregroundDeletion"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodRun:
    namespace: str
    job: str
    pod: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    deadline: float | None
    stopping: str | None = None  # "deleted" or "deadline"


@dataclass
class JobRunner:
    kube: KubeEmulator
    workdir: Path
    #: extra environment for the processes started from now on (failpoints, ...)
    extra_env: dict[str, str] = field(default_factory=dict)
    interval: float = 0.05
    #: every Job ever started, in order: (namespace, name)
    started: list[tuple[str, str]] = field(default_factory=list)
    runs: dict[tuple[str, str], PodRun] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def __enter__(self) -> JobRunner:
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for run in self.runs.values():
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait(10)

    def logs(self) -> str:
        """Every process's output, for a failing test's message."""
        return "\n".join(
            f"--- {run.pod}\n{run.log.read_text(errors='replace')}" for run in self.runs.values()
        )

    def kill(self, job: str, namespace: str = "default", sig: int = signal.SIGKILL) -> None:
        """Kill a Job's process (the OOM killer sends SIGKILL: exit 137 as a container sees it)."""
        self.runs[namespace, job].process.send_signal(sig)

    # ----- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # kept for the test to see; the loop goes on
                self.error = exc
            self._stop.wait(self.interval)

    def _tick(self) -> None:
        jobs = {
            (j["metadata"]["namespace"], j["metadata"]["name"]): j
            for j in self.kube.api("GET", JOBS)["items"]
        }
        for key, job in jobs.items():
            if key not in self.runs and not _finished(job) and not job["metadata"].get("deletionTimestamp"):
                self._start(job)
        for key, run in list(self.runs.items()):
            job = jobs.get(key)
            if run.process.poll() is None:
                if job is None or job["metadata"].get("deletionTimestamp"):
                    if run.stopping is None:
                        run.stopping = "deleted"
                        run.process.send_signal(signal.SIGTERM)
                elif run.deadline is not None and time.monotonic() > run.deadline and run.stopping is None:
                    run.stopping = "deadline"
                    run.process.send_signal(signal.SIGTERM)
                continue
            if job is not None and not _finished(job):
                self._ended(run, job)
            if job is not None and job["metadata"].get("deletionTimestamp"):
                self._release(run, job)

    # ----- a pod's life ---------------------------------------------------------------------

    def _start(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        namespace, name = meta["namespace"], meta["name"]
        template = spec["template"]
        container = template["spec"]["containers"][0]
        pod_name = f"{name}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=5))}"
        root = self.workdir / pod_name
        env = {
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(self.kube.kubeconfig),
            "HOSTNAME": pod_name,
            "PYTHONUNBUFFERED": "1",
        }
        mounts = self._mount(namespace, template["spec"], container, root)
        for item in container.get("env") or []:
            env[item["name"]] = self._env_value(namespace, item)
        for key, value in env.items():
            if any(m == value or m.startswith(value.rstrip("/") + "/") for m in mounts):
                env[key] = f"{root}{value}"
        env.update(self.extra_env)
        command = list(container["command"])
        command[0] = str(Path(sys.executable).parent / command[0])
        labels = {**(template.get("metadata") or {}).get("labels", {}), "batch.kubernetes.io/job-name": name}
        self.kube.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "metadata": {"name": pod_name, "namespace": namespace, "labels": labels},
                "spec": template["spec"],
            },
        )
        finalizers = [*meta.get("finalizers", []), FOREGROUND]
        self.kube.api(
            "PATCH",
            f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            {"metadata": {"finalizers": finalizers}},
            "application/merge-patch+json",
        )
        self._status(namespace, "pods", pod_name, {"phase": "Running", "startTime": _now()})
        self._status(namespace, "jobs", name, {"active": 1, "startTime": _now()})
        log = root / "output.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
        deadline = spec.get("activeDeadlineSeconds")
        self.runs[namespace, name] = PodRun(
            namespace,
            name,
            pod_name,
            process,
            log,
            time.monotonic(),
            None if deadline is None else time.monotonic() + deadline,
        )
        self.started.append((namespace, name))

    def _mount(self, namespace: str, pod: dict[str, Any], container: dict[str, Any], root: Path) -> list[str]:
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        paths = []
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            path = mount["mountPath"]
            if "secret" in volume:
                data = self._secret(namespace, volume["secret"]["secretName"])
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
                folder = root / path.lstrip("/")
                folder.mkdir(parents=True, exist_ok=True)
                for item in items:
                    (folder / item["path"]).write_text(data[item["key"]], encoding="utf-8")
                paths.append(path)
            elif "emptyDir" in volume:
                (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        return paths

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.kube.api("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def _env_value(self, namespace: str, item: dict[str, Any]) -> str:
        if "value" in item:
            return str(item["value"])
        ref = item["valueFrom"]["secretKeyRef"]
        return self._secret(namespace, ref["name"])[ref["key"]]

    def _ended(self, run: PodRun, job: dict[str, Any]) -> None:
        code = run.process.returncode
        code = 128 - code if code < 0 else code  # a signal, as a container runtime reports it
        reason = "Completed" if code == 0 else "OOMKilled" if code == 137 else "Error"
        terminated = {"exitCode": code, "reason": reason, "finishedAt": _now()}
        self._status(
            run.namespace,
            "pods",
            run.pod,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [{"name": "run", "state": {"terminated": terminated}}],
            },
        )
        if code == 0 and run.stopping is None:
            condition = {"type": "Complete", "status": "True", "reason": "Completed"}
            status: dict[str, Any] = {"active": 0, "succeeded": 1, "conditions": [condition]}
        else:
            why = "DeadlineExceeded" if run.stopping == "deadline" else "BackoffLimitExceeded"
            condition = {
                "type": "Failed",
                "status": "True",
                "reason": why,
                "message": f"pod exited with {code}",
            }
            status = {"active": 0, "failed": 1, "conditions": [condition]}
        self._status(run.namespace, "jobs", run.job, {**status, "completionTime": _now()})

    def _release(self, run: PodRun, job: dict[str, Any]) -> None:
        """A foreground deletion: the pod goes, then the finalizer, then (the emulator) the Job."""
        try:
            self.kube.api("DELETE", f"/api/v1/namespaces/{run.namespace}/pods/{run.pod}")
        except KubeApiError as exc:
            if exc.status != 404:
                raise
        finalizers = [f for f in job["metadata"].get("finalizers", []) if f != FOREGROUND]
        self.kube.api(
            "PATCH",
            f"/apis/batch/v1/namespaces/{run.namespace}/jobs/{run.job}",
            {"metadata": {"finalizers": finalizers or None}},
            "application/merge-patch+json",
        )

    def _status(self, namespace: str, plural: str, name: str, status: dict[str, Any]) -> None:
        group = "/api/v1" if plural == "pods" else "/apis/batch/v1"
        self.kube.api(
            "PATCH",
            f"{group}/namespaces/{namespace}/{plural}/{name}/status",
            {"status": status},
            "application/merge-patch+json",
        )


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )
