"""Prometheus metrics of the operator: one `Metrics` object per operator process, with its own
CollectorRegistry (tests make their own and see only what they did).

Series of one run (labels namespace, name, kind, schedule) say what the object's status says
(last success/failure time, duration, stored bytes, documents, runs by result, in progress);
they are removed when the object is deleted, so the names of scheduled backups (a new one per
run) do not pile up. Alerts should use the per-schedule series (labels namespace, schedule),
which outlive the backups: last success/failure time, consecutive failures, the schedule's
interval, drills and retention deletions.

Nothing of ours is imported here: the runner's status writer and the handlers call in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, start_http_server
from prometheus_client.exposition import generate_latest

__all__ = [
    "PREFIX",
    "SCHEDULE_LABEL",
    "Metrics",
    "MetricsServer",
    "MetricsUnavailable",
    "RunKind",
    "RunSeries",
]

#: the label a MongoBackupSchedule puts on the MongoBackups it creates (empty/absent: hand-made)
SCHEDULE_LABEL = "mongobackup.io/schedule"
PREFIX = "mongobackup"

RunKind = Literal["backup", "restore"]
Result = Literal["succeeded", "failed"]
RESULTS: tuple[Result, ...] = ("succeeded", "failed")

RUN_LABELS = ("namespace", "name", "kind", "schedule")
SCHEDULE_LABELS = ("namespace", "schedule")


class MetricsUnavailable(Exception):
    """The metrics port cannot be listened on (in use, not permitted)."""


@dataclass
class _ScheduleRuns:
    """What the per-schedule series are computed from; fed by live runs and by the statuses
    read at startup in any order, so each input is idempotent."""

    last_success: float | None = None
    last_failure: float | None = None
    #: failed backups newer than the last success: name -> completion time
    failures_since: dict[str, float] = field(default_factory=dict)

    # A failure at the very time of the last success counts: statuses give whole seconds, and
    # an alert that may be one too early beats one that never comes.

    def succeeded(self, at: float) -> None:
        if self.last_success is None or at > self.last_success:
            self.last_success = at
        self.failures_since = {n: t for n, t in self.failures_since.items() if t >= self.last_success}

    def failed(self, name: str, at: float) -> None:
        if self.last_failure is None or at > self.last_failure:
            self.last_failure = at
        if self.last_success is None or at >= self.last_success:
            self.failures_since[name] = at


class Metrics:
    """Every metric of the operator, in its own registry."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # No `<counter>_created` series: one more series per object and result, and nothing
        # our alerts or dashboard read (a process-wide switch of the library, which only this
        # package uses in the operator's process).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock = clock
        self._lock = threading.Lock()
        #: (kind, namespace, name) -> the schedule label its series carry
        self._runs: dict[tuple[str, str, str], str] = {}
        self._schedules: dict[tuple[str, str], _ScheduleRuns] = {}
        #: (namespace, schedule) -> the backup named by the drill info series
        self._drilled: dict[tuple[str, str], str] = {}
        r = self.registry

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        self.last_success = gauge(
            "last_success_timestamp_seconds", "When the object's run last completed (Unix time).", RUN_LABELS
        )
        self.last_failure = gauge(
            "last_failure_timestamp_seconds", "When the object's run last failed (Unix time).", RUN_LABELS
        )
        self.duration = gauge("duration_seconds", "Duration of the object's last finished run.", RUN_LABELS)
        self.stored_bytes = gauge(
            "stored_bytes", "Bytes in storage of the backup (or the backup restored).", RUN_LABELS
        )
        self.documents = gauge("documents", "Documents backed up or restored.", RUN_LABELS)
        self.runs = counter(
            "runs", "Finished runs by result (succeeded, failed, cancelled).", (*RUN_LABELS, "result")
        )
        self.in_progress = gauge("runs_in_progress", "1 while an attempt of the object runs.", RUN_LABELS)

        self.schedule_last_success = gauge(
            "schedule_last_success_timestamp_seconds",
            "When the schedule's newest completed backup completed (Unix time).",
            SCHEDULE_LABELS,
        )
        self.schedule_last_failure = gauge(
            "schedule_last_failure_timestamp_seconds",
            "When the schedule's newest failed backup failed (Unix time).",
            SCHEDULE_LABELS,
        )
        self.schedule_consecutive_failures = gauge(
            "schedule_consecutive_failures",
            "Failed backups of the schedule since its last completed one.",
            SCHEDULE_LABELS,
        )
        self.schedule_interval = gauge(
            "schedule_interval_seconds", "Time between two runs of the schedule.", SCHEDULE_LABELS
        )
        self.schedule_next_run = gauge(
            "schedule_next_run_timestamp_seconds", "When the schedule runs next (Unix time).", SCHEDULE_LABELS
        )
        self.schedule_suspended = gauge(
            "schedule_suspended", "1 when the schedule is suspended.", SCHEDULE_LABELS
        )
        self.retention_deletions = counter(
            "retention_deletions", "MongoBackups deleted by the schedule's retention.", SCHEDULE_LABELS
        )
        self.drills = counter(
            "drills", "Restore drills by result (succeeded, failed).", (*SCHEDULE_LABELS, "result")
        )
        self.drill_last_succeeded = gauge(
            "drill_last_succeeded",
            "1 when the schedule's last drill passed, 0 when it failed.",
            SCHEDULE_LABELS,
        )
        self.drill_last_timestamp = gauge(
            "drill_last_timestamp_seconds",
            "When the schedule's last drill ended (Unix time).",
            SCHEDULE_LABELS,
        )
        self.drill_duration = gauge(
            "drill_duration_seconds", "Duration of the schedule's last drill.", SCHEDULE_LABELS
        )
        self.drill_backup = gauge(
            "drill_last_backup_info",
            "The backup the schedule's last drill restored (value 1).",
            (*SCHEDULE_LABELS, "backup"),
        )

    # One run.

    def run(self, kind: RunKind, namespace: str, name: str, schedule: str | None) -> RunSeries:
        """The series of one MongoBackup/MongoRestore (`schedule`: its schedule label)."""
        return RunSeries(self, kind, namespace, name, schedule or "")

    def knows_run(self, kind: RunKind, namespace: str, name: str) -> bool:
        """Whether the object has series (recorded by a run, or read from its status)."""
        with self._lock:
            return (kind, namespace, name) in self._runs

    def forget_run(self, kind: RunKind, namespace: str, name: str) -> None:
        """The object is deleted: its own series go (the schedule's stay)."""
        with self._lock:
            schedule = self._runs.pop((kind, namespace, name), None)
            if schedule is None:
                return
            labels = (namespace, name, kind, schedule)
            for metric in (
                self.last_success,
                self.last_failure,
                self.duration,
                self.stored_bytes,
                self.documents,
                self.in_progress,
            ):
                _remove(metric, labels)
            for result in (*RESULTS, "cancelled"):
                _remove(self.runs, (*labels, result))

    # Schedules (called by the MongoBackupSchedule handlers).

    def observe_schedule(
        self,
        namespace: str,
        schedule: str,
        interval_seconds: float,
        next_run_timestamp: float | None,
        suspended: bool,
    ) -> None:
        """The schedule as it is now: its interval (what 'overdue' is measured in), next run
        (None: none planned) and whether it is suspended."""
        labels = (namespace, schedule)
        self.schedule_interval.labels(*labels).set(interval_seconds)
        if next_run_timestamp is None:
            _remove(self.schedule_next_run, labels)
        else:
            self.schedule_next_run.labels(*labels).set(next_run_timestamp)
        self.schedule_suspended.labels(*labels).set(1 if suspended else 0)

    def record_retention_deletions(self, namespace: str, schedule: str, count: int) -> None:
        """The schedule's retention deleted `count` MongoBackups (0 still creates the series)."""
        if count < 0:
            raise ValueError(f"retention deletions of {namespace}/{schedule}: count {count} is negative")
        self.retention_deletions.labels(namespace, schedule).inc(count)

    def record_drill(
        self, namespace: str, schedule: str, backup: str, succeeded: bool, duration_seconds: float
    ) -> None:
        """A restore drill of `backup` ended."""
        labels = (namespace, schedule)
        self.drills.labels(*labels, "succeeded" if succeeded else "failed").inc()
        self.drill_last_succeeded.labels(*labels).set(1 if succeeded else 0)
        self.drill_last_timestamp.labels(*labels).set(self.clock())
        self.drill_duration.labels(*labels).set(duration_seconds)
        with self._lock:
            previous = self._drilled.get(labels)
            if previous is not None and previous != backup:
                _remove(self.drill_backup, (*labels, previous))
            self._drilled[labels] = backup
        self.drill_backup.labels(*labels, backup).set(1)

    def forget_schedule(self, namespace: str, schedule: str) -> None:
        """The schedule is deleted: every series of it goes."""
        labels = (namespace, schedule)
        with self._lock:
            self._schedules.pop(labels, None)
            backup = self._drilled.pop(labels, None)
        if backup is not None:
            _remove(self.drill_backup, (*labels, backup))
        for metric in (
            self.schedule_last_success,
            self.schedule_last_failure,
            self.schedule_consecutive_failures,
            self.schedule_interval,
            self.schedule_next_run,
            self.schedule_suspended,
            self.retention_deletions,
            self.drill_last_succeeded,
            self.drill_last_timestamp,
            self.drill_duration,
        ):
            _remove(metric, labels)
        for result in RESULTS:
            _remove(self.drills, (*labels, result))

    # Exposition.

    def scrape(self) -> bytes:
        """The text format, as GET /metrics serves it."""
        return generate_latest(self.registry)

    def serve(self, port: int, address: str = "0.0.0.0") -> MetricsServer:
        """Serve GET /metrics on `port` (0: a free one) from a thread of its own: scrapes
        never wait for (nor hold up) the operator's event loop."""
        try:
            server, thread = start_http_server(port, address, registry=self.registry)
        except OSError as exc:
            raise MetricsUnavailable(
                f"cannot serve metrics on {address}:{port}: {exc.strerror or exc}"
            ) from None
        return MetricsServer(server, thread)

    # Inside (RunSeries calls these).

    def _track(self, kind: str, namespace: str, name: str, schedule: str) -> tuple[str, str, str, str]:
        with self._lock:
            self._runs[(kind, namespace, name)] = schedule
        return (namespace, name, kind, schedule)

    def _schedule_result(self, namespace: str, schedule: str, name: str, succeeded: bool, at: float) -> None:
        labels = (namespace, schedule)
        with self._lock:
            runs = self._schedules.setdefault(labels, _ScheduleRuns())
            if succeeded:
                runs.succeeded(at)
            else:
                runs.failed(name, at)
            last_success, last_failure = runs.last_success, runs.last_failure
            consecutive = len(runs.failures_since)
        if last_success is not None:
            self.schedule_last_success.labels(*labels).set(last_success)
        if last_failure is not None:
            self.schedule_last_failure.labels(*labels).set(last_failure)
        self.schedule_consecutive_failures.labels(*labels).set(consecutive)


class RunSeries:
    """The series of one object, as its run goes (made by `Metrics.run`)."""

    def __init__(self, metrics: Metrics, kind: RunKind, namespace: str, name: str, schedule: str) -> None:
        self.metrics = metrics
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.schedule = schedule
        #: a final phase was recorded through this series (by whoever wrote or read it)
        self.finished = False

    def started(self) -> None:
        """An attempt started."""
        self.metrics.in_progress.labels(*self._labels()).set(1)

    def stopped(self) -> None:
        """No attempt runs (before a retry, or the run was stopped with the status left as
        it was: the next operator takes it up). Creates no series of an object forgotten."""
        m = self.metrics
        if m.knows_run(self.kind, self.namespace, self.name):
            m.in_progress.labels(self.namespace, self.name, self.kind, self.schedule).set(0)

    def succeeded(
        self,
        duration_seconds: float | None,
        stored_bytes: int | None,
        documents: int | None,
        at: float | None = None,
        *,
        count: bool = True,
    ) -> None:
        """The run completed `at` (default now). `count=False` restores the gauges from a
        status read at startup without counting the run again."""
        self._finished("succeeded", at, duration_seconds, count)
        labels = self._labels()
        if stored_bytes is not None:
            self.metrics.stored_bytes.labels(*labels).set(stored_bytes)
        if documents is not None:
            self.metrics.documents.labels(*labels).set(documents)

    def failed(self, duration_seconds: float | None, at: float | None = None, *, count: bool = True) -> None:
        """The run failed `at` (default now); see `succeeded` for `count`."""
        self._finished("failed", at, duration_seconds, count)

    def cancelled(self, duration_seconds: float | None) -> None:
        """A user cancelled the run: counted by its result, neither a success nor a failure
        (of the object, nor of its schedule)."""
        self.finished = True
        labels = self._labels()
        self.metrics.in_progress.labels(*labels).set(0)
        if duration_seconds is not None:
            self.metrics.duration.labels(*labels).set(duration_seconds)
        self.metrics.runs.labels(*labels, "cancelled").inc()

    def _finished(self, result: Result, at: float | None, duration: float | None, count: bool) -> None:
        self.finished = True
        m = self.metrics
        labels = self._labels()
        when = m.clock() if at is None else at
        m.in_progress.labels(*labels).set(0)
        (m.last_success if result == "succeeded" else m.last_failure).labels(*labels).set(when)
        if duration is not None:
            m.duration.labels(*labels).set(duration)
        runs = m.runs.labels(*labels, result)
        if count:
            runs.inc()
        if self.kind == "backup" and self.schedule:
            m._schedule_result(self.namespace, self.schedule, self.name, result == "succeeded", when)

    def _labels(self) -> tuple[str, str, str, str]:
        return self.metrics._track(self.kind, self.namespace, self.name, self.schedule)


@dataclass
class MetricsServer:
    """The running /metrics endpoint."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _remove(metric: Gauge | Counter, labels: tuple[str, ...]) -> None:
    metric.remove(*labels)  # a series never set is no error
