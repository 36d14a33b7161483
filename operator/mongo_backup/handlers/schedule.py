"""MongoBackupSchedule: a daemon per schedule looks at the clock (`Runtime.clock`) and at the
schedule's MongoBackups every `schedule_interval` seconds at most; it creates the backup that
is due (runner/schedule.py decides which, as a CronJob does), applies the concurrency policy,
applies retention after every finished backup (runner/pruning.py), and writes the status.

The schedule's backups and the restores that read them come from Kopf indexes, fed by the
watches the operator has anyway: no extra list request per evaluation. The schedule never
runs a backup itself: a MongoBackup it creates is run by the MongoBackup handlers, with the
same status and events as one made by hand."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
import kubernetes

from ..api import (
    API_GROUP,
    API_VERSION,
    GROUP_VERSION,
    MONGO_BACKUP,
    MONGO_BACKUP_SCHEDULE,
    MONGO_RESTORE,
    SCHEDULE_LABEL,
    BackupReference,
    DrillReport,
    MongoBackupScheduleSpec,
    MongoBackupScheduleStatus,
    RetentionReport,
    RetentionSpec,
    SpecError,
    parse_spec,
    parse_status,
    status_patch,
)
from ..api.parse import plain
from ..engine.errors import InvalidInput
from ..redact import redact
from ..runner.conditions import parse_time, set_condition
from ..runner.drill import DrillOutcome, drill_backup, drill_run_id
from ..runner.pruning import (
    ScheduledBackup,
    active,
    finished_names,
    last_failure,
    last_success,
    live,
    plan_retention,
    readers,
)
from ..runner.schedule import CronSchedule, backup_name, evaluate
from ..runner.units import human_duration
from .link import ResourceLink
from .runtime import Runtime
from .settings import runtime_of

PLURAL = MONGO_BACKUP_SCHEDULE.plural
#: Kubernetes' limit on a label value
LABEL_VALUE_MAX = 63


@kopf.index(API_GROUP, API_VERSION, MONGO_BACKUP.plural, labels={SCHEDULE_LABEL: kopf.PRESENT})
def scheduled_backups(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    """(namespace, schedule name) -> the MongoBackups that schedule made."""
    return {(namespace, labels[SCHEDULE_LABEL]): ScheduledBackup.from_object(body)}


@kopf.index(API_GROUP, API_VERSION, MONGO_RESTORE.plural)
def restores_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> Any:
    """namespace -> what retention needs of its MongoRestores (which backup, which phase)."""
    return {
        namespace: {
            "metadata": {"name": body.metadata.name},
            "spec": {"backupRef": plain(body.spec.get("backupRef") or {})},
            "status": {"phase": _status_of(body).get("phase")},
        }
    }


@dataclass
class _Memory:
    """What one daemon remembers between evaluations (its status patches reach the live body
    a moment later; this keeps two evaluations in that moment from acting twice)."""

    last_scheduled: datetime | None = None
    #: when this process first evaluated the schedule
    first_seen: datetime | None = None
    reported_too_late: datetime | None = None
    reported_error: str | None = None
    #: the finished backups and the policy retention last ran for
    retention_done_for: tuple[frozenset[str], RetentionSpec] | None = None
    retention: RetentionReport | None = None
    success: BackupReference | None = None
    failure: BackupReference | None = None
    written: dict[str, Any] = field(default_factory=dict)
    #: the restore drill running now (one at a time), the backups drilled by this process,
    #: and the last drill's report (this process's is newer than the body's)
    drill: asyncio.Task[DrillOutcome] | None = None
    drilling: str | None = None
    drilled: set[str] = field(default_factory=set)
    last_drill: DrillReport | None = None


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, id="schedule", cancellation_timeout=10)
async def schedule(
    body: kopf.Body,
    meta: kopf.Meta,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: Any,
    **kwargs: Any,
) -> None:
    runtime = runtime_of(memo)
    assert runtime.kube is not None
    link = ResourceLink(runtime.kube, PLURAL, body, logger)
    memory = _Memory()
    try:
        await _evaluate_until_stopped(link, runtime, body, meta, memory, stopped, logger, kwargs)
    finally:
        if memory.drill is not None:  # a drill undoes what it wrote when cancelled
            memory.drill.cancel()
            with contextlib.suppress(BaseException):
                await memory.drill


async def _evaluate_until_stopped(
    link: ResourceLink,
    runtime: Runtime,
    body: kopf.Body,
    meta: kopf.Meta,
    memory: _Memory,
    stopped: kopf.DaemonStopped,
    logger: Any,
    kwargs: dict[str, Any],
) -> None:
    # Kopf passes every index by its handler's name
    backups_index: kopf.Index[tuple[str, str], ScheduledBackup] = kwargs["scheduled_backups"]
    restores_index: kopf.Index[str, dict[str, Any]] = kwargs["restores_by_namespace"]
    while not stopped:
        evaluation = _Evaluation(link, runtime, body, meta, memory, logger)
        try:
            delay = await evaluation.run(
                list(backups_index.get((link.namespace, link.name), [])),
                list(restores_index.get(link.namespace, [])),
            )
        except kubernetes.client.ApiException as exc:
            # the API server refused or failed a request: look again at the next interval
            # (a backup's name is its scheduled time, so a retried creation makes no second one)
            logger.warning("schedule evaluation failed: HTTP %s %s", exc.status, redact(str(exc.reason)))
            delay = runtime.settings.schedule_interval
        await stopped.wait(delay)


class _Evaluation:
    """One look at the clock and at the backups of one schedule."""

    def __init__(
        self,
        link: ResourceLink,
        runtime: Runtime,
        body: kopf.Body,
        meta: kopf.Meta,
        memory: _Memory,
        logger: Any,
    ) -> None:
        self.link, self.runtime, self.body, self.meta, self.memory = link, runtime, body, meta, memory
        self.logger = logger
        self.interval = runtime.settings.schedule_interval
        #: backups this evaluation created, and deleted (replaced or pruned)
        self.created: list[str] = []
        self.deleted: set[str] = set()

    async def run(self, backups: list[ScheduledBackup], restores: list[dict[str, Any]]) -> float:
        now = self.runtime.clock()
        if self.memory.first_seen is None:
            self.memory.first_seen = now
        try:
            spec = parse_spec(MongoBackupScheduleSpec, self.body)
            cron = CronSchedule.parse(spec.schedule, spec.time_zone)
        except (SpecError, InvalidInput) as exc:
            await self._invalid(str(exc))
            return self.interval
        if len(self.link.name) > LABEL_VALUE_MAX:
            await self._invalid(
                f"metadata.name: at most {LABEL_VALUE_MAX} characters for a schedule (its name is the "
                f"value of the label {SCHEDULE_LABEL} on its backups); got {len(self.link.name)}"
            )
            return self.interval
        self.memory.reported_error = None
        try:
            status = parse_status(MongoBackupScheduleStatus, self.body)
        except SpecError:
            status = MongoBackupScheduleStatus()  # written by someone else: start afresh
        last = max(filter(None, (status.last_schedule_time, self.memory.last_scheduled)), default=None)
        if not spec.suspend:
            last = await self._schedule(spec, cron, backups, now, last)
        self.memory.last_scheduled = last
        await self._retention(spec, cron, backups, restores, now)
        await self._drill(spec, status, backups, now)
        upcoming = cron.next_after(now)
        self.runtime.metrics.observe_schedule(
            self.link.namespace,
            self.link.name,
            interval_seconds=cron.longest_gap(now),
            next_run_timestamp=None if spec.suspend else upcoming.timestamp(),
            suspended=spec.suspend,
        )
        await self._write_status(spec, status, backups, last, upcoming)
        return max(0.0, min(self.interval, (upcoming - now).total_seconds()))

    async def _schedule(
        self,
        spec: MongoBackupScheduleSpec,
        cron: CronSchedule,
        backups: list[ScheduledBackup],
        now: datetime,
        last: datetime | None,
    ) -> datetime | None:
        """Start what is due; returns the new lastScheduleTime."""
        if spec.immediate and last is None and not backups:
            at = now.replace(microsecond=0)
            await self._start(spec, backups, at, "immediate")
            return at
        tick = evaluate(
            cron,
            last_scheduled=last,
            created=min(_created(self.meta, now), self.memory.first_seen or now),
            now=now,
            starting_deadline_seconds=spec.starting_deadline_seconds,
        )
        if tick.too_late is not None and tick.too_late != self.memory.reported_too_late:
            self.memory.reported_too_late = tick.too_late
            self.link.post_event(
                "Warning",
                "MissedSchedule",
                f"the run due at {_iso(tick.too_late)} was not started: it is more than "
                f"startingDeadlineSeconds ({spec.starting_deadline_seconds}) late"
                + (f"; {tick.missed} earlier runs were missed too" if tick.missed else ""),
            )
        if tick.due is None:
            return last
        if tick.missed:
            self.link.post_event(
                "Warning",
                "MissedSchedule",
                f"{tick.missed} runs were missed (operator down or schedule suspended); starting "
                f"only the latest, due at {_iso(tick.due)}",
            )
        await self._start(spec, backups, tick.due, f"due at {_iso(tick.due)}")
        return tick.due

    async def _start(
        self,
        spec: MongoBackupScheduleSpec,
        backups: list[ScheduledBackup],
        scheduled: datetime,
        why: str,
    ) -> None:
        running = active(backups)
        if running and spec.concurrency_policy == "Forbid":
            self.link.post_event(
                "Normal",
                "Skipped",
                f"the backup {why} was skipped: {', '.join(running)} still running (concurrencyPolicy Forbid)",
            )
            return
        if running and spec.concurrency_policy == "Replace":
            for name in running:
                # the backup's own handlers stop the run and delete what it wrote
                await self.link.kube.delete_object(MONGO_BACKUP.plural, self.link.namespace, name)
                self.deleted.add(name)
                self.link.post_event(
                    "Normal", "Replaced", f"deleted the running backup {name} (concurrencyPolicy Replace)"
                )
        name = backup_name(self.link.name, scheduled)
        if await self.link.kube.create_object(MONGO_BACKUP.plural, self.link.namespace, self._backup(name)):
            self.link.post_event("Normal", "Created", f"created MongoBackup {name} ({why})")
        self.created.append(name)

    def _backup(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": GROUP_VERSION,
            "kind": MONGO_BACKUP.kind,
            "metadata": {
                "name": name,
                "namespace": self.link.namespace,
                "labels": {SCHEDULE_LABEL: self.link.name},
                # Kubernetes deletes a schedule's backups with it (kubectl delete --cascade=orphan
                # keeps them); no blockOwnerDeletion: it would need update on the schedule's
                # finalizers, and nothing here waits for a foreground deletion
                "ownerReferences": [
                    {
                        "apiVersion": GROUP_VERSION,
                        "kind": MONGO_BACKUP_SCHEDULE.kind,
                        "name": self.link.name,
                        "uid": str(self.meta.get("uid")),
                        "controller": True,
                    }
                ],
            },
            # the template as the user wrote it: the MongoBackup's own defaults apply to it
            "spec": plain(self.body.spec["backupTemplate"]),
        }

    async def _retention(
        self,
        spec: MongoBackupScheduleSpec,
        cron: CronSchedule,
        backups: list[ScheduledBackup],
        restores: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        """After every finished backup (the set of finished ones changed) and when the policy
        changes: delete what the policy no longer keeps, or with dryRun only say what it would."""
        finished = finished_names(backups)
        if (
            spec.retention is None
            or not finished
            or (finished, spec.retention) == self.memory.retention_done_for
        ):
            return
        try:
            in_use = readers(restores)
            if self.memory.drill is not None and self.memory.drilling is not None:
                in_use.setdefault(self.memory.drilling, "this schedule's restore drill")
            decisions = plan_retention(backups, spec.retention, cron.zone, in_use)
        except InvalidInput as exc:  # validated with the spec: only a bug gets here
            self.link.post_event("Warning", "RetentionFailed", str(exc))
            self.memory.retention_done_for = (finished, spec.retention)
            return
        doomed = [d for d in decisions if not d.keep]
        dry_run = spec.retention.dry_run
        deleted = self.deleted
        if dry_run:
            if doomed:
                self.link.post_event(
                    "Normal", "WouldPrune", f"retention (dryRun) would delete: {_names_and_why(doomed)}"
                )
        else:
            for decision in doomed:
                await self.link.kube.delete_object(MONGO_BACKUP.plural, self.link.namespace, decision.name)
                deleted.add(decision.name)
            self.runtime.metrics.record_retention_deletions(self.link.namespace, self.link.name, len(doomed))
            if deleted:
                self.link.post_event("Normal", "Pruned", f"retention deleted: {_names_and_why(doomed)}")
        self.memory.retention_done_for = (finished - deleted, spec.retention)
        self.memory.retention = RetentionReport(
            time=now,
            dry_run=dry_run,
            deleted=sorted(d.name for d in doomed) if not dry_run else [],
            would_delete=sorted(d.name for d in doomed) if dry_run else [],
        )

    async def _drill(
        self,
        spec: MongoBackupScheduleSpec,
        status: MongoBackupScheduleStatus,
        backups: list[ScheduledBackup],
        now: datetime,
    ) -> None:
        """Record a drill that ended; start one when it is due: on the newest Completed backup,
        after it completes (no drill schedule) or at the drill's cron times."""
        memory = self.memory
        if memory.drill is not None:
            if not memory.drill.done():
                return
            task, memory.drill = memory.drill, None
            await self._record_drill(task)
        if spec.drill is None:
            return
        last = memory.last_drill or status.last_drill
        newest = last_success([b for b in live(backups) if b.name not in self.deleted])
        if newest is None or newest.name in memory.drilled:
            return
        if spec.drill.schedule is None:
            if last is not None and last.backup == newest.name:
                return
        else:
            since = last.time if last is not None else min(_created(self.meta, now), memory.first_seen or now)
            if CronSchedule.parse(spec.drill.schedule, spec.time_zone).latest_at_or_before(now) <= since:
                return
        body = await self.link.kube.get_object(MONGO_BACKUP.plural, self.link.namespace, newest.name)
        if body is None:
            return
        memory.drilled.add(newest.name)
        memory.drilling = newest.name
        self.link.post_event("Normal", "DrillStarted", f"restore drill of {newest.name} started")
        memory.drill = asyncio.create_task(
            drill_backup(
                self.link,
                body,
                spec.drill,
                drill_run_id(str(self.meta.get("uid")), newest.name),
                self.runtime.settings,
            )
        )

    async def _record_drill(self, task: asyncio.Task[DrillOutcome]) -> None:
        """Status, event, metric, and the drilled backup's Verified condition."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # drill_backup turns every expected failure into an outcome
            self.logger.error("the restore drill failed unexpectedly: %s", redact(str(error)))
            return
        outcome = task.result()
        self.memory.retention_done_for = None  # what the drill held may go now
        self.memory.last_drill = DrillReport(
            backup=outcome.backup,
            time=outcome.ended,
            passed=outcome.passed,
            verified_collections=outcome.verified_collections,
            documents=outcome.documents,
            duration=human_duration(outcome.duration),
            message=outcome.message,
        )
        self.runtime.metrics.record_drill(
            self.link.namespace, self.link.name, outcome.backup, outcome.passed, outcome.duration
        )
        if outcome.passed:
            self.link.post_event("Normal", "DrillPassed", outcome.message)
        else:
            self.link.post_event("Warning", "DrillFailed", outcome.message)
        backup = await self.link.kube.get_object(MONGO_BACKUP.plural, self.link.namespace, outcome.backup)
        if backup is None:
            return  # deleted meanwhile (retention): nothing to mark
        conditions = set_condition(
            list((backup.get("status") or {}).get("conditions") or []),
            "Verified",
            "True" if outcome.passed else "False",
            "DrillPassed" if outcome.passed else "DrillFailed",
            outcome.message,
            (backup.get("metadata") or {}).get("generation"),
        )
        await self.link.kube.patch_status(
            MONGO_BACKUP.plural, self.link.namespace, outcome.backup, {"conditions": conditions}
        )

    async def _write_status(
        self,
        spec: MongoBackupScheduleSpec,
        status: MongoBackupScheduleStatus,
        backups: list[ScheduledBackup],
        last: datetime | None,
        upcoming: datetime,
    ) -> None:
        remaining = [b for b in live(backups) if b.name not in self.deleted]
        known = {b.name for b in remaining}
        fresh = [n for n in self.created if n not in known]
        running = active(remaining) + fresh
        # history: a backup retention deleted since is still the last success or failure
        seen = live(backups)
        success = _newer(self.memory.success or status.last_successful_backup, last_success(seen))
        failure = _newer(self.memory.failure or status.last_failed_backup, last_failure(seen))
        self.memory.success, self.memory.failure = success, failure
        conditions = self._conditions()
        generation = self.meta.get("generation")
        conditions = set_condition(
            conditions, "Ready", "True", "Scheduled", f"next backup at {_iso(upcoming)}", generation
        )
        conditions = set_condition(
            conditions,
            "Suspended",
            "True" if spec.suspend else "False",
            "Suspended" if spec.suspend else "Active",
            "spec.suspend is true: no backups are taken" if spec.suspend else "",
            generation,
        )
        newest = max(
            (r for r in (success, failure) if r is not None and r.time is not None),
            # completion times have whole seconds: on a tie the later name (scheduled time) wins
            key=lambda r: (r.time or datetime.min.replace(tzinfo=UTC), r.name),
            default=None,
        )
        if newest is None:
            conditions = set_condition(
                conditions, "LastBackupSucceeded", "Unknown", "NoBackupYet", "", generation
            )
        elif newest is success:
            conditions = set_condition(
                conditions, "LastBackupSucceeded", "True", "Completed", f"{newest.name} completed", generation
            )
        else:
            conditions = set_condition(
                conditions,
                "LastBackupSucceeded",
                "False",
                "Failed",
                f"{newest.name} failed: {newest.message or 'see its status'}",
                generation,
            )
        written = MongoBackupScheduleStatus(
            last_schedule_time=last,
            next_schedule_time=None if spec.suspend else upcoming,
            last_successful_backup=success,
            last_failed_backup=failure,
            active=running,
            kept=len(remaining) + len(fresh),
            retention=self.memory.retention,
            last_drill=self.memory.last_drill or status.last_drill,
            observed_generation=generation,
        )
        patch = status_patch(written, clear=[] if not spec.suspend else ["next_schedule_time"])
        patch["conditions"] = conditions
        patch.setdefault("active", [])
        await self._patch(patch)

    async def _invalid(self, message: str) -> None:
        if self.memory.reported_error != message:
            self.memory.reported_error = message
            self.link.post_event("Warning", "InvalidSpec", message)
        conditions = set_condition(
            self._conditions(),
            "Ready",
            "False",
            "InvalidSpec",
            message,
            self.meta.get("generation"),
        )
        await self._patch({"conditions": conditions, "nextScheduleTime": None})

    def _conditions(self) -> list[dict[str, Any]]:
        """The conditions last written: this process's own patch is newer than the body."""
        written = self.memory.written.get("conditions")
        return list(written if written is not None else _status_of(self.body).get("conditions") or [])

    async def _patch(self, patch: dict[str, Any]) -> None:
        if patch == self.memory.written:
            return
        await self.link.patch_status(patch)
        self.memory.written = patch


def _newer(old: BackupReference | None, new: BackupReference | None) -> BackupReference | None:
    if old is None or old.time is None:
        return new or old
    if new is None or new.time is None:
        return old
    return new if (new.time, new.name) >= (old.time, old.name) else old


def _status_of(body: kopf.Body) -> dict[str, Any]:
    status: dict[str, Any] = plain(body.get("status") or {})
    return status


def _created(meta: kopf.Meta, now: datetime) -> datetime:
    """When the schedule was created. The daemon takes the earlier of this and the time it
    first saw the schedule: with the API server's clock ahead of ours, a run due between the
    two would otherwise be lost."""
    return parse_time(meta.get("creationTimestamp")) or now


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _names_and_why(decisions: list[Any], limit: int = 20) -> str:
    shown = ", ".join(f"{d.name} ({d.why})" for d in decisions[:limit])
    more = len(decisions) - limit
    return shown + (f" and {more} more" if more > 0 else "")
