"""The one writer of a run's status: phases, conditions, progress, the result, and the Event
that goes with each change. Nothing else patches a MongoBackup's or MongoRestore's status,
but for the Verified condition a schedule's restore drill sets on a Completed backup.

Every patch is built from the API's status models (`RunStatus` and the kind's own model, by
`api.status_patch`), so that a patch can never hold a field the CRD does not declare nor a
value of the wrong type; every text in it, and in every Event, is redacted.

The phases: Pending (waiting for an input or a slot, or before a retry; the Ready or Running
condition says why), Running (with progress), then Completed, Failed or Cancelled, which are
final.

The writer also records each step in the object's metrics series (when it is given one): the
final phase is decided here and nowhere else, with the very figures the status gets. A final
phase is recorded just before its patch, so whoever sees it in the status finds it in a scrape
too."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api import RunStatus, status_patch
from ..metrics import RunSeries
from ..redact import redact
from .cluster import EventType, ObjectLink
from .conditions import ConditionStatus, now_iso, set_condition
from .failures import Failure
from .units import human_duration

log = logging.getLogger(__name__)

#: longer texts are cut: a status is read by people and has a size limit
MAX_TEXT = 4096


@dataclass
class Outcome:
    """What a successful attempt writes: status fields (camelCase, validated against the
    kind's status model), extra conditions and the Completed event's message; `failure` turns
    a finished run into a Failed one (e.g. the verification found a difference)."""

    status: dict[str, Any]
    event_message: str
    conditions: list[tuple[str, ConditionStatus, str, str]] = field(default_factory=list)
    failure: Failure | None = None


class StatusWriter:
    """Writes the status of one object, for one run of it (`kind`: "backup" or "restore")."""

    def __init__(
        self,
        link: ObjectLink,
        model: type[RunStatus],
        kind: str,
        status: Mapping[str, Any],
        generation: int | None,
        series: RunSeries | None = None,
    ) -> None:
        self.link = link
        #: the object's metrics (None: not recorded)
        self.series = series
        self.model = model
        self.kind = kind
        self.generation = generation
        #: kept here: a merge patch replaces the whole list
        self.conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]
        #: the phase last written (or found): whoever cancels a run must not undo a final one
        self.phase: str | None = status.get("phase")
        #: when this process started the running attempt (monotonic clock)
        self.started: float | None = None

    async def mark_pending(self, reason: str, message: str, *, warn: bool = True) -> None:
        """Waiting for an input (a Secret, a MongoBackup) or, with `warn=False`, for a slot."""
        self._condition("Ready", "False", reason, message)
        fields: dict[str, Any] = {"phase": "Pending"}
        if warn:
            fields["error"] = message
            self._event("Warning", reason, message)
        await self._patch(fields)

    async def mark_retrying(self, failure: Failure, delay: float) -> None:
        """An attempt failed in a way a later one may not: Pending until the retry."""
        message = f"{failure.message}; retrying in {delay:g}s"
        self._condition("Running", "False", failure.reason, message)
        self._event("Warning", failure.reason, message)
        if self.series is not None:
            self.series.stopped()
        await self._patch({"phase": "Pending", "error": message})

    async def mark_attempt(self, attempt: int) -> None:
        """Job mode: attempt `attempt` is about to get its Job (its pod marks it Running), so
        that `attempts` counts it even when its pod dies before it starts."""
        if self.series is not None:
            self.series.started()
        await self._patch({"attempts": attempt})

    async def mark_running(self, attempt: int, *, resumed: bool = False) -> None:
        self.started = time.monotonic()
        self._condition("Ready", "True", "InputsResolved", "")
        self._condition("Running", "True", "Attempt", f"attempt {attempt} started")
        note = ", taking up a lost attempt" if resumed else ""
        self._event("Normal", "Started", f"{self.kind} started (attempt {attempt}{note})")
        if self.series is not None:
            self.series.started()
        await self._patch(
            {"phase": "Running", "attempts": attempt, "startedAt": _iso(datetime.now(UTC))},
            clear=["error", "progress"],
        )

    async def progress(self, fields: Mapping[str, Any]) -> None:
        """Live progress of the running attempt (and, for a restore, the namespaces already
        swapped in); the conditions are left alone. A nested object is sent whole: its
        unknown values (an ETA not known yet) are erased, not left from an earlier patch."""
        model = self._validated(fields)
        patch = status_patch(model)
        for name, value in patch.items():
            nested = getattr(model, _python_name(self.model, name))
            if isinstance(value, dict) and hasattr(nested, "model_dump"):
                patch[name] = nested.model_dump(mode="json", by_alias=True)
        await self.link.patch_status(_redacted(patch))

    async def mark_completed(self, outcome: Outcome, elapsed: float) -> None:
        if outcome.failure is not None:
            await self.mark_failed(outcome.failure, elapsed, outcome)
            return
        self._condition("Running", "False", "Finished", f"{self.kind} finished")
        self._condition("Failed", "False", "Completed", "")
        self._condition("Completed", "True", "Completed", outcome.event_message)
        self._outcome_conditions(outcome)
        self._event("Normal", "Completed", outcome.event_message)
        fields = self._outcome_fields(outcome)
        if self.series is not None:
            self.series.succeeded(elapsed, fields.get("storedBytes"), fields.get("documents"))
        await self._patch(
            {
                **fields,
                "phase": "Completed",
                "completedAt": now_iso(),
                "duration": human_duration(elapsed),
            },
            clear=["error"],
        )

    async def mark_failed(
        self, failure: Failure, elapsed: float | None, outcome: Outcome | None = None
    ) -> None:
        """Final. `elapsed` is None when no attempt ran (a spec that can never run); `outcome`
        is what a finished attempt found (e.g. the verification's figures)."""
        fields: dict[str, Any] = {}
        if outcome is not None:
            self._outcome_conditions(outcome)
            fields.update(self._outcome_fields(outcome))
        self._condition("Running", "False", failure.reason, failure.message)
        self._condition("Completed", "False", failure.reason, failure.message)
        self._condition("Failed", "True", failure.reason, failure.message)
        fields.update({"phase": "Failed", "error": failure.message, "completedAt": now_iso()})
        if elapsed is not None:
            fields["duration"] = human_duration(elapsed)
        self._event("Warning", "Failed", f"{self.kind} failed: {failure.reason}: {failure.message}")
        if self.series is not None:
            self.series.failed(elapsed)
        await self._patch(fields)

    async def mark_cancelled(self, left: str, elapsed: float | None) -> None:
        """Final: a user cancelled the run (annotation) and it has stopped; `left` says what
        it left behind, in words (e.g. "every target is as it was")."""
        message = f"{self.kind} cancelled: {left}"
        self._condition("Running", "False", "Cancelled", message)
        self._condition("Completed", "False", "Cancelled", message)
        self._condition("Cancelled", "True", "Cancelled", message)
        fields: dict[str, Any] = {"phase": "Cancelled", "completedAt": now_iso()}
        if elapsed is not None:
            fields["duration"] = human_duration(elapsed)
        self._event("Normal", "Cancelled", message)
        if self.series is not None:
            self.series.cancelled(elapsed)
        await self._patch(fields, clear=["error"])

    # Inside.

    def _condition(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.conditions = set_condition(
            self.conditions, type_, status, reason, _text(message), self.generation
        )

    def _outcome_conditions(self, outcome: Outcome) -> None:
        for type_, status, reason, message in outcome.conditions:
            self._condition(type_, status, reason, message)

    def _outcome_fields(self, outcome: Outcome) -> dict[str, Any]:
        """The attempt's status fields that the kind's status declares (the others are
        dropped and logged: a bug, but not one worth losing the run's result for)."""
        declared = {info.alias or name for name, info in self.model.model_fields.items()}
        unknown = sorted(set(outcome.status) - declared)
        if unknown:
            log.error("%s status has no field %s: not written", self.model.__name__, ", ".join(unknown))
        return {key: value for key, value in outcome.status.items() if key in declared}

    def _event(self, type_: EventType, reason: str, message: str) -> None:
        self.link.post_event(type_, reason, redact(_text(message)))

    def _validated(self, fields: Mapping[str, Any]) -> RunStatus:
        return self.model.model_validate(_redacted(dict(fields)))

    async def _patch(self, fields: Mapping[str, Any], clear: tuple[str, ...] | list[str] = ()) -> None:
        body = {**fields, "conditions": self.conditions}
        if self.generation is not None:
            body["observedGeneration"] = self.generation
        if "error" in body and body["error"] is not None:
            body["error"] = _text(body["error"])
        patch = status_patch(self._validated(body), clear=[_python_name(self.model, c) for c in clear])
        await self.link.patch_status(patch)
        self.phase = body.get("phase", self.phase)


def _python_name(model: type[RunStatus], name: str) -> str:
    """The model's field name of a camelCase status field (or of a Python name)."""
    for python_name, info in model.model_fields.items():
        if name in (python_name, info.alias):
            return python_name
    raise KeyError(f"{model.__name__} has no field {name!r}")


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def _text(message: str) -> str:
    return message if len(message) <= MAX_TEXT else message[: MAX_TEXT - 1] + "…"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
