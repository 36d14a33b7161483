"""Starting the operator: `mongo-backup run` calls `run_operator`; tests and the demo await
`operate` in their own event loop with an explicit API server and shorter timings."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from ..api.runner import RunMode
from ..redact import install_log_redaction
from ..runner import RunnerSettings
from ..runner.jobspec import JobSettings
from . import backup, metrics, restore, schedule, settings  # noqa: F401 - importing registers the handlers
from .runtime import Runtime

#: Kopf's per-object logger: its handler turns warnings into Kubernetes Events
KOPF_OBJECTS_LOGGER = "kopf.objects"


def configure_logging(log_format: str) -> None:
    """One handler on the root logger: every line JSON when asked (log collectors parse them),
    every record masked (`install_log_redaction`)."""
    logging.getLogger().handlers.clear()
    kopf.configure(log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL)
    install_log_redaction(KOPF_OBJECTS_LOGGER)
    # the drivers' chatter and the health probe's access log are not the operator's business
    for name in ("pymongo", "kubernetes", "urllib3", "azure", "google", "botocore", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def operate(
    runtime: Runtime,
    *,
    namespaces: Sequence[str] | None = None,
    standalone: bool | None = None,
    priority: int | None = None,
    liveness_endpoint: str | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    metrics_port: int | None = None,
    metrics_address: str = "0.0.0.0",
) -> None:
    """Run the operator until `stop_flag` is set (or a signal arrives); with `metrics_port`
    (0: any free port, see `runtime.metrics_server`), serve GET /metrics there meanwhile."""
    # Also here, not only in configure_logging: tests and the demo log their own way, and
    # secrets stay out of every record and Event all the same.
    install_log_redaction(KOPF_OBJECTS_LOGGER)
    memo: Any = kopf.Memo(runtime=runtime)
    kopf_settings = kopf.OperatorSettings()
    if namespaces:
        # Watching named namespaces needs no listing of all namespaces (nor of CRDs): this
        # keeps a namespaced install's cluster-level permissions to Kopf's peering alone.
        kopf_settings.scanning.disabled = True
    if metrics_port is not None:
        runtime.metrics_server = runtime.metrics.serve(metrics_port, metrics_address)
    try:
        await kopf.operator(
            settings=kopf_settings,
            clusterwide=not namespaces,
            namespaces=list(namespaces or ()),
            standalone=standalone,
            priority=priority,
            liveness_endpoint=liveness_endpoint,
            ready_flag=ready_flag,
            stop_flag=stop_flag,
            memo=memo,
        )
    finally:
        if runtime.metrics_server is not None:
            runtime.metrics_server.stop()
            runtime.metrics_server = None


def run_operator(
    namespaces: list[str] | None,
    log_format: str,
    max_concurrent_runs: int,
    liveness_endpoint: str | None,
    metrics_port: int | None = None,
    run_mode: RunMode = "InProcess",
    runner_image: str | None = None,
    runner_image_pull_policy: str | None = None,
    runner_resources: Mapping[str, Any] | None = None,
) -> None:
    """`mongo-backup run`: reconcile MongoBackup/MongoRestore in `namespaces` (all when empty);
    serve /metrics on `metrics_port` (None: not served)."""
    configure_logging(log_format)
    runtime = Runtime(settings=RunnerSettings(max_concurrent_runs=max_concurrent_runs), run_mode=run_mode)
    runtime.jobs = JobSettings(
        image=runner_image or runtime.jobs.image,
        image_pull_policy=runner_image_pull_policy,
        default_resources=dict(runner_resources or {}),
    )
    asyncio.run(
        operate(
            runtime,
            namespaces=namespaces or None,
            liveness_endpoint=liveness_endpoint,
            metrics_port=metrics_port,
        )
    )
