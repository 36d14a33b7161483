"""The one status writer: each patch is what the kind's status model declares, every text in
it and in its Event is masked, and each phase change says what a user needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from mongo_backup.api import MongoBackupStatus, MongoRestoreStatus
from mongo_backup.redact import register_secret
from mongo_backup.runner import Failure, Outcome
from mongo_backup.runner.cluster import EventType
from mongo_backup.runner.status import StatusWriter


class RecordingLink:
    """The runner's `ObjectLink` (our own interface to the cluster), keeping what it is sent."""

    namespace = "default"
    name = "nightly"

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[EventType, str, str]] = []

    async def patch_status(self, patch: Mapping[str, Any]) -> None:
        self.patches.append(dict(patch))

    def post_event(self, type: EventType, reason: str, message: str) -> None:
        self.events.append((type, reason, message))

    async def read_secret_key(self, name: str, key: str) -> str:
        raise AssertionError("the writer reads nothing")

    async def read_secret(self, name: str) -> dict[str, str]:
        raise AssertionError("the writer reads nothing")

    async def read_backup(self, name: str) -> Mapping[str, Any] | None:
        raise AssertionError("the writer reads nothing")


def writer_for(link: RecordingLink, model: type[Any] = MongoBackupStatus) -> StatusWriter:
    return StatusWriter(link, model, "backup", {}, generation=3)


def conditions(patch: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in patch["conditions"]}


async def test_running_clears_the_last_error_and_progress_and_says_started() -> None:
    link = RecordingLink()
    await writer_for(link).mark_running(2, resumed=True)
    (patch,) = link.patches
    assert patch["phase"] == "Running" and patch["attempts"] == 2 and patch["observedGeneration"] == 3
    assert patch["error"] is None and patch["progress"] is None  # null erases in a merge patch
    assert conditions(patch) == {"Ready": ("True", "InputsResolved"), "Running": ("True", "Attempt")}
    assert link.events == [("Normal", "Started", "backup started (attempt 2, taking up a lost attempt)")]


async def test_a_field_the_crd_does_not_declare_is_never_written(caplog: pytest.LogCaptureFixture) -> None:
    link = RecordingLink()
    outcome = Outcome(status={"documents": 5, "checksum": "ab" * 32, "notAField": 1}, event_message="done")
    await writer_for(link).mark_completed(outcome, elapsed=1.5)
    (patch,) = link.patches
    assert "notAField" not in patch and patch["documents"] == 5 and patch["phase"] == "Completed"
    assert patch["error"] is None and patch["duration"] == "1.5s"
    assert conditions(patch)["Completed"] == ("True", "Completed")
    assert "notAField" in caplog.text  # a bug of ours: logged, not sent
    assert link.events == [("Normal", "Completed", "done")]


async def test_a_value_of_the_wrong_type_is_refused_before_it_is_sent() -> None:
    link = RecordingLink()
    with pytest.raises(ValidationError):
        await writer_for(link).progress({"progress": {"documentsDone": "many"}})
    assert link.patches == []


async def test_progress_sends_the_whole_progress_object() -> None:
    link = RecordingLink()
    progress = {"percent": 10.0, "documentsDone": 1, "eta": None, "current": ["db.c"]}
    await writer_for(link, MongoRestoreStatus).progress(
        {"progress": progress, "restoredCollections": ["db.a"]}
    )
    (patch,) = link.patches
    assert "conditions" not in patch  # progress leaves the conditions alone
    assert patch["progress"]["eta"] is None  # an ETA no longer known is erased, not kept
    assert patch["progress"]["documentsDone"] == 1 and patch["restoredCollections"] == ["db.a"]


async def test_every_text_of_a_failure_is_masked() -> None:
    register_secret("Wr1tt3nNowhere")
    link = RecordingLink()
    failure = Failure("InvalidURI", "invalid MongoDB URI 'mongodb://u:Wr1tt3nNowhere@h:x/'")
    await writer_for(link).mark_failed(failure, elapsed=None)
    (patch,) = link.patches
    assert "Wr1tt3nNowhere" not in str(patch) and "Wr1tt3nNowhere" not in str(link.events)
    assert patch["phase"] == "Failed" and "duration" not in patch  # no attempt ran
    assert "u:***@h:x" in patch["error"]
    assert conditions(patch)["Failed"] == ("True", "InvalidURI")
    assert link.events[0][:2] == ("Warning", "Failed")


async def test_a_finished_run_that_failed_verification_keeps_its_figures() -> None:
    link = RecordingLink()
    outcome = Outcome(
        status={"documents": 9, "verification": {"checked": 2, "verified": 1, "mismatches": ["db.b"]}},
        event_message="restore completed",
        conditions=[("Verified", "False", "Mismatch", "differs in db.b")],
        failure=Failure("VerificationFailed", "restored data differs from the backup in db.b"),
    )
    await writer_for(link, MongoRestoreStatus).mark_completed(outcome, elapsed=12)
    (patch,) = link.patches
    assert patch["phase"] == "Failed" and patch["verification"]["mismatches"] == ["db.b"]
    assert conditions(patch)["Verified"] == ("False", "Mismatch")
    assert conditions(patch)["Failed"] == ("True", "VerificationFailed")
    assert patch["duration"] == "12s"


async def test_waiting_and_queued_are_pending_with_the_reason() -> None:
    link = RecordingLink()
    writer = writer_for(link)
    await writer.mark_pending("SecretNotFound", "Secret default/mongo does not exist")
    await writer.mark_pending("Queued", "waiting for one of 2 run slots", warn=False)
    waiting, queued = link.patches
    assert waiting["phase"] == "Pending" and waiting["error"] == "Secret default/mongo does not exist"
    assert conditions(queued)["Ready"] == ("False", "Queued") and "error" not in queued
    assert link.events == [("Warning", "SecretNotFound", "Secret default/mongo does not exist")]
