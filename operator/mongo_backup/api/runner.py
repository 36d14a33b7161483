"""Where a MongoBackup's or MongoRestore's run executes: `runMode` (a Kubernetes Job of its
own, or inside the operator's process) and, for a Job, its pod's placement and resources.

Kubernetes' own types (tolerations, affinity) are kept loosely typed on purpose: their full
schemas would triple the CRDs, and the API server checks them when the Job is created."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from .common import NAME_MAX, KubeObject, SpecModel

RunMode = Literal["Job", "InProcess"]
RUN_MODES: tuple[RunMode, ...] = ("Job", "InProcess")


def _quantity_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


#: a resource quantity: `500m`, `1Gi`, or a plain number (as in a pod spec)
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_text),
    Field(pattern=r"^[0-9.]+([a-zA-Z]{0,2}|[eE][0-9]+)$", max_length=64),
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]


def runmode_field() -> Any:
    return Field(
        default=None,
        description=(
            "Job: the run is a Kubernetes Job of its own (survives operator restarts, limited by "
            "`runner.resources`); InProcess: the run streams inside the operator's pod. Unset: the "
            "operator's setting decides (`mongo-backup run --run-mode`, Job in the Helm chart)."
        ),
    )


class ResourceRequirements(SpecModel):
    requests: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="e.g. {cpu: 500m, memory: 512Mi}"
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="e.g. {memory: 2Gi}: above it the run is OOMKilled."
    )


class RunnerSpec(SpecModel):
    """The run's pod in Job mode (ignored in InProcess mode)."""

    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory of the run's container; the operator's defaults when unset."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Nodes the run's pod may run on, by label."
    )
    tolerations: list[KubeObject] = Field(
        default_factory=list, max_length=32, description="Tolerations of the run's pod (as in a pod spec)."
    )
    affinity: KubeObject | None = Field(
        default=None, description="Affinity of the run's pod (as in a pod spec)."
    )
    priority_class_name: str | None = Field(
        default=None, max_length=NAME_MAX, description="PriorityClass of the run's pod."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=NAME_MAX,
        description=(
            "ServiceAccount of the run's pod, e.g. one annotated for keyless cloud storage (Workload "
            "Identity, IRSA); the operator binds the run's own Role to it. A ServiceAccount of "
            "the run's own when unset."
        ),
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Timeout of one attempt: its Job is stopped after this long (reason DeadlineExceeded).",
    )
