"""The operator in a thread of its own, with its own event loop: how the tests and the demo
run it next to the Kubernetes API emulator (which has its own thread and loop too)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from mongo_backup.handlers.main import operate
from mongo_backup.handlers.runtime import Runtime, utc_now
from mongo_backup.runner import RunnerSettings


class OperatorThread:
    def __init__(
        self,
        server: str,
        settings: RunnerSettings,
        *,
        standalone: bool = True,
        priority: int | None = None,
        namespaces: Sequence[str] | None = None,
        metrics_port: int | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.runtime = Runtime(settings=settings, server=server, clock=clock)
        #: 0 serves /metrics on a free port of 127.0.0.1 (see `metrics_url`); None: not served
        self.metrics_port = metrics_port
        self.standalone = standalone
        self.priority = priority
        self.namespaces = list(namespaces) if namespaces else None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 30) -> OperatorThread:
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"the operator did not start: {self.error!r}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(
                operate(
                    self.runtime,
                    namespaces=self.namespaces,
                    standalone=self.standalone,
                    priority=self.priority,
                    ready_flag=self._ready,
                    stop_flag=self._stop,
                    metrics_port=self.metrics_port,
                    metrics_address="127.0.0.1",
                )
            )
        except BaseException as exc:  # reported by start(); a thread has no one else to tell
            self.error = exc
            self._ready.set()

    @property
    def metrics_url(self) -> str:
        """Where the running operator serves its metrics (started with a `metrics_port`)."""
        server = self.runtime.metrics_server
        if server is None:
            raise RuntimeError("the operator serves no metrics: start it with metrics_port=0")
        return f"http://127.0.0.1:{server.port}/metrics"

    def stop(self, timeout: float = 60) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
