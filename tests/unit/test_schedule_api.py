"""The MongoBackupSchedule spec: defaults, the reused MongoBackup spec, and one-line errors
that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from mongo_backup.api import MongoBackupScheduleSpec, MongoBackupSpec, SpecError, parse_spec

TEMPLATE = {
    "mongodb": {"uriSecretRef": {"name": "mongo", "key": "uri"}},
    "storage": {"filesystem": {"path": "/backups"}},
}


def body(**spec: Any) -> dict[str, Any]:
    return {"spec": {"schedule": "@daily", "backupTemplate": TEMPLATE, **spec}}


def test_defaults_and_the_template_is_a_mongobackup_spec() -> None:
    spec = parse_spec(MongoBackupScheduleSpec, body())
    assert spec.time_zone == "UTC" and spec.concurrency_policy == "Forbid"
    assert not spec.suspend and not spec.immediate and spec.starting_deadline_seconds is None
    assert spec.retention is None
    assert type(spec.backup_template) is MongoBackupSpec
    assert spec.backup_template.deletion_policy == "Retain"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": "0 25 * * *"}, "spec.schedule: invalid cron expression '0 25 * * *'"),
        ({"schedule": "daily"}, "spec.schedule: cron expression 'daily' must have 5 fields"),
        ({"timeZone": "Europe/Nowhere"}, "spec.timeZone: unknown time zone 'Europe/Nowhere'"),
        (
            {"concurrencyPolicy": "Queue"},
            "spec.concurrencyPolicy: input should be 'Forbid', 'Replace' or 'Allow'",
        ),
        ({"retention": {"keepFailed": 2}}, "spec.retention: set at least one of keepLast"),
        ({"retention": {"daily": -1}}, "spec.retention.daily: input should be greater than or equal to 0"),
        ({"backupTemplate": {**TEMPLATE, "storage": {}}}, "spec.backupTemplate.storage: exactly one storage"),
        ({"startingDeadlineSeconds": -5}, "spec.startingDeadlineSeconds: input should be greater than"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(MongoBackupScheduleSpec, body(**spec))
    assert message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_drill_names_its_deployment_and_prefix_and_refuses_a_bad_one() -> None:
    scratch = {"uriSecretRef": {"name": "scratch", "key": "uri"}}
    spec = parse_spec(MongoBackupScheduleSpec, body(drill={"mongodb": scratch}))
    assert spec.drill is not None and spec.drill.database_prefix == "drill_" and spec.drill.schedule is None
    with pytest.raises(SpecError, match=r"spec\.drill\.databasePrefix"):
        parse_spec(MongoBackupScheduleSpec, body(drill={"mongodb": scratch, "databasePrefix": "a.b"}))
    with pytest.raises(SpecError, match=r"spec\.drill\.schedule: .*invalid cron expression"):
        parse_spec(MongoBackupScheduleSpec, body(drill={"mongodb": scratch, "schedule": "0 99 * * *"}))
