"""Kubernetes-style conditions: one per type, with a transition time that only moves when the
condition's status changes (as metav1.Condition does)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A time of a status or of metadata (RFC 3339, e.g. 2026-12-05T10:00:00Z); None when it is
    absent or not a time (someone else wrote it)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list of conditions with `type_` set; the others are kept as they are."""
    result: list[dict[str, Any]] = []
    replaced = False
    for old in conditions:
        if old.get("type") != type_:
            result.append(dict(old))
            continue
        replaced = True
        changed = old.get("status") != status
        result.append(_condition(type_, status, reason, message, generation, None if changed else old))
    if not replaced:
        result.append(_condition(type_, status, reason, message, generation, None))
    return result


def _condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, Any] | None,
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (previous or {}).get("lastTransitionTime") or now_iso(),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition
