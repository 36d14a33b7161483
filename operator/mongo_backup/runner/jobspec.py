"""A run in Job mode: the `batch/v1` Job of one attempt, the run's own Role, and what a
finished Job says about its attempt. Plain dicts in, plain dicts out: no API calls here.

The Job runs `mongo-backup run-one KIND NAMESPACE/NAME --attempt N` from the operator's own
image. Secrets reach its pod only as Secret volumes (files under SECRETS_ROOT/<secret name>/):
never in its args or environment values, and the operator never copies a value."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api import GROUP_VERSION, MongoBackupSpec, MongoRestoreSpec, RunnerSpec, StorageSpec

#: where the run's pod finds each Secret it needs: SECRETS_ROOT/<secret name>/<key>
SECRETS_ROOT = "/var/run/secrets/mongobackup.io"
#: the pod's environment variable naming SECRETS_ROOT (a test stand-in points it elsewhere)
SECRETS_DIR_ENV = "MONGO_BACKUP_SECRETS_DIR"
#: the run-one command's exit code after an attempt that failed and will be retried (EX_TEMPFAIL)
EXIT_RETRY = 75

KIND_LABEL = "mongobackup.io/kind"
UID_LABEL = "mongobackup.io/uid"
ATTEMPT_LABEL = "mongobackup.io/attempt"
COMPONENT_LABELS = {
    "app.kubernetes.io/name": "mongo-backup-operator",
    "app.kubernetes.io/component": "runner",
}
#: the label the Job controller puts on the pods of a Job
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
NAME_MAX = 63
RUNNER_UID = 65532

RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": RUNNER_UID,
    "runAsGroup": RUNNER_UID,
    "fsGroup": RUNNER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class JobSettings:
    """How the operator makes runs' Jobs (`mongo-backup run --runner-image ...`)."""

    image: str = "mongo-backup-operator:latest"
    image_pull_policy: str | None = None
    #: the run's container resources when the object sets none
    default_resources: Mapping[str, Any] = field(default_factory=dict)
    #: the command that starts the CLI in the image
    command: tuple[str, ...] = ("mongo-backup",)


@dataclass(frozen=True)
class Owner:
    """The custom resource a run belongs to."""

    kind: str  # MongoBackup or MongoRestore
    plural: str
    namespace: str
    name: str
    uid: str

    @property
    def word(self) -> str:
        return self.kind.removeprefix("Mongo").lower()

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": GROUP_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def labels(self) -> dict[str, str]:
        return {**COMPONENT_LABELS, KIND_LABEL: self.kind, UID_LABEL: self.uid}


def short_name(owner: Owner, suffix: str) -> str:
    """`<name>-<suffix>` within 63 characters (a long name is cut and keeps a hash of its uid,
    so that two long names never share a Job)."""
    name = f"{owner.name}-{suffix}"
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(owner.uid.encode()).hexdigest()[:8]
    keep = NAME_MAX - len(suffix) - len(digest) - 2
    return f"{owner.name[:keep].rstrip('-.')}-{digest}-{suffix}"


def job_name(owner: Owner, attempt: int) -> str:
    return short_name(owner, f"{owner.word}-{attempt}")


def runner_account_name(owner: Owner) -> str:
    """The run's own ServiceAccount, Role and RoleBinding (one of each per object)."""
    return short_name(owner, f"{owner.word}-runner")


def storage_secrets(storage: StorageSpec) -> dict[str, set[str] | None]:
    ref = storage.credentials_secret_ref
    return {} if ref is None else {ref.name: None}


def key_secrets(spec: MongoBackupSpec | MongoRestoreSpec) -> dict[str, set[str] | None]:
    """The Secret keys of the run's encryption key and signing key, when it has them."""
    refs = [
        ref
        for ref in (
            spec.encryption.key_secret_ref if spec.encryption is not None else None,
            spec.signing.key_secret_ref if spec.signing is not None else None,
        )
        if ref is not None
    ]
    return merge_secrets(*({ref.name: {ref.key}} for ref in refs))


def merge_secrets(*parts: Mapping[str, set[str] | None]) -> dict[str, set[str] | None]:
    """Secret name -> the keys the pod needs (None: every key)."""
    merged: dict[str, set[str] | None] = {}
    for part in parts:
        for name, keys in part.items():
            known = merged.get(name, set())
            merged[name] = None if known is None or keys is None else known | keys
    return merged


def job_manifest(
    owner: Owner,
    attempt: int,
    runner: RunnerSpec,
    settings: JobSettings,
    secrets: Mapping[str, set[str] | None],
    *,
    storages: Iterable[StorageSpec] = (),
    service_account: str,
    run_args: Sequence[str] = (),
) -> dict[str, Any]:
    labels = {**owner.labels(), ATTEMPT_LABEL: str(attempt)}
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    for index, (secret, keys) in enumerate(sorted(secrets.items())):
        source: dict[str, Any] = {"secretName": secret, "defaultMode": 0o440}
        if keys is not None:
            source["items"] = [{"key": key, "path": key} for key in sorted(keys)]
        volumes.append({"name": f"secret-{index}", "secret": source})
        mounts.append({"name": f"secret-{index}", "mountPath": f"{SECRETS_ROOT}/{secret}", "readOnly": True})
    for index, storage in enumerate(storages):
        if storage.filesystem is not None and storage.filesystem.volume:
            volumes.append({"name": f"storage-{index}", **storage.filesystem.volume})
            mounts.append({"name": f"storage-{index}", "mountPath": storage.filesystem.path})
    resources = runner.resources.model_dump(exclude_defaults=True) if runner.resources else None
    container: dict[str, Any] = {
        "name": "run",
        "image": settings.image,
        "command": [
            *settings.command,
            "run-one",
            owner.word,
            f"{owner.namespace}/{owner.name}",
            "--attempt",
            str(attempt),
            *run_args,
        ],
        "env": [{"name": SECRETS_DIR_ENV, "value": SECRETS_ROOT}, {"name": "HOME", "value": "/tmp"}],
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": mounts,
    }
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    if resources or settings.default_resources:
        container["resources"] = resources or dict(settings.default_resources)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # after SIGTERM (a cancel), the run undoes what it wrote: a restore's rollback takes time
        "terminationGracePeriodSeconds": 120,
        "serviceAccountName": service_account,
        "automountServiceAccountToken": True,
        "securityContext": RESTRICTED_POD,
        "containers": [container],
        "volumes": volumes,
    }
    if runner.node_selector:
        pod["nodeSelector"] = dict(runner.node_selector)
    if runner.tolerations:
        pod["tolerations"] = list(runner.tolerations)
    if runner.affinity:
        pod["affinity"] = dict(runner.affinity)
    if runner.priority_class_name:
        pod["priorityClassName"] = runner.priority_class_name
    spec: dict[str, Any] = {
        # the operator decides about retries (a new Job per attempt), never the Job controller
        "backoffLimit": 0,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if runner.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = runner.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner, attempt),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner.reference()],
        },
        "spec": spec,
    }


def runner_role(owner: Owner, referenced_backups: Sequence[str] = ()) -> dict[str, Any]:
    """What the run's pod may do, and nothing else: read its own object (and the MongoBackup a
    restore names), patch that object's status, post Events. No Secret access: its Secrets are
    mounted."""
    name = runner_account_name(owner)
    rules: list[dict[str, Any]] = [
        {
            "apiGroups": ["mongobackup.io"],
            "resources": [owner.plural],
            "verbs": ["get"],
            "resourceNames": [owner.name],
        },
        {
            "apiGroups": ["mongobackup.io"],
            "resources": [f"{owner.plural}/status"],
            "verbs": ["patch"],
            "resourceNames": [owner.name],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    if referenced_backups:
        rules.insert(
            1,
            {
                "apiGroups": ["mongobackup.io"],
                "resources": ["mongobackups"],
                "verbs": ["get"],
                "resourceNames": sorted(referenced_backups),
            },
        )
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _owned_metadata(owner, name),
        "rules": rules,
    }


def runner_account(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _owned_metadata(owner, runner_account_name(owner)),
    }


def runner_binding(owner: Owner, service_account: str) -> dict[str, Any]:
    name = runner_account_name(owner)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _owned_metadata(owner, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": owner.namespace}],
    }


def _owned_metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": owner.labels(),
        "ownerReferences": [owner.reference()],
    }


# ----- what a Job says about its attempt ---------------------------------------------------------


@dataclass(frozen=True)
class JobEnd:
    """A finished Job: `succeeded`, or why its attempt failed (`reason`, `message` naming the
    pod), and the run-one command's exit code when known."""

    succeeded: bool
    reason: str = ""
    message: str = ""
    exit_code: int | None = None


def attempt_of(job: Mapping[str, Any]) -> int:
    try:
        return int(((job.get("metadata") or {}).get("labels") or {}).get(ATTEMPT_LABEL, "0"))
    except ValueError:
        return 0


def job_end(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobEnd | None:
    """None while the Job runs. A failed one is explained by its pod: OOMKilled (exit 137 or
    the kubelet's reason), PodEvicted, DeadlineExceeded (activeDeadlineSeconds), else JobFailed."""
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    name = (job.get("metadata") or {}).get("name", "?")
    if "Complete" in conditions or (status.get("succeeded") or 0) > 0:
        return JobEnd(True)
    failed = conditions.get("Failed")
    if failed is None and not (status.get("failed") or 0):
        return None
    pod = _last_pod(pods)
    pod_name = (pod.get("metadata") or {}).get("name") if pod else None
    where = f"pod {pod_name}" if pod_name else f"Job {name} (its pod is gone)"
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        return JobEnd(
            False, "DeadlineExceeded", f"{where} ran longer than activeDeadlineSeconds and was stopped"
        )
    if pod is not None:
        pod_status = pod.get("status") or {}
        # evicted by its node (pressure), or disrupted: the eviction API, preemption, a lost node
        disrupted = next(
            (
                c
                for c in pod_status.get("conditions") or []
                if c.get("type") == "DisruptionTarget" and c.get("status") == "True"
            ),
            None,
        )
        if pod_status.get("reason") == "Evicted" or disrupted is not None:
            why = pod_status.get("message") or (disrupted or {}).get("message") or "evicted by its node"
            return JobEnd(False, "PodEvicted", f"{where} was evicted: {why}")
        terminated = _terminated(pod_status)
        code = terminated.get("exitCode")
        if terminated.get("reason") == "OOMKilled" or code == 137:
            return JobEnd(
                False,
                "OOMKilled",
                f"{where} ran out of memory (OOMKilled, exit code 137): raise its memory limit",
                137,
            )
        if code is not None:
            return JobEnd(False, "JobFailed", f"{where} failed with exit code {code}", int(code))
    why = (failed or {}).get("message") or (failed or {}).get("reason") or "no reason given"
    return JobEnd(False, "JobFailed", f"{where} failed: {why}")


def _last_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", default=None)


def _terminated(pod_status: Mapping[str, Any]) -> Mapping[str, Any]:
    for container in pod_status.get("containerStatuses") or []:
        state = (container.get("state") or {}).get("terminated") or (container.get("lastState") or {}).get(
            "terminated"
        )
        if state:
            return dict(state)
    return {}
