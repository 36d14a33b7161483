"""GFS retention (engine/retention.py): exactly which backups each policy keeps, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mongo_backup.engine.errors import InvalidInput
from mongo_backup.engine.retention import (
    Decision,
    ItemState,
    RetentionItem,
    RetentionPolicy,
    apply_retention,
    time_zone,
)

PARIS = time_zone("Europe/Paris")


def at(text: str) -> datetime:
    """`2026-03-29 21:30` in UTC."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def complete(name: str, when: str) -> RetentionItem:
    return RetentionItem(name, at(when), "complete")


def kept(decisions: list[Decision]) -> list[str]:
    return [d.name for d in decisions if d.keep]


def deleted(decisions: list[Decision]) -> list[str]:
    return [d.name for d in decisions if not d.keep]


def reasons(decisions: list[Decision], name: str) -> list[str]:
    return [str(r) for d in decisions if d.name == name for r in d.reasons]


def daily_backups(first: datetime, days: int) -> list[RetentionItem]:
    """One complete backup a day at `first`'s time, named by its UTC date."""
    return [
        RetentionItem(f"{(first + timedelta(days=n)):%Y-%m-%d}", first + timedelta(days=n), "complete")
        for n in range(days)
    ]


# --- a year of daily backups -----------------------------------------------------------------

YEAR = daily_backups(datetime(2026, 1, 1, 2, 0, tzinfo=UTC), 365)
GFS = RetentionPolicy(daily=7, weekly=4, monthly=12)
#: 2026-12-31 is the Thursday of ISO week 2026-W53; the Sundays end W52, W51, W50
YEAR_KEPT = {
    # daily 7
    "2026-12-25", "2026-12-26", "2026-12-27", "2026-12-28", "2026-12-29", "2026-12-30", "2026-12-31",
    # weekly 4: W53 (12-31, already kept), W52 (12-27, already kept), W51, W50
    "2026-12-20", "2026-12-13",
    # monthly 12: the last day of each month (12-31 already kept)
    "2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30",
    "2026-07-31", "2026-08-31", "2026-09-30", "2026-10-31", "2026-11-30",
}  # fmt: skip


def test_a_year_of_daily_backups_keeps_exactly_the_gfs_set() -> None:
    decisions = apply_retention(YEAR, GFS)
    assert set(kept(decisions)) == YEAR_KEPT and len(YEAR_KEPT) == 20
    assert len(deleted(decisions)) == 365 - 20
    assert reasons(decisions, "2026-12-31") == ["daily 2026-12-31", "weekly 2026-W53", "monthly 2026-12"]
    assert reasons(decisions, "2026-12-27") == ["daily 2026-12-27", "weekly 2026-W52"]
    assert reasons(decisions, "2026-12-13") == ["weekly 2026-W50"]
    assert reasons(decisions, "2026-01-31") == ["monthly 2026-01"]
    dropped = next(d for d in decisions if d.name == "2026-12-24")
    assert dropped.action == "delete" and dropped.reasons == ()
    assert dropped.why == "no rule keeps it (daily 7, weekly 4, monthly 12)"


def test_pruning_after_every_backup_keeps_the_same_set_as_pruning_once() -> None:
    """What a schedule does: apply the policy after each new backup, delete what falls out."""
    remaining: list[RetentionItem] = []
    for item in YEAR:
        remaining = [d.item for d in apply_retention([*remaining, item], GFS) if d.keep]
    assert {i.name for i in remaining} == YEAR_KEPT


def test_decisions_are_newest_first_whatever_the_input_order() -> None:
    forward = apply_retention(YEAR, GFS)
    assert [d.name for d in forward] == sorted((i.name for i in YEAR), reverse=True)
    assert apply_retention(list(reversed(YEAR)), GFS) == forward


# --- the rules one by one, table-driven ------------------------------------------------------

FIVE = [complete(f"b{n}", f"2026-05-0{n} 03:00") for n in range(1, 6)]

CASES: list[tuple[str, list[RetentionItem], RetentionPolicy, list[str]]] = [
    ("keep-last 2", FIVE, RetentionPolicy(keep_last=2), ["b5", "b4"]),
    ("keep-last larger than what exists", FIVE, RetentionPolicy(keep_last=9), ["b5", "b4", "b3", "b2", "b1"]),
    ("daily 3", FIVE, RetentionPolicy(daily=3), ["b5", "b4", "b3"]),
    ("keep-last and daily add up", FIVE, RetentionPolicy(keep_last=1, daily=2), ["b5", "b4"]),
    (
        "days without a backup are skipped, not counted",
        [
            complete("d1", "2026-05-01 03:00"),
            complete("d5", "2026-05-05 03:00"),
            complete("d9", "2026-05-09 03:00"),
        ],
        RetentionPolicy(daily=2),
        ["d9", "d5"],
    ),
    (
        "the newest of each day",
        [
            complete("a-early", "2026-05-01 01:00"),
            complete("a-late", "2026-05-01 23:00"),
            complete("b-early", "2026-05-02 01:00"),
            complete("b-late", "2026-05-02 22:00"),
        ],
        RetentionPolicy(daily=5),
        ["b-late", "a-late"],
    ),
    (
        "hourly",
        [complete(f"h{m:02d}", f"2026-05-01 10:{m:02d}") for m in (5, 35)]
        + [complete(f"i{m:02d}", f"2026-05-01 11:{m:02d}") for m in (5, 35)],
        RetentionPolicy(hourly=2),
        ["i35", "h35"],
    ),
    (
        "yearly over three years",
        [complete(f"y{y}-{m}", f"{y}-{m:02d}-15 00:00") for y in (2024, 2025, 2026) for m in (3, 9)],
        RetentionPolicy(yearly=2),
        ["y2026-9", "y2025-9"],
    ),
    (
        "weekly: a Sunday closes its ISO week, the Monday opens the next",
        [
            complete("sat", "2026-05-02 12:00"),
            complete("sun", "2026-05-03 12:00"),
            complete("mon", "2026-05-04 12:00"),
        ],
        RetentionPolicy(weekly=2),
        ["mon", "sun"],
    ),
    (
        "a rule set to 0 keeps nothing, the others still apply",
        FIVE,
        RetentionPolicy(keep_last=1, weekly=0),
        ["b5"],
    ),
]


@pytest.mark.parametrize(("items", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rules(items: list[RetentionItem], policy: RetentionPolicy, expected: list[str]) -> None:
    assert kept(apply_retention(items, policy)) == expected


def test_failed_backups_never_push_a_complete_one_out() -> None:
    items = [
        complete("good", "2026-05-01 03:00"),
        *[RetentionItem(f"bad{n}", at(f"2026-05-0{n} 03:00"), "failed") for n in range(2, 6)],
    ]
    decisions = apply_retention(items, RetentionPolicy(keep_last=1, daily=1, keep_failed=1))
    assert kept(decisions) == ["bad5", "good"]
    assert reasons(decisions, "good") == ["last 1/1", "daily 2026-05-01"]
    assert reasons(decisions, "bad5") == ["failed 1/1"]
    assert next(d for d in decisions if d.name == "bad4").why == "failed, beyond keep-failed 1"


@pytest.mark.parametrize(
    ("keep_failed", "expected"),
    [
        (None, ["ok", "f3", "i2", "f1"]),  # unset: failed and incomplete ones are left alone
        (0, ["ok"]),
        (2, ["ok", "f3", "i2"]),  # failed and incomplete count together, newest first
    ],
)
def test_keep_failed(keep_failed: int | None, expected: list[str]) -> None:
    items = [
        RetentionItem("f1", at("2026-05-01 03:00"), "failed"),
        RetentionItem("i2", at("2026-05-02 03:00"), "incomplete"),
        RetentionItem("f3", at("2026-05-03 03:00"), "failed"),
        complete("ok", "2026-05-04 03:00"),
    ]
    decisions = apply_retention(items, RetentionPolicy(keep_last=1, keep_failed=keep_failed))
    assert kept(decisions) == expected
    if keep_failed is None:
        assert reasons(decisions, "f1") == ["failed (keep-failed not set)"]


def test_an_incomplete_backup_without_a_time_is_the_oldest() -> None:
    items = [
        RetentionItem("unknown-time", None, "incomplete"),
        RetentionItem("f", at("2026-05-01 03:00"), "failed"),
        complete("ok", "2026-05-02 03:00"),
    ]
    decisions = apply_retention(items, RetentionPolicy(keep_last=1, keep_failed=1))
    assert [d.name for d in decisions] == ["ok", "f", "unknown-time"]
    assert deleted(decisions) == ["unknown-time"]


@pytest.mark.parametrize(
    ("items", "expected_reason"),
    [
        ([complete("only", "2026-05-01 03:00")], "newest-complete (always kept)"),
        (
            [
                complete("old", "2026-04-01 03:00"),
                complete("new", "2026-05-01 03:00"),
                RetentionItem("newer-failure", at("2026-05-02 03:00"), "failed"),
            ],
            "newest-complete (always kept)",
        ),
    ],
    ids=["the only complete backup", "the newest of several, failures after it"],
)
def test_the_newest_complete_backup_is_never_deleted(
    items: list[RetentionItem], expected_reason: str
) -> None:
    decisions = apply_retention(items, RetentionPolicy(keep_last=0, daily=0, keep_failed=0))
    complete_kept = [d for d in decisions if d.keep and d.item.state == "complete"]
    assert len(complete_kept) == 1 and complete_kept[0].item.time == max(
        i.time for i in items if i.state == "complete" and i.time is not None
    )
    assert [str(r) for r in complete_kept[0].reasons] == [expected_reason]
    assert not any(d.keep for d in decisions if d.item.state != "complete")


def test_the_safety_rule_is_silent_when_a_rule_keeps_the_newest() -> None:
    decisions = apply_retention(FIVE, RetentionPolicy(keep_last=1))
    assert reasons(decisions, "b5") == ["last 1/1"]


@pytest.mark.parametrize("state", ["in_progress", "unknown"])
def test_in_progress_and_unknown_are_always_kept_and_count_for_nothing(state: ItemState) -> None:
    items = [
        RetentionItem("live", at("2026-05-06 03:00"), state, hold="held by backup run r1"),
        RetentionItem("f", at("2026-05-05 03:00"), "failed"),
        *FIVE,
    ]
    decisions = apply_retention(items, RetentionPolicy(keep_last=1, keep_failed=1))
    assert kept(decisions) == ["live", "f", "b5"]  # `live` took neither the failed nor the last slot
    rule = "in-progress" if state == "in_progress" else "unknown"
    assert reasons(decisions, "live") == [f"{rule}: held by backup run r1"]


def test_a_held_backup_is_kept_and_still_takes_its_slot() -> None:
    """The schedule's in-use rule: a backup a restore reads is never deleted."""
    oldest_held = [RetentionItem("b1", FIVE[0].time, "complete", hold="read by restore x"), *FIVE[1:]]
    decisions = apply_retention(oldest_held, RetentionPolicy(keep_last=2))
    assert kept(decisions) == ["b5", "b4", "b1"]
    assert reasons(decisions, "b1") == ["held: read by restore x"]
    newest_held = [*FIVE[:-1], RetentionItem("b5", FIVE[-1].time, "complete", hold="read by restore y")]
    decisions = apply_retention(newest_held, RetentionPolicy(keep_last=2))
    assert kept(decisions) == ["b5", "b4"]
    assert reasons(decisions, "b5") == ["last 1/2", "held: read by restore y"]


def test_ties_are_broken_by_name_whatever_the_order() -> None:
    items = [complete("nightly-a", "2026-05-01 03:00"), complete("nightly-b", "2026-05-01 03:00")]
    for order in (items, items[::-1]):
        decisions = apply_retention(order, RetentionPolicy(keep_last=1))
        assert kept(decisions) == ["nightly-b"] and deleted(decisions) == ["nightly-a"]
        decisions = apply_retention(order, RetentionPolicy(daily=1))
        assert kept(decisions) == ["nightly-b"]


# --- time zones ------------------------------------------------------------------------------


def test_days_are_the_time_zones_days_across_the_spring_dst_change() -> None:
    """Two backups a day, 21:30 and 22:30 UTC. Paris is UTC+1 until 2026-03-29 01:00 UTC, then
    UTC+2: from then on, the 22:30 UTC backup falls on the next local day (00:30)."""
    items = [complete(f"{d}-{h}", f"2026-03-{d} {h}:30") for d in range(26, 32) for h in (21, 22)]
    in_utc = apply_retention(items, RetentionPolicy(daily=4))
    assert kept(in_utc) == ["31-22", "30-22", "29-22", "28-22"]
    in_paris = apply_retention(items, RetentionPolicy(daily=4), PARIS)
    # local days: 04-01 (31-22 at 00:30), 03-31 (31-21 at 23:30), 03-30 (30-21), 03-29 (29-21)
    assert kept(in_paris) == ["31-22", "31-21", "30-21", "29-21"]
    assert reasons(in_paris, "31-22") == ["daily 2026-04-01"]
    assert reasons(in_paris, "29-21") == ["daily 2026-03-29"]


def test_when_clocks_go_back_the_two_local_2am_hours_are_two_periods() -> None:
    """2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET at 01:00 UTC, so 02:00-03:00 local
    happens twice: at 00:xx UTC (+02:00) and at 01:xx UTC (+01:00)."""
    items = [
        complete("before", "2026-10-24 23:40"),  # 01:40 +02:00
        complete("first-2am-a", "2026-10-25 00:10"),  # 02:10 +02:00
        complete("first-2am-b", "2026-10-25 00:40"),  # 02:40 +02:00
        complete("second-2am-a", "2026-10-25 01:10"),  # 02:10 +01:00
        complete("second-2am-b", "2026-10-25 01:40"),  # 02:40 +01:00
    ]
    decisions = apply_retention(items, RetentionPolicy(hourly=2), PARIS)
    assert kept(decisions) == ["second-2am-b", "first-2am-b"]
    assert reasons(decisions, "second-2am-b") == ["hourly 2026-10-25T02:00+0100"]
    assert reasons(decisions, "first-2am-b") == ["hourly 2026-10-25T02:00+0200"]
    # all five are on one local day (of 25 hours); in UTC, "before" is on the day before
    assert kept(apply_retention(items, RetentionPolicy(daily=2), PARIS)) == ["second-2am-b"]
    assert kept(apply_retention(items, RetentionPolicy(daily=2))) == ["second-2am-b", "before"]


def test_months_and_weeks_follow_the_time_zone() -> None:
    items = [
        complete("jan-utc", "2026-01-31 23:30"),  # 2026-02-01 00:30 in Paris, a Sunday
        complete("jan", "2026-01-31 12:00"),
    ]
    assert kept(apply_retention(items, RetentionPolicy(monthly=1))) == ["jan-utc"]
    in_paris = apply_retention(items, RetentionPolicy(monthly=2), PARIS)
    assert reasons(in_paris, "jan-utc") == ["monthly 2026-02"]
    assert reasons(in_paris, "jan") == ["monthly 2026-01"]
    sunday_night = [complete("sun", "2026-05-03 22:30"), complete("sat", "2026-05-02 12:00")]
    # 2026-05-03 22:30 UTC is Monday 00:30 in Paris: week 19, not week 18
    assert reasons(apply_retention(sunday_night, RetentionPolicy(weekly=2), PARIS), "sun") == [
        "weekly 2026-W19"
    ]
    assert reasons(apply_retention(sunday_night, RetentionPolicy(weekly=2)), "sun") == ["weekly 2026-W18"]


# --- what is refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [RetentionPolicy(), RetentionPolicy(keep_failed=3)],
    ids=["no rule at all", "only keep-failed"],
)
def test_a_policy_without_a_rule_for_complete_backups_is_refused(policy: RetentionPolicy) -> None:
    with pytest.raises(InvalidInput, match="sets no rule for complete backups"):
        apply_retention(FIVE, policy)


@pytest.mark.parametrize("value", [-1, True, 1.5, "2"])
def test_counts_are_whole_numbers_from_zero(value: object) -> None:
    with pytest.raises(InvalidInput, match="retention daily: must be a whole number >= 0"):
        RetentionPolicy(daily=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([complete("a", "2026-05-01 03:00"), complete("a", "2026-05-02 03:00")], "listed twice"),
        ([RetentionItem("a", datetime(2026, 5, 1), "complete")], "has no time zone"),
        ([RetentionItem("a", None, "complete")], "has no completion time"),
    ],
)
def test_bad_items_are_refused(items: list[RetentionItem], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        apply_retention(items, RetentionPolicy(keep_last=1))


def test_unknown_time_zone() -> None:
    with pytest.raises(InvalidInput, match="unknown time zone 'Mars/Olympus'"):
        time_zone("Mars/Olympus")


def test_no_backups_nothing_to_decide() -> None:
    assert apply_retention([], RetentionPolicy(keep_last=1)) == []


def test_policy_describes_its_rules() -> None:
    assert (
        RetentionPolicy(keep_last=2, daily=7, keep_failed=0).describe()
        == "keep-last 2, daily 7, keep-failed 0"
    )
