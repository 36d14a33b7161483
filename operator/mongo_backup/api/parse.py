"""Turn an object body (a dict, or Kopf's mapping views of it) into the typed models, with
errors that name the field the way a user wrote it: `spec.storage.gcs.bucket: field required`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """An object's spec does not satisfy the API; `problems` holds one line per field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def field_path(root: str, loc: Sequence[int | str]) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    if error.get("type") == "value_error":
        msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def describe(error: ValidationError, root: str) -> list[str]:
    return [f"{field_path(root, e['loc'])}: {_message(e)}" for e in error.errors()]


def plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (Kopf hands out read-only mapping views)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def parse_spec(model: type[M], body: Mapping[str, Any]) -> M:
    """The object's `spec` as `model`; raises SpecError naming each bad field."""
    spec = body.get("spec")
    if spec is None:
        raise SpecError(["spec: field required"])
    try:
        return model.model_validate(plain(spec))
    except ValidationError as e:
        raise SpecError(describe(e, "spec")) from None


def parse_status(model: type[M], body: Mapping[str, Any]) -> M:
    """The object's `status` as `model` (empty when absent); raises SpecError on bad fields."""
    try:
        return model.model_validate(plain(body.get("status") or {}))
    except ValidationError as e:
        raise SpecError(describe(e, "status")) from None
