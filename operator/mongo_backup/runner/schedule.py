"""When a MongoBackupSchedule takes its backups: pure functions of the cron expression, the
time zone, the last scheduled time and "now" (no clock is read here, no Kubernetes).

The semantics are a Kubernetes CronJob's:

- The run due now is the newest cron time after the last scheduled one (or after the
  schedule's creation) and not after now. Runs missed while the operator was down or the
  schedule suspended never start as a burst: only the newest of them may start, once.
- With `startingDeadlineSeconds`, that run starts only if it is at most that late; otherwise
  it is skipped (reported as missed) and the schedule waits for the next time.

Daylight-saving time: times are matched against the wall clock of the schedule's time zone,
one run per matching wall-clock time, as cron (Debian's, cronie) does:

- spring forward (Europe/Berlin 02:00 -> 03:00): a fixed-time job in the skipped hour
  (`30 2 * * *`) runs once, at the transition (03:00 local); a job for every hour simply has
  no 02:30 that night;
- fall back (03:00 -> 02:00): a fixed-time job (`30 2 * * *`) runs once, at the first
  02:30; a job whose hour field is `*` runs in both 02:xx hours (they are two real hours).

Cron library: cronsim (the evaluator of Healthchecks.io, released regularly): pure Python,
typed, no dependencies, iterates forwards and backwards, and mimics Debian cron on DST days
(the rules above; tests/unit/test_schedule_timing.py pins them). croniter, the other
candidate, went unmaintained in 2024 until it changed hands, and is larger for no gain here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from ..api.schedule import check_time_zone, cron_fields
from ..engine.errors import InvalidInput

#: missed runs counted at most (CronJob gives up counting at 100 too): a schedule of every
#: minute whose operator was down for a year must not cost half a million iterations
MISSED_COUNT_MAX = 100
_MINUTE = timedelta(minutes=1)


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression in a time zone."""

    expression: str
    fields: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, time_zone: str = "UTC") -> CronSchedule:
        """Raises InvalidInput naming the field (`schedule`, `timeZone`) that is wrong."""
        try:
            fields = cron_fields(expression)
        except ValueError as exc:
            raise InvalidInput(f"schedule: {exc}") from None
        try:
            check_time_zone(time_zone)
        except ValueError as exc:
            raise InvalidInput(f"timeZone: {exc}") from None
        return cls(expression, fields, ZoneInfo(time_zone))

    def next_after(self, t: datetime) -> datetime:
        """The first cron time strictly after `t` (UTC)."""
        # cron times are whole minutes: those after t are those after t's minute
        start = _minute(t.astimezone(self.zone))
        return next(CronSim(self.fields, start)).astimezone(UTC)

    def longest_gap(self, after: datetime, runs: int = 60) -> float:
        """Seconds of the longest wait between two of the next `runs` cron times: what "overdue"
        is measured in (a weekday schedule waits three days over a weekend, not one)."""
        times = CronSim(self.fields, _minute(after.astimezone(self.zone)))
        # in UTC: Python subtracts two times of one zone as wall clocks (the DST hour lost)
        previous = next(times).astimezone(UTC)
        longest = 0.0
        for _ in range(runs):
            current = next(times).astimezone(UTC)
            longest = max(longest, (current - previous).total_seconds())
            previous = current
        return longest

    def latest_at_or_before(self, t: datetime) -> datetime:
        """The newest cron time not after `t` (UTC)."""
        # cronsim's reverse iteration is strict: start one minute on (no cron time lies
        # between t and its next whole minute)
        start = _minute(t.astimezone(self.zone)) + _MINUTE
        return next(CronSim(self.fields, start, reverse=True)).astimezone(UTC)


@dataclass(frozen=True)
class Tick:
    """What a schedule should do at `now`."""

    #: the scheduled time of the backup to start now, or None
    due: datetime | None
    #: the newest missed run, skipped because it is later than startingDeadlineSeconds
    too_late: datetime | None
    #: runs missed before `due` (or `too_late`) that will never start; at most MISSED_COUNT_MAX
    missed: int
    #: the next cron time after now
    next: datetime


def evaluate(
    schedule: CronSchedule,
    *,
    last_scheduled: datetime | None,
    created: datetime,
    now: datetime,
    starting_deadline_seconds: int | None = None,
) -> Tick:
    """The CronJob decision: at most one run (the newest missed one), never a burst."""
    earliest = last_scheduled or created
    upcoming = schedule.next_after(now)
    latest = schedule.latest_at_or_before(now)
    if latest <= earliest:
        return Tick(None, None, 0, upcoming)
    missed = _count_between(schedule, earliest, latest)
    if starting_deadline_seconds is not None and latest < now - timedelta(seconds=starting_deadline_seconds):
        return Tick(None, latest, missed, upcoming)
    return Tick(latest, None, missed, upcoming)


def _count_between(schedule: CronSchedule, after: datetime, before: datetime) -> int:
    """Cron times strictly between `after` and `before`, counted up to MISSED_COUNT_MAX."""
    count = 0
    t = schedule.next_after(after)
    while t < before and count < MISSED_COUNT_MAX:
        count += 1
        t = schedule.next_after(t)
    return count


def backup_name(schedule_name: str, scheduled: datetime) -> str:
    """`<schedule>-<UTC yyyymmddhhmmss>`: one name per scheduled time, so creating it twice
    (a retried evaluation, two operator processes) makes one backup."""
    return f"{schedule_name}-{scheduled.astimezone(UTC):%Y%m%d%H%M%S}"
