"""The metrics module against its own registry, read back through a real scrape (the text
format, and once over HTTP): what a Prometheus server would see after each step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mongo_backup.metrics import Metrics
from tests.support.scrape import Scrape, scrape_url


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> Metrics:
    return Metrics(clock=clock)


def scrape(metrics: Metrics) -> Scrape:
    return Scrape(metrics.scrape().decode())


OBJ = {"namespace": "prod", "name": "nightly-1", "kind": "backup"}


def test_a_completed_backup_sets_its_series(metrics: Metrics, clock: Clock) -> None:
    run = metrics.run("backup", "prod", "nightly-1", "nightly")
    run.started()
    assert scrape(metrics).value("mongobackup_runs_in_progress", **OBJ) == 1
    clock.now = 1_000_042.0
    run.succeeded(41.5, stored_bytes=12345, documents=678)
    s = scrape(metrics)
    assert s.value("mongobackup_runs_in_progress", **OBJ) == 0
    assert s.value("mongobackup_last_success_timestamp_seconds", **OBJ, schedule="nightly") == 1_000_042.0
    assert s.value("mongobackup_duration_seconds", **OBJ) == 41.5
    assert s.value("mongobackup_stored_bytes", **OBJ) == 12345
    assert s.value("mongobackup_documents", **OBJ) == 678
    assert s.value("mongobackup_runs_total", **OBJ, result="succeeded") == 1
    assert s.value("mongobackup_runs_total", **OBJ, result="failed") is None
    assert s.value("mongobackup_last_failure_timestamp_seconds", **OBJ) is None
    sched = {"namespace": "prod", "schedule": "nightly"}
    assert s.value("mongobackup_schedule_last_success_timestamp_seconds", **sched) == 1_000_042.0
    assert s.value("mongobackup_schedule_consecutive_failures", **sched) == 0


def test_a_cancelled_run_is_counted_as_such_and_is_neither_a_success_nor_a_failure(metrics: Metrics) -> None:
    run = metrics.run("backup", "prod", "nightly-1", "nightly")
    run.started()
    run.cancelled(2.5)
    s = scrape(metrics)
    assert s.value("mongobackup_runs_in_progress", **OBJ) == 0
    assert s.value("mongobackup_runs_total", **OBJ, result="cancelled") == 1
    assert s.value("mongobackup_runs_total", **OBJ, result="failed") is None
    assert s.value("mongobackup_last_failure_timestamp_seconds", **OBJ) is None
    assert s.value("mongobackup_last_success_timestamp_seconds", **OBJ) is None
    sched = {"namespace": "prod", "schedule": "nightly"}
    assert s.value("mongobackup_schedule_last_failure_timestamp_seconds", **sched) is None
    metrics.forget_run("backup", "prod", "nightly-1")
    assert scrape(metrics).value("mongobackup_runs_total", **OBJ, result="cancelled") is None


def test_a_hand_made_backup_has_an_empty_schedule_label_and_no_schedule_series(metrics: Metrics) -> None:
    metrics.run("backup", "prod", "manual", None).failed(3.0)
    s = scrape(metrics)
    assert s.value("mongobackup_runs_total", name="manual", schedule="", result="failed") == 1
    assert s.value("mongobackup_last_failure_timestamp_seconds", name="manual") is not None
    assert not any(name.startswith("mongobackup_schedule_") for name in s.names_with(namespace="prod"))


def test_consecutive_failures_count_since_the_last_success(metrics: Metrics, clock: Clock) -> None:
    sched = {"namespace": "prod", "schedule": "nightly"}
    for i in range(3):
        clock.now += 60
        metrics.run("backup", "prod", f"nightly-{i}", "nightly").failed(1.0)
    s = scrape(metrics)
    assert s.value("mongobackup_schedule_consecutive_failures", **sched) == 3
    assert s.value("mongobackup_schedule_last_failure_timestamp_seconds", **sched) == clock.now
    assert s.value("mongobackup_schedule_last_success_timestamp_seconds", **sched) is None
    clock.now += 60
    metrics.run("backup", "prod", "nightly-3", "nightly").succeeded(1.0, 10, 1)
    assert scrape(metrics).value("mongobackup_schedule_consecutive_failures", **sched) == 0
    clock.now += 60
    metrics.run("backup", "prod", "nightly-4", "nightly").failed(1.0)
    assert scrape(metrics).value("mongobackup_schedule_consecutive_failures", **sched) == 1


def test_statuses_read_at_startup_in_any_order_give_the_same_schedule_series(metrics: Metrics) -> None:
    """Seeding (count=False) does not count runs; an older failure read after a newer success
    is not a failure in a row, and the same object read twice counts once."""
    sched = {"namespace": "prod", "schedule": "nightly"}
    metrics.run("backup", "prod", "b3", "nightly").failed(None, at=300, count=False)
    metrics.run("backup", "prod", "b2", "nightly").succeeded(None, 5, 5, at=200, count=False)
    metrics.run("backup", "prod", "b1", "nightly").failed(None, at=100, count=False)
    metrics.run("backup", "prod", "b3", "nightly").failed(None, at=300, count=False)
    s = scrape(metrics)
    assert s.value("mongobackup_schedule_consecutive_failures", **sched) == 1
    assert s.value("mongobackup_schedule_last_success_timestamp_seconds", **sched) == 200
    assert s.value("mongobackup_schedule_last_failure_timestamp_seconds", **sched) == 300
    assert s.value("mongobackup_runs_total", name="b3", result="failed") == 0


def test_a_failure_in_the_same_second_as_the_last_success_counts(metrics: Metrics) -> None:
    """Statuses read at startup say whole seconds: which came first is unknown, so the alert
    errs on the side of firing."""
    metrics.run("backup", "prod", "b2", "nightly").failed(None, at=100, count=False)
    metrics.run("backup", "prod", "b1", "nightly").succeeded(None, 5, 5, at=100, count=False)
    s = scrape(metrics)
    assert s.value("mongobackup_schedule_consecutive_failures", namespace="prod", schedule="nightly") == 1


def test_deleting_an_object_removes_its_series_and_keeps_the_schedules(metrics: Metrics) -> None:
    run = metrics.run("backup", "prod", "nightly-1", "nightly")
    run.started()
    run.succeeded(1.0, 10, 2)
    metrics.run("restore", "prod", "nightly-1", None).failed(2.0)  # same name, other kind
    metrics.forget_run("backup", "prod", "nightly-1")
    s = scrape(metrics)
    assert s.names_with(name="nightly-1", kind="backup") == set()
    assert s.value("mongobackup_runs_total", name="nightly-1", kind="restore", result="failed") == 1
    assert s.value("mongobackup_schedule_last_success_timestamp_seconds", schedule="nightly") is not None
    run.stopped()  # a run stopping after its object was forgotten creates no series again
    assert scrape(metrics).names_with(name="nightly-1", kind="backup") == set()


def test_schedule_helpers(metrics: Metrics, clock: Clock) -> None:
    sched = {"namespace": "prod", "schedule": "nightly"}
    metrics.observe_schedule("prod", "nightly", 86400, 1_050_000.0, suspended=False)
    metrics.record_retention_deletions("prod", "nightly", 2)
    metrics.record_retention_deletions("prod", "nightly", 1)
    metrics.record_drill("prod", "nightly", "nightly-1", succeeded=True, duration_seconds=12.5)
    s = scrape(metrics)
    assert s.value("mongobackup_schedule_interval_seconds", **sched) == 86400
    assert s.value("mongobackup_schedule_next_run_timestamp_seconds", **sched) == 1_050_000.0
    assert s.value("mongobackup_schedule_suspended", **sched) == 0
    assert s.value("mongobackup_retention_deletions_total", **sched) == 3
    assert s.value("mongobackup_drills_total", **sched, result="succeeded") == 1
    assert s.value("mongobackup_drill_last_succeeded", **sched) == 1
    assert s.value("mongobackup_drill_duration_seconds", **sched) == 12.5
    assert s.value("mongobackup_drill_last_timestamp_seconds", **sched) == clock.now
    assert s.value("mongobackup_drill_last_backup_info", **sched, backup="nightly-1") == 1

    metrics.observe_schedule("prod", "nightly", 3600, None, suspended=True)
    metrics.record_drill("prod", "nightly", "nightly-2", succeeded=False, duration_seconds=3.0)
    s = scrape(metrics)
    assert s.value("mongobackup_schedule_interval_seconds", **sched) == 3600
    assert s.value("mongobackup_schedule_next_run_timestamp_seconds", **sched) is None
    assert s.value("mongobackup_schedule_suspended", **sched) == 1
    assert s.value("mongobackup_drill_last_succeeded", **sched) == 0
    assert s.value("mongobackup_drills_total", **sched, result="failed") == 1
    # one info series: the backup drilled last
    assert s.all("mongobackup_drill_last_backup_info", **sched) == {
        (("backup", "nightly-2"), ("namespace", "prod"), ("schedule", "nightly")): 1.0
    }


def test_negative_retention_count_is_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="prod/nightly"):
        metrics.record_retention_deletions("prod", "nightly", -1)


def test_forgetting_a_schedule_removes_every_series_of_it(metrics: Metrics) -> None:
    metrics.observe_schedule("prod", "nightly", 86400, 1.0, suspended=False)
    metrics.record_retention_deletions("prod", "nightly", 1)
    metrics.record_drill("prod", "nightly", "nightly-1", succeeded=True, duration_seconds=1.0)
    metrics.run("backup", "prod", "nightly-1", "nightly").succeeded(1.0, 1, 1)
    metrics.observe_schedule("prod", "weekly", 604800, 1.0, suspended=False)
    metrics.forget_schedule("prod", "nightly")
    s = scrape(metrics)
    assert not any(
        n.startswith(("mongobackup_schedule_", "mongobackup_drill")) for n in s.names_with(schedule="nightly")
    )
    assert s.value("mongobackup_retention_deletions_total", schedule="nightly") is None
    assert s.value("mongobackup_schedule_interval_seconds", schedule="weekly") == 604800


def test_counters_have_no_created_series(metrics: Metrics) -> None:
    metrics.run("backup", "prod", "a", None).succeeded(1.0, 1, 1)
    metrics.record_retention_deletions("prod", "nightly", 1)
    metrics.record_drill("prod", "nightly", "a", succeeded=True, duration_seconds=1.0)
    assert not [name for name, _, _ in scrape(metrics).samples if name.endswith("_created")]


def test_two_metrics_objects_do_not_share_series(metrics: Metrics) -> None:
    other = Metrics()
    metrics.run("backup", "prod", "a", None).succeeded(1.0, 1, 1)
    assert scrape(other).names_with(name="a") == set()


@pytest.fixture
def served(metrics: Metrics) -> Iterator[str]:
    server = metrics.serve(0, "127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.port}/metrics"
    finally:
        server.stop()


def test_served_over_http(metrics: Metrics, served: str) -> None:
    metrics.run("restore", "prod", "r1", None).succeeded(2.0, 100, 7)
    s = scrape_url(served)
    assert s.value("mongobackup_documents", kind="restore", name="r1") == 7
    assert s.value("mongobackup_runs_total", kind="restore", name="r1", result="succeeded") == 1


def test_run_serves_metrics_on_9090_by_default_and_0_turns_them_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from mongo_backup.cli import build_parser

    monkeypatch.delenv("MONGO_BACKUP_METRICS_PORT", raising=False)
    assert build_parser().parse_args(["run"]).metrics_port == 9090
    assert build_parser().parse_args(["run", "--metrics-port", "0"]).metrics_port == 0
    monkeypatch.setenv("MONGO_BACKUP_METRICS_PORT", "9102")
    assert build_parser().parse_args(["run"]).metrics_port == 9102


@pytest.mark.parametrize("bad", ["-1", "65536", "http"])
def test_a_bad_metrics_port_is_a_one_line_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mongo_backup.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--metrics-port", bad])
    assert "--metrics-port" in capsys.readouterr().err
