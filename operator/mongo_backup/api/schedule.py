"""The MongoBackupSchedule custom resource: MongoBackups made on a cron schedule, pruned by a
GFS retention policy. The backups are ordinary MongoBackup objects (`backupTemplate` is the
MongoBackup spec itself: the same model, the same schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import ConfigDict, Field, field_validator, model_validator

from .backup import MongoBackupSpec
from .common import (
    NAME_MAX,
    Condition,
    CustomResource,
    MongoDBConnection,
    PrinterColumn,
    SpecModel,
    StatusModel,
)

#: the label every MongoBackup made by a schedule carries: the schedule's name
SCHEDULE_LABEL = "mongobackup.io/schedule"

#: the macros cron and CronJob know, as 5-field expressions
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def cron_fields(expression: str) -> str:
    """The 5-field form of a cron expression or macro; ValueError (naming what is wrong) when
    it is neither. Shared by validation and by the scheduler, so both read it the same way."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in CRON_MACROS:
            raise ValueError(f"unknown cron macro {text!r}: use one of {', '.join(CRON_MACROS)}")
        return CRON_MACROS[text.lower()]
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"cron expression {expression!r} must have 5 fields (minute hour day-of-month month "
            "day-of-week) or be a macro such as @daily"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    return text


def check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: give an IANA name such as UTC or Europe/Berlin"
        ) from None
    return name


_COMPLETE_RULES = ("keep_last", "hourly", "daily", "weekly", "monthly", "yearly")
_ONE_RULE = "set at least one of keepLast, hourly, daily, weekly, monthly, yearly"


def _count(description: str) -> Any:
    return Field(default=None, ge=0, le=10_000, description=description)


class RetentionSpec(SpecModel):
    """GFS retention (restic's `forget --keep-*`): the newest Completed backup of each period is
    kept for that many periods (periods in the schedule's timeZone); a backup kept by any rule
    stays. Applied after every completed backup of the schedule."""

    keep_last: int | None = _count("Keep the N newest Completed backups.")
    hourly: int | None = _count(
        "Keep the newest Completed backup of each of the N newest hours that have one."
    )
    daily: int | None = _count("Keep the newest Completed backup of each of the N newest days that have one.")
    weekly: int | None = _count(
        "Keep the newest Completed backup of each of the N newest ISO weeks that have one."
    )
    monthly: int | None = _count(
        "Keep the newest Completed backup of each of the N newest months that have one."
    )
    yearly: int | None = _count(
        "Keep the newest Completed backup of each of the N newest years that have one."
    )
    keep_failed: int | None = _count(
        "Keep the N newest Failed backups and delete older ones; unset: Failed ones are never deleted."
    )
    dry_run: bool = Field(
        default=False,
        description="Only report what retention would delete (status.retention and an event); delete nothing.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.keepLast) || has(self.hourly) || has(self.daily) || "
                    "has(self.weekly) || has(self.monthly) || has(self.yearly)",
                    "message": _ONE_RULE,
                }
            ]
        }
    )

    @model_validator(mode="after")
    def _one_rule(self) -> RetentionSpec:
        if all(getattr(self, name) is None for name in _COMPLETE_RULES):
            raise ValueError(_ONE_RULE)
        return self


class DrillSpec(SpecModel):
    """A restore drill: the proof that a backup restores. The newest Completed backup of the
    schedule is restored into scratch databases of `mongodb` (each database DB as
    `databasePrefix` + DB), every collection is checked against the manifest (count and content
    digest), and the scratch collections are dropped. A drill never writes over data: a scratch
    collection that exists and is not empty fails the drill before anything is written."""

    mongodb: MongoDBConnection = Field(
        description=(
            "The deployment the drills restore into: a scratch deployment, not production (a drill "
            "writes as much as a restore)."
        )
    )
    database_prefix: str = Field(
        default="drill_",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Starts the name of every scratch database (letters, digits, '_' or '-').",
    )
    schedule: str | None = Field(
        default=None,
        max_length=256,
        description=(
            "When to drill the newest Completed backup (cron or macro, in the schedule's timeZone); "
            "unset: each backup of the schedule is drilled once, right after it completes."
        ),
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            cron_fields(value)
        return value


class MongoBackupScheduleSpec(SpecModel):
    schedule: str = Field(
        min_length=1,
        max_length=256,
        description=(
            "When to take a backup: a standard 5-field cron expression (minute hour day-of-month "
            "month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly."
        ),
    )
    time_zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description=(
            "IANA time zone of the schedule and of retention periods, e.g. Europe/Berlin. Across "
            "daylight-saving changes a run happens once per matching wall-clock time, as cron does."
        ),
    )
    suspend: bool = Field(default=False, description="Take no scheduled backups while true.")
    concurrency_policy: Literal["Forbid", "Replace", "Allow"] = Field(
        default="Forbid",
        description=(
            "When a backup of this schedule is still running at the next run: Forbid skips the new "
            "run, Replace deletes the running backup and starts the new one, Allow runs both."
        ),
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description=(
            "A missed run (operator down, schedule suspended) still starts if it is at most this "
            "late; unset: however late. Only the latest missed run ever starts, never a burst."
        ),
    )
    immediate: bool = Field(default=False, description="Take one backup as soon as the schedule is created.")
    backup_template: MongoBackupSpec = Field(
        description="The spec of every MongoBackup this schedule creates (the MongoBackup spec as is)."
    )
    retention: RetentionSpec | None = Field(
        default=None, description="Which backups of this schedule to keep; unset: all are kept."
    )
    drill: DrillSpec | None = Field(
        default=None, description="Restore drills that prove the schedule's backups restore; unset: none."
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        cron_fields(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_time_zone(value)


class DrillReport(StatusModel):
    """The last restore drill of the schedule."""

    backup: str = Field(max_length=NAME_MAX, description="The MongoBackup drilled.")
    time: datetime = Field(description="When the drill ended.")
    passed: bool = Field(description="Whether every collection restored and matched the backup.")
    verified_collections: int | None = Field(
        default=None, ge=0, description="Collections restored and verified (count and content digest)."
    )
    documents: int | None = Field(default=None, ge=0, description="Documents restored.")
    duration: str | None = Field(default=None, description="How long the drill took, e.g. '42s'.")
    message: str = Field(default="", max_length=4096, description="What the drill found.")


class BackupReference(StatusModel):
    name: str = Field(max_length=NAME_MAX, description="The MongoBackup's name.")
    time: datetime | None = Field(default=None, description="When it completed or failed.")
    checksum: str | None = Field(default=None, description="sha256 of its manifest.json (Completed only).")
    message: str | None = Field(default=None, description="Why it failed (Failed only).")


class RetentionReport(StatusModel):
    """What the last application of the retention policy did (or, with dryRun, would do)."""

    time: datetime | None = Field(default=None, description="When retention was last applied.")
    dry_run: bool = Field(default=False, description="Whether it only reported.")
    deleted: list[str] = Field(default_factory=list, description="MongoBackups it deleted.")
    would_delete: list[str] = Field(
        default_factory=list, description="MongoBackups it would delete (dryRun only)."
    )


class MongoBackupScheduleStatus(StatusModel):
    last_schedule_time: datetime | None = Field(
        default=None, description="The scheduled time of the last backup created (or skipped)."
    )
    next_schedule_time: datetime | None = Field(default=None, description="When the next backup is due.")
    last_successful_backup: BackupReference | None = Field(
        default=None, description="The newest Completed backup of this schedule."
    )
    last_failed_backup: BackupReference | None = Field(
        default=None, description="The newest Failed backup of this schedule."
    )
    active: list[str] = Field(default_factory=list, description="Backups of this schedule still running.")
    kept: int | None = Field(default=None, ge=0, description="Backups of this schedule that exist now.")
    last_drill: DrillReport | None = Field(
        default=None, description="The last restore drill and its verdict."
    )
    retention: RetentionReport | None = Field(
        default=None, description="What the retention policy last deleted, or would delete with dryRun."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (spec valid, scheduling), Suspended, LastBackupSucceeded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the status describes."
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


MONGO_BACKUP_SCHEDULE = CustomResource(
    kind="MongoBackupSchedule",
    plural="mongobackupschedules",
    singular="mongobackupschedule",
    short_names=("mbs",),
    spec_model=MongoBackupScheduleSpec,
    status_model=MongoBackupScheduleStatus,
    description=(
        "MongoBackups taken on a cron schedule (as a CronJob makes Jobs), and pruned by a GFS "
        "retention policy after every completed backup."
    ),
    printer_columns=(
        PrinterColumn("Schedule", "string", ".spec.schedule", "Cron expression."),
        PrinterColumn("Suspend", "boolean", ".spec.suspend", "Whether scheduling is suspended."),
        PrinterColumn(
            "Last Success",
            "date",
            ".status.lastSuccessfulBackup.time",
            "When the newest Completed backup ended.",
        ),
        # a string, not a date: kubectl shows dates as ages, and a future one as <invalid>
        PrinterColumn("Next", "string", ".status.nextScheduleTime", "When the next backup is due (UTC)."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
    ),
    immutable_spec=False,
)
