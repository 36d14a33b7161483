"""What the handlers share for the life of one operator process: runner settings, the run
slots, the Kubernetes client, the metrics and the schedules' clock. Kopf hands it to every
handler as `memo.runtime`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..api.runner import RunMode
from ..metrics import Metrics, MetricsServer
from ..runner import RunnerSettings, Slots
from ..runner.jobspec import JobSettings
from .kube import KubeApi


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: RunnerSettings = field(default_factory=RunnerSettings)
    #: the API server to use instead of the in-cluster/kubeconfig one (the local emulator)
    server: str | None = None
    slots: Slots | None = None
    kube: KubeApi | None = None
    #: where runs execute when their object does not say (spec.runMode)
    run_mode: RunMode = "InProcess"
    #: how Job-mode runs' Jobs are made (image, default resources)
    jobs: JobSettings = field(default_factory=JobSettings)
    #: the runs hosted here, by object uid: set when a user asks to cancel one (annotation)
    cancels: dict[str, asyncio.Event] = field(default_factory=dict)
    #: served on /metrics by `operate` when it is given a metrics port
    metrics: Metrics = field(default_factory=Metrics)
    #: the /metrics endpoint while `operate` serves one (its `port` is the one bound)
    metrics_server: MetricsServer | None = None
    #: what time it is for schedules (tests pass a clock they move forward)
    clock: Callable[[], datetime] = utc_now

    def request_cancel(self, uid: str) -> None:
        event = self.cancels.get(uid)
        if event is not None:
            event.set()

    def start(self) -> None:
        if self.slots is None:
            self.slots = Slots(self.settings.max_concurrent_runs)
        if self.kube is None:
            self.kube = KubeApi.for_server(self.server) if self.server else KubeApi.from_environment()

    def stop(self) -> None:
        if self.kube is not None:
            self.kube.close()
            self.kube = None
