"""Which backups a retention policy keeps: GFS (grandfather-father-son) tiers as restic's
`forget --keep-*`, K8up and KubeStash define them. One pure function (no I/O, no clock) used
by `mongo-backup prune` and by the MongoBackupSchedule's retention.

The rules, applied to a list of backups (`RetentionItem`: name, time, state):

- Only **complete** backups count for `keep_last` and the period rules, so failed runs never
  push a good backup out.
- `keep_last N`: the N newest complete backups.
- `hourly`, `daily`, `weekly`, `monthly`, `yearly N`: for each of the N newest periods that
  hold a complete backup, the newest complete backup of that period. Periods are those of the
  caller's time zone (default UTC): calendar hours, days, ISO weeks (Monday to Sunday, the
  ISO week-numbering year: `2026-W53`), months, years. An hour is a real hour: when clocks go
  back, the two 02:00-03:00 hours are two periods (told apart by their UTC offset). Periods
  without a backup are skipped, not counted (restic's rule). Unlike restic 0.17+, the oldest
  backup is not kept extra when a rule has periods left.
- A backup kept by several rules is kept once, with every reason (`last 1/2`,
  `daily 2026-12-04`, `weekly 2026-W49`, ...).
- The **newest complete backup is always kept**: a policy whose counts are all 0 never
  deletes the only (or last) complete backup.
- **failed** and **incomplete** backups (a run that failed; a root of ours without manifest
  and without lock) are kept as the `keep_failed` newest of them, the rest deleted. With
  `keep_failed` unset (None), none of them is deleted.
- **in_progress** (a run holds the backup's lock) and **unknown** (nothing prune may judge:
  an unreadable manifest, objects that are not a backup of ours) are always kept and count
  for no rule.
- An item with a `hold` (e.g. a restore reads it) is always kept, and still counts for the
  rules of its state.
- A policy that sets no rule for complete backups (`keep_last`, `hourly` ... `yearly` all
  None) is refused (InvalidInput): it would delete every complete backup or mean nothing.
- Order: newest first; equal times are ordered by name (the greater name is the newer), so
  the result never depends on the input's order. A backup without a time (only possible for
  a non-complete one) is the oldest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput

ItemState = Literal["complete", "failed", "incomplete", "in_progress", "unknown"]
PeriodRule = Literal["hourly", "daily", "weekly", "monthly", "yearly"]
Rule = Literal[
    "last",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "failed",
    "newest-complete",
    "in-progress",
    "unknown",
    "held",
]

#: the period rules, in the order their reasons are listed
PERIOD_RULES: tuple[PeriodRule, ...] = ("hourly", "daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class RetentionPolicy:
    """How many of each to keep; None: the rule is not used. restic's `--keep-last`,
    `--keep-hourly` ... `--keep-yearly`, and `keep_failed` for failed and incomplete ones."""

    keep_last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    keep_failed: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"retention {f.name}: must be a whole number >= 0 (got {value!r})")

    def periods(self, rule: PeriodRule) -> int | None:
        """How many periods of `rule` keep a backup (None: the rule is not used)."""
        counts = {
            "hourly": self.hourly,
            "daily": self.daily,
            "weekly": self.weekly,
            "monthly": self.monthly,
            "yearly": self.yearly,
        }
        return counts[rule]

    def validate(self) -> None:
        """Refuse a policy that sets no rule for complete backups."""
        if self.keep_last is None and all(self.periods(rule) is None for rule in PERIOD_RULES):
            raise InvalidInput(
                "the retention policy sets no rule for complete backups: set at least one of "
                "keep-last, hourly, daily, weekly, monthly, yearly (keep-failed alone says nothing of them)"
            )

    def describe(self) -> str:
        """`keep-last 2, daily 7, keep-failed 1`: the rules that are set."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                parts.append(f"{f.name.replace('_', '-')} {value}")
        return ", ".join(parts)


@dataclass(frozen=True)
class RetentionItem:
    """One backup as retention sees it."""

    name: str
    #: when it completed (a complete backup: required, time-zone aware); for the others the
    #: best known time of their last write, or None
    time: datetime | None
    state: ItemState
    #: why it must be kept whatever the rules say (a restore reads it; a lock's holder),
    #: shown with its reasons
    hold: str | None = None


#: rules whose detail is words, not a period or a rank
_WORDY = frozenset({"in-progress", "unknown", "held"})


@dataclass(frozen=True)
class KeepReason:
    rule: Rule
    #: the period (`2026-12-04`, `2026-W49`), the rank (`1/2`), or words
    detail: str = ""

    def __str__(self) -> str:
        if not self.detail:
            return self.rule
        return f"{self.rule}: {self.detail}" if self.rule in _WORDY else f"{self.rule} {self.detail}"


@dataclass(frozen=True)
class Decision:
    item: RetentionItem
    keep: bool
    #: why it is kept (empty when it is deleted)
    reasons: tuple[KeepReason, ...]
    #: one line: the reasons, or why nothing keeps it
    why: str

    @property
    def name(self) -> str:
        return self.item.name

    @property
    def action(self) -> Literal["keep", "delete"]:
        return "keep" if self.keep else "delete"


def time_zone(name: str) -> ZoneInfo:
    """An IANA time zone (`Europe/Paris`, `UTC`), or InvalidInput naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}: give an IANA name such as UTC or Europe/Paris "
            "(without the system's zoneinfo files, install the tzdata package)"
        ) from None


def _period_key(rule: PeriodRule, local: datetime) -> str:
    if rule == "hourly":
        # with the offset: the two 02:00 hours of a night when clocks go back are two periods
        return local.strftime("%Y-%m-%dT%H:00%z")
    if rule == "daily":
        return local.strftime("%Y-%m-%d")
    if rule == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if rule == "monthly":
        return local.strftime("%Y-%m")
    return local.strftime("%Y")


_MIN = datetime.min.replace(tzinfo=UTC)


def _newest_first(items: Sequence[RetentionItem]) -> list[RetentionItem]:
    return sorted(items, key=lambda i: (i.time is not None, i.time or _MIN, i.name), reverse=True)


def _check(items: Sequence[RetentionItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise InvalidInput(f"retention: the backup {item.name!r} is listed twice")
        seen.add(item.name)
        if item.time is not None and item.time.utcoffset() is None:
            raise InvalidInput(f"retention: the time of {item.name!r} has no time zone")
        if item.state == "complete" and item.time is None:
            raise InvalidInput(f"retention: the complete backup {item.name!r} has no completion time")


def apply_retention(
    items: Sequence[RetentionItem], policy: RetentionPolicy, tz: tzinfo = UTC
) -> list[Decision]:
    """Keep or delete each item, with its reasons; newest first. Pure: the same input gives
    the same answer, whatever its order. Raises InvalidInput for a policy with no rule for
    complete backups, a name listed twice, a naive time or a complete backup without one."""
    policy.validate()
    _check(items)
    ordered = _newest_first(items)
    reasons: dict[str, list[KeepReason]] = {i.name: [] for i in ordered}

    complete = [i for i in ordered if i.state == "complete"]
    if policy.keep_last is not None:
        for rank, item in enumerate(complete[: policy.keep_last], start=1):
            reasons[item.name].append(KeepReason("last", f"{rank}/{policy.keep_last}"))
    for period in PERIOD_RULES:
        count = policy.periods(period)
        if not count:
            continue
        seen: set[str] = set()
        for item in complete:
            assert item.time is not None
            key = _period_key(period, item.time.astimezone(tz))
            if key in seen:
                continue  # a newer backup of this period is the one kept
            seen.add(key)
            reasons[item.name].append(KeepReason(period, key))
            if len(seen) == count:
                break
    if complete and not reasons[complete[0].name]:
        reasons[complete[0].name].append(KeepReason("newest-complete", "(always kept)"))

    failed = [i for i in ordered if i.state in ("failed", "incomplete")]
    if policy.keep_failed is None:
        for item in failed:
            reasons[item.name].append(KeepReason("failed", "(keep-failed not set)"))
    else:
        for rank, item in enumerate(failed[: policy.keep_failed], start=1):
            reasons[item.name].append(KeepReason("failed", f"{rank}/{policy.keep_failed}"))

    for item in ordered:
        if item.state in ("in_progress", "unknown"):
            always: Rule = "in-progress" if item.state == "in_progress" else "unknown"
            reasons[item.name].insert(0, KeepReason(always, item.hold or ""))
        elif item.hold is not None:
            reasons[item.name].append(KeepReason("held", item.hold))

    return [_decision(item, tuple(reasons[item.name]), policy) for item in ordered]


def _decision(item: RetentionItem, reasons: tuple[KeepReason, ...], policy: RetentionPolicy) -> Decision:
    if reasons:
        return Decision(item, True, reasons, ", ".join(map(str, reasons)))
    if item.state == "complete":
        why = f"no rule keeps it ({policy.describe()})"
    else:
        why = f"{item.state}, beyond keep-failed {policy.keep_failed}"
    return Decision(item, False, (), why)


#: for callers that show what a rule means
RULE_HELP: dict[str, str] = {
    "keep_last": "the N newest complete backups",
    "hourly": "the newest complete backup of each of the N newest hours that have one",
    "daily": "the newest complete backup of each of the N newest days that have one",
    "weekly": "the newest complete backup of each of the N newest ISO weeks that have one",
    "monthly": "the newest complete backup of each of the N newest months that have one",
    "yearly": "the newest complete backup of each of the N newest years that have one",
    "keep_failed": "the N newest failed or incomplete backups (unset: none is deleted)",
}
