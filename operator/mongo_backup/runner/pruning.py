"""A schedule's view of its MongoBackups: which are running, the newest success and failure,
and which retention deletes. Pure (plain objects in, decisions out): the GFS rules are the
engine's (engine/retention.py, shared with `mongo-backup prune`); this adds what only a
cluster knows: phases, completion times from status, and MongoRestores reading a backup."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..api import TERMINAL_PHASES, BackupReference, RetentionSpec
from ..engine.retention import Decision, ItemState, RetentionItem, RetentionPolicy, apply_retention
from .conditions import parse_time

#: a Cancelled backup is finished too: it holds nothing, and retention counts it with the failed
FINISHED = TERMINAL_PHASES


@dataclass(frozen=True)
class ScheduledBackup:
    """What retention and the schedule's status need of one MongoBackup."""

    name: str
    phase: str | None
    created: datetime | None
    #: status.completedAt: when it completed or failed
    completed: datetime | None = None
    checksum: str | None = None
    error: str | None = None
    #: deletion requested (a finalizer still holds it): no longer counted
    deleting: bool = False

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ScheduledBackup:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        return cls(
            name=str(meta["name"]),
            phase=status.get("phase"),
            created=parse_time(meta.get("creationTimestamp")),
            completed=parse_time(status.get("completedAt")),
            checksum=status.get("checksum"),
            error=status.get("error"),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def time(self) -> datetime | None:
        return self.completed or self.created


def live(backups: Iterable[ScheduledBackup]) -> list[ScheduledBackup]:
    """The backups not being deleted, oldest first (by creation, then name)."""
    return sorted(
        (b for b in backups if not b.deleting), key=lambda b: (b.created is not None, b.created, b.name)
    )


def active(backups: Iterable[ScheduledBackup]) -> list[str]:
    """Names of the backups still running (neither Completed nor Failed), oldest first."""
    return [b.name for b in live(backups) if not b.finished]


def _newest(backups: Iterable[ScheduledBackup], phase: str) -> ScheduledBackup | None:
    matching = [b for b in backups if b.phase == phase and b.time is not None]
    return max(matching, key=lambda b: (b.time, b.name), default=None)


def last_success(backups: Iterable[ScheduledBackup]) -> BackupReference | None:
    newest = _newest(backups, "Completed")
    if newest is None:
        return None
    return BackupReference(name=newest.name, time=newest.time, checksum=newest.checksum)


def last_failure(backups: Iterable[ScheduledBackup]) -> BackupReference | None:
    newest = _newest(backups, "Failed")
    if newest is None:
        return None
    return BackupReference(name=newest.name, time=newest.time, message=newest.error)


def readers(restores: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Backup name -> the MongoRestore reading it: one that names it in backupRef and has not
    finished (a restore that has not started yet will read it too)."""
    reading: dict[str, str] = {}
    for restore in restores:
        ref = ((restore.get("spec") or {}).get("backupRef") or {}).get("name")
        phase = (restore.get("status") or {}).get("phase")
        if ref and phase not in FINISHED:
            reading.setdefault(str(ref), str((restore.get("metadata") or {}).get("name")))
    return reading


def policy_of(spec: RetentionSpec) -> RetentionPolicy:
    return RetentionPolicy(
        keep_last=spec.keep_last,
        hourly=spec.hourly,
        daily=spec.daily,
        weekly=spec.weekly,
        monthly=spec.monthly,
        yearly=spec.yearly,
        keep_failed=spec.keep_failed,
    )


def _state(backup: ScheduledBackup) -> ItemState:
    if backup.phase == "Completed":
        return "complete"
    if backup.phase in ("Failed", "Cancelled"):
        return "failed"
    return "in_progress"


def plan_retention(
    backups: Sequence[ScheduledBackup],
    spec: RetentionSpec,
    zone: ZoneInfo,
    read_by: Mapping[str, str] | None = None,
) -> list[Decision]:
    """Keep or delete each live backup, newest first. Running backups are always kept; the
    newest Completed one is always kept (so the only one is never deleted); a backup that a
    MongoRestore reads is always kept; Failed ones go beyond keepFailed (kept when unset)."""
    read_by = read_by or {}
    items = [
        RetentionItem(
            b.name,
            b.time,
            _state(b),
            hold=f"MongoRestore {read_by[b.name]} reads it" if b.name in read_by else None,
        )
        for b in live(backups)
    ]
    return apply_retention(items, policy_of(spec), zone)


def finished_names(backups: Iterable[ScheduledBackup]) -> frozenset[str]:
    """The finished backups: retention runs again whenever this set changes."""
    return frozenset(b.name for b in live(backups) if b.finished)
