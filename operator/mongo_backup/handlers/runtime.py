"""What the handlers share for the life of one operator process: runner settings, the run
slots, the Kubernetes client and the schedules' clock. Kopf hands it to every handler as `memo.runtime`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..runner import RunnerSettings, Slots
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
    #: what time it is for schedules (tests pass a clock they move forward)
    clock: Callable[[], datetime] = utc_now

    def start(self) -> None:
        if self.slots is None:
            self.slots = Slots(self.settings.max_concurrent_runs)
        if self.kube is None:
            self.kube = KubeApi.for_server(self.server) if self.server else KubeApi.from_environment()

    def stop(self) -> None:
        if self.kube is not None:
            self.kube.close()
            self.kube = None
