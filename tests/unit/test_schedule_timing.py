"""When a MongoBackupSchedule fires (runner/schedule.py): CronJob's rules for missed runs and
deadlines, cron's rules across daylight-saving changes, and clear errors for bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mongo_backup.engine.errors import InvalidInput
from mongo_backup.runner.schedule import MISSED_COUNT_MAX, CronSchedule, backup_name, evaluate


def utc(text: str) -> datetime:
    """`2026-03-29 01:00` or `2026-03-29 01:00:30` in UTC."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def fire_times(expression: str, zone: str, start: str, count: int) -> list[str]:
    """The next `count` run times after `start` (UTC), as UTC `HH:MM` with the date."""
    schedule = CronSchedule.parse(expression, zone)
    t, out = utc(start), []
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(f"{t:%Y-%m-%d %H:%M}")
    return out


# --- daylight-saving time: one run per matching wall-clock time ------------------------------

DST_CASES = [
    pytest.param(
        # Berlin springs forward on 2026-03-29 at 02:00 (01:00 UTC): 02:30 does not exist that
        # night; the job runs once, at the transition (03:00 CEST = 01:00 UTC)
        "30 2 * * *", "Europe/Berlin", "2026-03-27 12:00", 4,
        ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30", "2026-03-31 00:30"],
        id="spring-forward-fixed-time-runs-once-at-the-transition",
    ),
    pytest.param(
        # Berlin falls back on 2026-10-25 at 03:00 CEST (01:00 UTC): 02:30 happens twice; the
        # fixed-time job runs once, at the first (00:30 UTC)
        "30 2 * * *", "Europe/Berlin", "2026-10-23 12:00", 4,
        ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30", "2026-10-27 01:30"],
        id="fall-back-fixed-time-runs-once",
    ),
    pytest.param(
        # every hour at :30 on the fall-back night: both 02:30s are real, distinct hours
        "30 * * * *", "Europe/Berlin", "2026-10-24 22:00", 5,
        ["2026-10-24 22:30", "2026-10-24 23:30", "2026-10-25 00:30", "2026-10-25 01:30", "2026-10-25 02:30"],
        id="fall-back-hourly-runs-in-both-hours",
    ),
    pytest.param(
        # every hour at :30 on the spring-forward night: there is no 02:30 to match
        "30 * * * *", "Europe/Berlin", "2026-03-28 23:00", 3,
        ["2026-03-28 23:30", "2026-03-29 00:30", "2026-03-29 01:30"],
        id="spring-forward-hourly-skips-the-missing-hour",
    ),
    pytest.param(
        "@daily", "America/New_York", "2026-03-07 12:00", 3,
        ["2026-03-08 05:00", "2026-03-09 04:00", "2026-03-10 04:00"],
        id="midnight-keeps-local-midnight-across-the-change",
    ),
    pytest.param(
        "0 3 * * 1-5", "UTC", "2026-12-04 12:00", 3,
        ["2026-12-07 03:00", "2026-12-08 03:00", "2026-12-09 03:00"],
        id="weekdays-in-utc",
    ),
    pytest.param(
        "@monthly", "UTC", "2026-01-31 00:00", 3,
        ["2026-02-01 00:00", "2026-03-01 00:00", "2026-04-01 00:00"],
        id="monthly-macro",
    ),
    pytest.param(
        "@weekly", "UTC", "2026-12-05 00:00", 2, ["2026-12-06 00:00", "2026-12-13 00:00"], id="weekly-on-sunday"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("expression", "zone", "start", "count", "expected"), DST_CASES)
def test_fire_times(expression: str, zone: str, start: str, count: int, expected: list[str]) -> None:
    assert fire_times(expression, zone, start, count) == expected


def test_latest_at_or_before_includes_an_exact_match() -> None:
    schedule = CronSchedule.parse("@hourly")
    assert schedule.latest_at_or_before(utc("2026-12-05 10:00")) == utc("2026-12-05 10:00")
    assert schedule.latest_at_or_before(utc("2026-12-05 10:59:59")) == utc("2026-12-05 10:00")
    assert schedule.next_after(utc("2026-12-05 10:00")) == utc("2026-12-05 11:00")
    assert schedule.next_after(utc("2026-12-05 10:00:30")) == utc("2026-12-05 11:00")


# --- what is due: CronJob's rules ---------------------------------------------------------

HOURLY = CronSchedule.parse("0 * * * *")
CREATED = utc("2026-12-05 09:10")

DUE_CASES = [
    # (last scheduled, now, startingDeadlineSeconds) -> (due, too late, missed, next)
    pytest.param(None, "2026-12-05 09:59", None, (None, None, 0, "2026-12-05 10:00"), id="nothing-due-yet"),
    pytest.param(None, "2026-12-05 10:00", None, ("2026-12-05 10:00", None, 0, "2026-12-05 11:00"), id="first-run"),
    pytest.param(
        "2026-12-05 10:00", "2026-12-05 10:00:40", None, (None, None, 0, "2026-12-05 11:00"),
        id="already-ran-this-slot",
    ),
    pytest.param(
        "2026-12-05 10:00", "2026-12-05 11:00:05", None, ("2026-12-05 11:00", None, 0, "2026-12-05 12:00"),
        id="next-slot",
    ),
    pytest.param(
        # the operator was down from 10:30 to 15:20: one catch-up run (15:00), never five
        "2026-12-05 10:00", "2026-12-05 15:20", None, ("2026-12-05 15:00", None, 4, "2026-12-05 16:00"),
        id="missed-runs-one-catch-up",
    ),
    pytest.param(
        "2026-12-05 10:00", "2026-12-05 15:20", 1800, ("2026-12-05 15:00", None, 4, "2026-12-05 16:00"),
        id="missed-runs-latest-within-deadline",
    ),
    pytest.param(
        "2026-12-05 10:00", "2026-12-05 15:20", 600, (None, "2026-12-05 15:00", 4, "2026-12-05 16:00"),
        id="missed-runs-latest-too-late",
    ),
    pytest.param(
        "2026-12-05 10:00", "2026-12-05 11:00:30", 0, (None, "2026-12-05 11:00", 0, "2026-12-05 12:00"),
        id="deadline-zero-is-too-late-after-the-minute",
    ),
    pytest.param(
        "2026-12-05 10:00", "2026-12-05 11:00", 0, ("2026-12-05 11:00", None, 0, "2026-12-05 12:00"),
        id="deadline-zero-on-time",
    ),
    pytest.param(
        "2026-01-01 00:00", "2026-12-05 10:30", None, ("2026-12-05 10:00", None, MISSED_COUNT_MAX, "2026-12-05 11:00"),
        id="a-year-down-counts-at-most-the-cap",
    ),
]  # fmt: skip


def _opt(text: str | None) -> datetime | None:
    return utc(text) if text else None


@pytest.mark.parametrize(("last", "now", "deadline", "expected"), DUE_CASES)
def test_what_is_due(
    last: str | None,
    now: str,
    deadline: int | None,
    expected: tuple[str | None, str | None, int, str],
) -> None:
    tick = evaluate(
        HOURLY, last_scheduled=_opt(last), created=CREATED, now=utc(now), starting_deadline_seconds=deadline
    )
    due, too_late, missed, upcoming = expected
    assert (tick.due, tick.too_late, tick.missed, tick.next) == (
        _opt(due),
        _opt(too_late),
        missed,
        utc(upcoming),
    )


def test_evaluating_every_few_seconds_over_a_day_fires_once_per_slot() -> None:
    """As the handler does: evaluate often, record each run's scheduled time."""
    schedule = CronSchedule.parse("*/30 9-17 * * *", "Europe/Berlin")
    now, last, runs = utc("2026-12-05 00:00"), None, []
    while now < utc("2026-12-06 00:00"):
        tick = evaluate(schedule, last_scheduled=last, created=utc("2026-12-05 00:00"), now=now)
        if tick.due is not None:
            runs.append(tick.due)
            last = tick.due
        now += timedelta(seconds=37)
    # 09:00 .. 17:30 Berlin (CET, UTC+1): 18 runs, 08:00 .. 16:30 UTC
    assert len(runs) == 18 and runs[0] == utc("2026-12-05 08:00") and runs[-1] == utc("2026-12-05 16:30")
    assert len(set(runs)) == 18


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("61 * * * *", "UTC", "schedule: invalid cron expression '61 * * * *'"),
        ("* * * *", "UTC", "schedule: cron expression '* * * *' must have 5 fields"),
        ("0 0 * * * *", "UTC", "must have 5 fields"),
        ("@fortnightly", "UTC", "schedule: unknown cron macro '@fortnightly'"),
        ("@daily", "Mars/Olympus", "timeZone: unknown time zone 'Mars/Olympus'"),
        ("@daily", "../etc/passwd", "timeZone: unknown time zone"),
    ],
)
def test_bad_input_is_refused_naming_the_field(expression: str, zone: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        CronSchedule.parse(expression, zone)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_backup_names_are_the_utc_time_of_the_run() -> None:
    berlin = datetime(2026, 3, 29, 3, 0, tzinfo=CronSchedule.parse("@daily", "Europe/Berlin").zone)
    assert backup_name("nightly", berlin) == "nightly-20260329010000"


@pytest.mark.parametrize(
    ("expression", "zone", "longest"),
    [
        ("@hourly", "UTC", 3600),
        ("@daily", "UTC", 86_400),
        ("0 9 * * 1-5", "UTC", 3 * 86_400),  # Friday to Monday
        ("0 3 * * *", "Europe/Berlin", 90_000),  # the night the clocks go back lasts 25 hours
    ],
)
def test_the_longest_gap_is_what_overdue_is_measured_in(expression: str, zone: str, longest: int) -> None:
    cron = CronSchedule.parse(expression, zone)
    assert cron.longest_gap(datetime(2026, 10, 1, tzinfo=UTC), runs=60) == longest
